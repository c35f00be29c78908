//! The one accept loop of every TCP listener the proxy owns (tcp resources,
//! the TLS port, the plain-HTTP port): accept until stopped, one task per
//! connection. A failed accept (out of descriptors, say) is logged and
//! waited out for a moment instead of spinning.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long to wait after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Accepts on `listener` until `stop`, running `handle` for each connection
/// in its own task. `what` names the listener in logs.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    stop: CancellationToken,
    what: &'static str,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(listener = what, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        tokio::spawn(handle(tcp, peer));
    }
}
