//! The edge's public-side protocol logic, without I/O.
//!
//! Everything here takes bytes or strings and returns values: the edge's
//! listeners own the sockets. That keeps each piece unit-testable and
//! fuzzable (see `fuzz/`).
//!
//! - [`client_hello`]: reads the SNI and ALPN of a TLS ClientHello without
//!   terminating TLS, so `tls` resources can be passed through untouched.
//! - [`proxy_header`]: PROXY protocol v1 and v2 headers (encode, and parse for
//!   origins and tests).
//! - [`host`]: which host an HTTP request is for (authority and `Host`
//!   agreeing, a host name).
//! - [`path`]: request-path normalisation, so the router and the origin see
//!   the same path.
//! - [`router`]: host and longest-path-prefix routing.
//! - [`socks5`]: the SOCKS5 greeting and CONNECT request `warren connect
//!   --socks` reads from a local client (the one piece here that is not
//!   the edge's: it is the client side's public face).
//!
//! Invariant: no tokio, no sockets, no clock.

pub mod client_hello;
pub mod host;
pub mod path;
pub mod proxy_header;
pub mod router;
pub mod socks5;
