//! `http` resources: TLS terminated, one hyper server per connection
//! ([`serve`]), requests routed by host and normalised path and forwarded
//! over a tunnel stream, reusing kept-alive origin connections
//! ([`origin_pool`]); one access-log line per request ([`access_log`]); the
//! plain-HTTP port's redirects and ACME challenges ([`plain`]).

pub(crate) mod access_log;
pub(crate) mod body;
pub(crate) mod origin_pool;
pub(crate) mod pages;
pub(crate) mod plain;
pub(crate) mod serve;
