//! `type = "tcp"` resources: each accepted connection becomes one tunnel stream.
//!
//! Bytes are copied both ways; a half-close (FIN) on either side is passed on
//! as a half-close, and an abort on either side becomes a reset on the other
//! (the client socket is closed with `SO_LINGER 0`).

use crate::config::Resource;
use crate::proxy::accept::accept_loop;
use crate::proxy::balance::ResourceSlot;
use crate::proxy::dispatch::{connect, Connected};
use crate::EdgeShared;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use warren_ingress::proxy_header;
use warren_proto::TargetProtocol;

pub(crate) async fn serve(
    listener: TcpListener,
    slot: Arc<ResourceSlot>,
    shared: Arc<EdgeShared>,
    stop: CancellationToken,
) {
    accept_loop(listener, stop, "tcp resource", move |client, peer| {
        handle(client, peer, slot.clone(), shared.clone())
    })
    .await;
}

async fn handle(
    client: TcpStream,
    peer: SocketAddr,
    slot: Arc<ResourceSlot>,
    shared: Arc<EdgeShared>,
) {
    let _ = client.set_nodelay(true);
    let resource = slot.resource.load_full();
    if crate::access::check(&shared, &resource, peer) == crate::access::Access::Denied {
        reset_on_close(&client);
        return;
    }
    let connected = match connect(&shared, &slot, TargetProtocol::Tcp, peer, None, true).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(event = "connection_failed", resource = %resource.name, client = %peer, error = %e, "could not reach the site");
            reset_on_close(&client);
            return;
        }
    };
    relay(client, peer, &resource, connected, &[]).await;
}

/// Relays a visitor connection over an opened stream: the PROXY header
/// first when the resource asks for it, then `first` (bytes already read
/// from the visitor), then both ways until both sides are done. Counts the
/// bytes on the agent; passes an abort on as a reset.
pub(crate) async fn relay(
    mut client: TcpStream,
    peer: SocketAddr,
    resource: &Resource,
    connected: Connected,
    first: &[u8],
) {
    let Connected {
        mut stream, guards, ..
    } = connected;
    let mut head = Vec::new();
    if let Some(version) = resource.proxy_protocol {
        let local = client.local_addr().unwrap_or(peer);
        head = proxy_header::encode(version, proxy_header::Transport::Tcp, peer, local);
    }
    head.extend_from_slice(first);
    if !head.is_empty() {
        if let Err(e) = stream.write_all(&head).await {
            tracing::debug!(resource = %resource.name, error = %e, "stream closed before the first bytes");
            return;
        }
    }
    match warren_transport::pump(&mut client, &mut stream).await {
        Ok((to_site, from_site)) => {
            let agent = guards.agent.agent();
            agent
                .bytes_to_site
                .fetch_add(to_site + head.len() as u64, Ordering::Relaxed);
            agent
                .bytes_from_site
                .fetch_add(from_site, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::debug!(resource = %resource.name, client = %peer, error = %e, "connection aborted");
            reset_on_close(&client);
        }
    }
}

/// Makes closing `sock` send a reset instead of a FIN (`SO_LINGER` 0), to pass
/// an abort on. With a zero linger the close does not block.
pub(crate) fn reset_on_close(sock: &TcpStream) {
    let _ = socket2::SockRef::from(sock).set_linger(Some(std::time::Duration::ZERO));
}
