//! Who a person is, sans I/O: the pieces of sign-in that parse what a
//! visitor sends, kept apart from the edge so they can be fuzzed and
//! reasoned about alone.
//!
//! * [`token`]: signed tokens (the session cookie, the one-use hand-off
//!   from the sign-in host to a resource's host): HMAC-SHA256, checked in
//!   constant time before anything in them is parsed.
//! * [`return_url`]: where a visitor may be sent after signing in (only a
//!   resource of this edge, over https).
//! * [`limits`]: brute-force limits per source and per account, bounded.
//! * [`email`]: an email from single sign-on, and its domain allowlist
//!   (exact domains only).
//! * [`claims`]: a provider's claims mapped to policy groups, bounded.
//! * [`ssh_cert`]: a request for an SSH certificate, and the certificate
//!   the CA signs with the terms the caller decided.
//!
//! Invariants: no clock (every function takes the time), no I/O, no
//! randomness except what the caller passes in; every input bounded before
//! it is decoded.

pub mod claims;
pub mod email;
pub mod limits;
pub mod return_url;
pub mod ssh_cert;
pub mod token;
