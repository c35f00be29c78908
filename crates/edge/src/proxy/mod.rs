//! Visitors in: every resource listener and the path from an accepted
//! connection to a tunnel stream.
//!
//! [`serving`] holds what is served (the routing table, [`balance`]'s
//! resource slots) and applies every change through [`listeners`]. A
//! connection arrives at [`tcp`], [`udp`] or the shared TLS port [`sni`];
//! `http` resources continue in [`http`]. All of them reach a target
//! through [`dispatch`], which picks a target ([`balance`]) and an agent of
//! its site, and opens a stream.

pub(crate) mod accept;
pub(crate) mod balance;
pub(crate) mod dispatch;
pub(crate) mod http;
pub(crate) mod listeners;
pub(crate) mod serving;
pub(crate) mod sni;
pub(crate) mod tcp;
pub(crate) mod udp;
