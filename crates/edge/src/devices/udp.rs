//! A device's UDP flow (a four-tuple): one stream of length-prefixed
//! datagrams to an agent of the owning site, as `type = "udp"` resources
//! carry theirs, closed after a minute without a datagram either way.
//! Replies go back to the driver, which makes them packets for the device.

use crate::proxy::dispatch::open_to_site;
use crate::EdgeShared;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use warren_netstack::FlowKey;
use warren_proto::TargetProtocol;

/// Datagrams queued per flow before new ones are dropped (UDP semantics).
pub(super) const QUEUE: usize = 64;
/// A flow with no datagram either way for this long is closed.
const IDLE: Duration = Duration::from_secs(60);

/// Carries one flow until it is idle, the site ends it, or the driver drops
/// `rx` (the flow was cut).
pub(super) async fn run(
    shared: Arc<EdgeShared>,
    resource: String,
    site: String,
    key: FlowKey,
    mut rx: mpsc::Receiver<Bytes>,
    replies: mpsc::Sender<(FlowKey, Bytes)>,
) {
    let client = std::net::SocketAddr::V4(key.src);
    let target = key.dst.to_string();
    let (stream, _guard) = match open_to_site(
        &shared,
        &resource,
        &site,
        &target,
        TargetProtocol::Udp,
        client,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(event = "device_flow_failed", resource = %resource, destination = %key.dst, error = %e, "a device's udp flow could not reach its site");
            return;
        }
    };
    let never = tokio_util::sync::CancellationToken::new();
    crate::proxy::udp::carry(stream, &mut rx, IDLE, 16 * 1024, &never, |d| {
        // A full queue drops the datagram, as a network would.
        let _ = replies.try_send((key, d));
        std::future::ready(())
    })
    .await;
}
