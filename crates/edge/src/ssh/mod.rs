//! SSH with short-lived certificates (issue 17), built up in steps. So far:
//! the organisation's SSH certificate authority ([`ca`]), made on first
//! use, its private key kept in the store only encrypted.

pub(crate) mod ca;
