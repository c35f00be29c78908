//! `type = "tcp"` resources: each accepted connection becomes one tunnel stream.
//!
//! Bytes are copied both ways; a half-close (FIN) on either side is passed on
//! as a half-close, and an abort on either side becomes a reset on the other
//! (the client socket is closed with `SO_LINGER 0`).

use crate::dispatch::open_to_site;
use crate::listeners::ResourceSlot;
use crate::EdgeShared;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use warren_proto::TargetProtocol;

pub(crate) async fn serve(
    listener: TcpListener,
    slot: Arc<ResourceSlot>,
    shared: Arc<EdgeShared>,
    stop: CancellationToken,
) {
    loop {
        let (client, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let slot = slot.clone();
        let shared = shared.clone();
        tokio::spawn(async move { handle(client, peer, slot, shared).await });
    }
}

async fn handle(
    mut client: TcpStream,
    peer: SocketAddr,
    slot: Arc<ResourceSlot>,
    shared: Arc<EdgeShared>,
) {
    let _ = client.set_nodelay(true);
    let resource = slot.resource.load_full();
    let target = slot.pick_target(&resource);
    let opened = open_to_site(
        &shared,
        &resource.name,
        &target.site,
        &target.address,
        TargetProtocol::Tcp,
        peer,
    )
    .await;
    let (mut stream, guard) = match opened {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(event = "connection_failed", resource = %resource.name, client = %peer, error = %e, "could not reach the site");
            reset_on_close(&client);
            return;
        }
    };
    match warren_transport::pump(&mut client, &mut stream).await {
        Ok((to_site, from_site)) => {
            let agent = guard.agent();
            agent.bytes_to_site.fetch_add(to_site, Ordering::Relaxed);
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
