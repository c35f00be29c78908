//! A device's UDP flow (a four-tuple): one stream of length-prefixed
//! datagrams to an agent of the owning site, as `type = "udp"` resources
//! carry theirs, closed after a minute without a datagram either way.
//! Replies go back to the driver, which makes them packets for the device.

use crate::proxy::dispatch::open_to_site;
use crate::EdgeShared;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use warren_netstack::FlowKey;
use warren_proto::{datagram, TargetProtocol};

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
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut out = BytesMut::new();
    let mut inbound = BytesMut::with_capacity(16 * 1024);
    let mut deadline = Instant::now() + IDLE;
    loop {
        tokio::select! {
            d = rx.recv() => {
                let Some(d) = d else { break };
                if datagram::encode(&d, &mut out).is_err() {
                    continue;
                }
                if wr.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
                deadline = Instant::now() + IDLE;
            }
            r = rd.read_buf(&mut inbound) => {
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        while let Some(d) = datagram::decode(&mut inbound) {
                            // A full queue drops the datagram, as a network would.
                            let _ = replies.try_send((key, d));
                        }
                        deadline = Instant::now() + IDLE;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let _ = wr.shutdown().await;
}
