//! Serving one stream the edge opened: the allowlist check
//! ([`crate::target`]), the connection to the addresses it let through, and
//! the byte relay. Health streams go to [`crate::health`], SSH users to
//! [`crate::ssh_user`].

use crate::stats::Stats;
use crate::target::{permitted_addrs, refuse, Refusal};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use warren_egress::{Allowlist, Protocol};
use warren_proto::{datagram, RefuseReason, TargetProtocol};
use warren_transport::{IncomingStream, TunnelStream};

enum Connected {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

async fn connect(
    addrs: &[SocketAddr],
    protocol: TargetProtocol,
    timeout: Duration,
) -> Result<Connected, Refusal> {
    let mut last = String::from("no address");
    for addr in addrs {
        match protocol {
            TargetProtocol::Tcp => {
                match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        return Ok(Connected::Tcp(s));
                    }
                    Ok(Err(e)) => last = format!("{addr}: {e}"),
                    Err(_) => last = format!("{addr}: connect timed out after {timeout:?}"),
                }
            }
            TargetProtocol::Health | TargetProtocol::SshUser => break,
            TargetProtocol::Udp => {
                let bind: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let result = async {
                    let s = UdpSocket::bind(bind).await?;
                    s.connect(addr).await?;
                    std::io::Result::Ok(s)
                }
                .await;
                match result {
                    Ok(s) => return Ok(Connected::Udp(s)),
                    Err(e) => last = format!("{addr}: {e}"),
                }
            }
        }
    }
    Err(refuse(RefuseReason::ConnectFailed, last))
}

/// Serves one incoming stream to completion.
pub(crate) async fn serve_stream(
    inc: IncomingStream,
    allow: Arc<Allowlist>,
    stats: Arc<Stats>,
    connect_timeout: Duration,
    ssh_auth: Arc<crate::ssh_user::SshAuth>,
) {
    let req = inc.request.clone();
    let protocol = match req.protocol {
        TargetProtocol::Tcp => Protocol::Tcp,
        TargetProtocol::Udp => Protocol::Udp,
        TargetProtocol::Health => return crate::health::serve(inc, allow, stats).await,
        TargetProtocol::SshUser => return crate::ssh_user::serve(inc, &allow, ssh_auth).await,
    };
    let outcome = match permitted_addrs(&allow, &req.target, protocol).await {
        Ok(addrs) => connect(&addrs, req.protocol, connect_timeout).await,
        Err(r) => Err(r),
    };
    let connected = match outcome {
        Ok(c) => c,
        Err(Refusal { reason, message }) => {
            if reason == RefuseReason::NotAllowed {
                stats.refusals.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    event = "stream_refused", resource = %req.resource, upstream = %req.target,
                    protocol = %protocol, client = %req.client, reason = reason.as_str(),
                    "refused: {message}"
                );
            } else {
                stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    event = "target_unreachable", resource = %req.resource, upstream = %req.target,
                    reason = reason.as_str(), "cannot reach target: {message}"
                );
            }
            // The edge gets the reason, not the detail logged above.
            let _ = inc.refuse(reason, reason.public_text().to_owned()).await;
            return;
        }
    };
    let Ok(stream) = inc.accept().await else {
        return;
    };
    stats.streams_total.fetch_add(1, Ordering::Relaxed);
    stats.streams_active.fetch_add(1, Ordering::Relaxed);
    match connected {
        Connected::Tcp(tcp) => relay_tcp(stream, tcp).await,
        Connected::Udp(udp) => relay_udp(stream, udp).await,
    }
    stats.streams_active.fetch_sub(1, Ordering::Relaxed);
}

async fn relay_tcp(mut stream: TunnelStream, mut tcp: TcpStream) {
    if warren_transport::pump(&mut stream, &mut tcp).await.is_err() {
        // Pass the abort on as a reset.
        let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    }
}

async fn relay_udp(stream: TunnelStream, udp: UdpSocket) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut inbound = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::new();
    let mut buf = vec![0u8; datagram::MAX_DATAGRAM];
    loop {
        tokio::select! {
            r = rd.read_buf(&mut inbound) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while let Some(d) = datagram::decode(&mut inbound) {
                        let _ = udp.send(&d).await;
                    }
                }
            },
            r = udp.recv(&mut buf) => match r {
                Ok(n) => {
                    if datagram::encode(&buf[..n], &mut out).is_ok() {
                        if wr.write_all(&out).await.is_err() {
                            break;
                        }
                        out.clear();
                    }
                }
                // ICMP port unreachable and the like: keep the flow, the edge times it out.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    let _ = wr.shutdown().await;
}
