//! What every request on one client connection shares, read by each phase.

use crate::EdgeShared;
use std::net::SocketAddr;
use std::sync::Arc;

/// What every request on one client connection shares.
pub(crate) struct ConnContext {
    pub(crate) shared: Arc<EdgeShared>,
    pub(crate) client: SocketAddr,
    /// The SNI the connection was made with (lower-case), if any.
    pub(crate) sni: Option<String>,
}
