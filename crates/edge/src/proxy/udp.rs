//! `type = "udp"` resources: each client address is a flow, carried as one
//! tunnel stream of length-prefixed datagrams, closed after `idle_timeout`
//! without a datagram either way.

use crate::proxy::balance::ResourceSlot;
use crate::proxy::dispatch::{connect, Connected};
use crate::EdgeShared;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warren_proto::{datagram, TargetProtocol};

/// Datagrams queued per flow before new ones are dropped (UDP semantics).
const FLOW_QUEUE: usize = 256;

pub(crate) async fn serve(
    socket: UdpSocket,
    slot: Arc<ResourceSlot>,
    shared: Arc<EdgeShared>,
    stop: CancellationToken,
) {
    let socket = Arc::new(socket);
    let mut flows: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<SocketAddr>();
    let mut buf = vec![0u8; datagram::MAX_DATAGRAM];
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, peer) = match r {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive failed");
                        continue;
                    }
                };
                let dgram = Bytes::copy_from_slice(&buf[..n]);
                if let Some(tx) = flows.get(&peer) {
                    match tx.try_send(dgram) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => continue,
                        Err(mpsc::error::TrySendError::Closed(d)) => {
                            flows.remove(&peer);
                            start_flow(&mut flows, peer, d, &socket, &slot, &shared, &done_tx, &stop);
                        }
                    }
                } else {
                    start_flow(&mut flows, peer, dgram, &socket, &slot, &shared, &done_tx, &stop);
                }
            }
            Some(peer) = done_rx.recv() => {
                if flows.get(&peer).is_some_and(|tx| tx.is_closed()) {
                    flows.remove(&peer);
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn start_flow(
    flows: &mut HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    peer: SocketAddr,
    first: Bytes,
    socket: &Arc<UdpSocket>,
    slot: &Arc<ResourceSlot>,
    shared: &Arc<EdgeShared>,
    done: &mpsc::UnboundedSender<SocketAddr>,
    stop: &CancellationToken,
) {
    let (tx, rx) = mpsc::channel(FLOW_QUEUE);
    let _ = tx.try_send(first);
    flows.insert(peer, tx);
    let (socket, slot, shared, done, stop) = (
        socket.clone(),
        slot.clone(),
        shared.clone(),
        done.clone(),
        stop.clone(),
    );
    tokio::spawn(async move {
        run_flow(peer, rx, socket, slot, shared, stop).await;
        let _ = done.send(peer);
    });
}

async fn run_flow(
    peer: SocketAddr,
    mut rx: mpsc::Receiver<Bytes>,
    socket: Arc<UdpSocket>,
    slot: Arc<ResourceSlot>,
    shared: Arc<EdgeShared>,
    stop: CancellationToken,
) {
    let resource = slot.resource.load_full();
    if crate::access::check(&shared, &resource, peer) == crate::access::Access::Denied {
        // Dropped, quietly, until the flow goes idle: one log line a flow.
        while let Ok(Some(_)) = tokio::time::timeout(resource.idle_timeout, rx.recv()).await {}
        return;
    }
    let Connected {
        stream,
        guards: _guards,
        ..
    } = match connect(&shared, &slot, TargetProtocol::Udp, peer, None, true).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(event = "flow_failed", resource = %resource.name, client = %peer, error = %e, "could not reach the site");
            return;
        }
    };
    let idle = resource.idle_timeout;
    let socket = &*socket;
    carry(
        stream,
        &mut rx,
        idle,
        64 * 1024,
        &stop,
        move |d| async move {
            let _ = socket.send_to(&d, peer).await;
        },
    )
    .await;
    tracing::debug!(resource = %resource.name, client = %peer, "udp flow over");
}

/// Carries one flow's datagrams over `stream`, length-prefixed both ways:
/// what `rx` gives goes to the site, what the site sends goes to
/// `deliver`; `buffer` is the first size of the buffer the site's bytes
/// are read into. Ends when `rx` closes, the site ends the stream, `idle`
/// passes without a datagram either way, or `stop`. Used by `udp`
/// resources and by devices' UDP flows.
pub(crate) async fn carry<S, F>(
    stream: S,
    rx: &mut mpsc::Receiver<Bytes>,
    idle: Duration,
    buffer: usize,
    stop: &CancellationToken,
    mut deliver: impl FnMut(Bytes) -> F,
) where
    S: AsyncRead + AsyncWrite,
    F: std::future::Future<Output = ()>,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut out = BytesMut::new();
    let mut inbound = BytesMut::with_capacity(buffer);
    let mut deadline = Instant::now() + idle;
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
                deadline = Instant::now() + idle;
            }
            r = rd.read_buf(&mut inbound) => {
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        while let Some(d) = datagram::decode(&mut inbound) {
                            deliver(d).await;
                        }
                        deadline = Instant::now() + idle;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
            _ = stop.cancelled() => break,
        }
    }
    let _ = wr.shutdown().await;
}
