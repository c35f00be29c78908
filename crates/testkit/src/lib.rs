//! Test harness for Warren's integration tests.
//!
//! * Upstreams: echo servers (TCP, UDP), an HTTP origin and a TLS origin
//!   behind PROXY headers, all on `127.0.0.1:0`.
//! * [`Process`]: a real `warren` process with its JSON log lines collected,
//!   so tests wait for *events* (`agent_connected`, `listening`...) instead of
//!   sleeping, and assert on what was logged.
//! * [`EdgeSpec`]: writes an edge config with every port `0`, starts the edge
//!   and reads the bound addresses back from its log.
//! * Real servers: Debian's `pebble` (ACME), a throwaway PostgreSQL, and
//!   `aiosmtpd` with STARTTLS (mail).
//! * [`dns::DnsServer`]: a scripted DNS server whose answers for a name
//!   change from one query to the next (TTL 0), as a rebinding attack's do.
//! * [`peers`]: a fake edge and a fake agent that speak the tunnel protocol
//!   (through `warren-transport` itself) and misbehave within it: the
//!   hostile peers of the threat model, against a real `warren` process.
//! * [`kube::check_manifest`]: a Kubernetes manifest checked strictly
//!   against the API's schema types (k8s-openapi).
//!
//! Nothing here uses a fixed port or `std::env::set_var`.

pub mod dns;
mod http_backend;
pub mod kube;
mod pebble;
pub mod peers;
mod postgres;
mod process;
mod smtp;
mod upstream;
pub mod wg_device;

pub use http_backend::{http_backend, pattern, self_signed, tls_backend, HttpBackend, TlsBackend};
pub use pebble::{free_tcp_ports, pebble_installed, Pebble};
pub use postgres::{postgres_installed, Postgres};
pub use process::{run_ok, EdgeProcess, EdgeSpec, Process, ResourceSpec};
pub use smtp::{smtp_server_installed, SmtpServer};
pub use upstream::{echo_tcp, echo_udp, random_bytes, sha256_hex};

/// How long a test waits for an expected event before failing.
pub const EVENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

mod skip;
pub use skip::skip;
