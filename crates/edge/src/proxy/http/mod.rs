//! `http` resources: TLS terminated, one hyper server per connection
//! ([`serve`]), each request through the phases [`request`] → [`signin`]
//! → [`route`] → [`access`] → [`upstream`] → [`response`] → [`access_log`], failures
//! named by [`error`]; kept-alive origin connections ([`origin_pool`]); the
//! plain-HTTP port's redirects and ACME challenges ([`plain`]).

pub(crate) mod access;
pub(crate) mod access_log;
pub(crate) mod body;
pub(crate) mod conn;
pub(crate) mod error;
pub(crate) mod origin_pool;
pub(crate) mod pages;
pub(crate) mod plain;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod route;
pub(crate) mod serve;
pub(crate) mod signin;
pub(crate) mod upstream;
