//! One device flow's far side: a stream to an agent of the owning site,
//! and the task that carries bytes between it and the driver.
//!
//! The driver owns the device's end (a socket in the netstack); this task
//! owns the stream. Between them, two small bounded channels: what the
//! device sent goes up, what the site sent comes down. A full channel is
//! backpressure: the driver stops reading the socket, the socket's window
//! closes, and the device waits.

use crate::proxy::dispatch::{open_to_site, DispatchError};
use crate::tunnel::registry::StreamGuard;
use crate::EdgeShared;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddrV4;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use warren_netstack::FlowKey;
use warren_proto::TargetProtocol;
use warren_transport::TunnelStream;

/// Chunks in flight each way per flow.
pub(super) const CHUNKS: usize = 8;
/// The largest chunk read from the stream at once.
const CHUNK: usize = 32 * 1024;

/// What comes down from the site.
pub(super) enum Down {
    Data(Bytes),
    /// The site's side ended cleanly (FIN).
    End,
    /// The site's side failed (reset, link lost).
    Reset,
}

/// The driver's end of a flow's channels.
pub(super) struct Carrier {
    /// Bytes the device sent, up to the site; `None` once the device ended.
    pub(super) up: Option<mpsc::Sender<Bytes>>,
    pub(super) down: mpsc::Receiver<Down>,
    /// Part of a chunk the socket has not taken yet.
    pub(super) pending: Option<Bytes>,
    /// The site ended; FIN once `pending` is out.
    pub(super) site_ended: bool,
    pub(super) fin_sent: bool,
}

/// Opens the stream for `key` to `site` and, if it opens, returns the
/// driver's end of the channels after starting the task that carries it.
pub(super) async fn open(
    shared: Arc<EdgeShared>,
    resource: String,
    site: String,
    key: FlowKey,
    wake: Arc<Notify>,
) -> Result<Carrier, DispatchError> {
    let target = key.dst.to_string();
    let client = std::net::SocketAddr::V4(key.src);
    let (stream, guard) = open_to_site(
        &shared,
        &resource,
        &site,
        &target,
        TargetProtocol::Tcp,
        client,
    )
    .await?;
    let (up_tx, up_rx) = mpsc::channel(CHUNKS);
    let (down_tx, down_rx) = mpsc::channel(CHUNKS);
    tokio::spawn(carry(stream, guard, up_rx, down_tx, wake, key.src));
    Ok(Carrier {
        up: Some(up_tx),
        down: down_rx,
        pending: None,
        site_ended: false,
        fin_sent: false,
    })
}

async fn carry(
    stream: TunnelStream,
    guard: StreamGuard,
    mut up: mpsc::Receiver<Bytes>,
    down: mpsc::Sender<Down>,
    wake: Arc<Notify>,
    device: SocketAddrV4,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let agent = guard.agent().clone();
    let to_site = async {
        let mut n = 0u64;
        while let Some(chunk) = up.recv().await {
            wake.notify_one();
            wr.write_all(&chunk).await?;
            n += chunk.len() as u64;
        }
        wr.shutdown().await?;
        Ok::<u64, std::io::Error>(n)
    };
    let from_site = async {
        let mut n = 0u64;
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK);
            match rd.read_buf(&mut buf).await {
                Ok(0) => {
                    let _ = down.send(Down::End).await;
                    wake.notify_one();
                    return Ok(n);
                }
                Ok(got) => {
                    n += got as u64;
                    if down.send(Down::Data(buf.freeze())).await.is_err() {
                        return Ok(n);
                    }
                    wake.notify_one();
                }
                Err(e) => {
                    let _ = down.send(Down::Reset).await;
                    wake.notify_one();
                    return Err::<u64, std::io::Error>(e);
                }
            }
        }
    };
    let (up_done, down_done) = tokio::join!(to_site, from_site);
    if let Ok(n) = up_done {
        agent
            .bytes_to_site
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    if let Ok(n) = down_done {
        agent
            .bytes_from_site
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    tracing::debug!(device = %device, "device flow ended");
    drop(guard);
}
