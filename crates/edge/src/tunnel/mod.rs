//! Agents in: the tunnel port's accept loop and admission ([`admit`]: TLS or
//! QUIC, the hello, [`credentials`], then registration), who is connected
//! ([`registry`]), and each link's health stream ([`health`]).
//!
//! Reads the proxy's health table and the configuration; the API reads this
//! module, never the reverse.

pub(crate) mod admit;
pub mod credentials;
pub(crate) mod health;
pub(crate) mod health_table;
pub mod registry;
