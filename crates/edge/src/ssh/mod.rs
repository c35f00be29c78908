//! SSH with short-lived certificates: the organisation's certificate
//! authority ([`ca`]), made on first use, its private key kept in the
//! store only encrypted; certificates for users the policy grants
//! ([`sign`]), after the site let them in ([`user`]). The sign-in host
//! serves it to `warren ssh` (`proxy::http::signin::ssh`).

pub(crate) mod ca;
pub(crate) mod sign;
pub(crate) mod user;
