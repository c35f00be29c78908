//! Serving one stream the edge opened: the allowlist check, the connection to
//! the target, and the byte relay.
//!
//! The check happens before any connection attempt. For a name target the
//! agent resolves the name itself and connects only to addresses it has just
//! checked, so a DNS answer cannot slip a forbidden address in between check
//! and connect.

use crate::stats::Stats;
use bytes::BytesMut;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use warren_egress::{Allowlist, NameDecision, Protocol};
use warren_proto::{datagram, RefuseReason, TargetProtocol};
use warren_transport::{IncomingStream, TunnelStream};

/// Why a stream was not served.
pub(crate) struct Refusal {
    pub(crate) reason: RefuseReason,
    pub(crate) message: String,
}

fn refuse(reason: RefuseReason, message: String) -> Refusal {
    Refusal { reason, message }
}

/// Splits `host:port` / `[v6]:port`.
fn split_target(target: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        (h, tail.strip_prefix(':')?)
    } else {
        target.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty()).then_some((host, port))
}

/// The addresses the agent may connect to for this request, or a refusal.
pub(crate) async fn permitted_addrs(
    allow: &Allowlist,
    target: &str,
    protocol: Protocol,
) -> Result<Vec<SocketAddr>, Refusal> {
    let (host, port) = split_target(target).ok_or_else(|| {
        refuse(
            RefuseReason::BadRequest,
            format!("target `{target}` is not HOST:PORT"),
        )
    })?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if allow.permits_addr(ip, port, protocol) {
            Ok(vec![SocketAddr::new(ip, port)])
        } else {
            Err(refuse(
                RefuseReason::NotAllowed,
                format!("{target}/{protocol} is not on this agent's allowlist"),
            ))
        };
    }
    let decision = allow.check_name(host, port, protocol);
    let resolved: Vec<SocketAddr> = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((host, port)),
    )
    .await
    .map_err(|_| {
        refuse(
            RefuseReason::ResolveFailed,
            format!("resolving `{host}` timed out"),
        )
    })?
    .map_err(|e| {
        refuse(
            RefuseReason::ResolveFailed,
            format!("resolving `{host}`: {e}"),
        )
    })?
    .collect();
    match decision {
        NameDecision::Listed => Ok(resolved),
        NameDecision::CheckAddresses => {
            let ok: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| allow.permits_addr(a.ip(), port, protocol))
                .collect();
            if ok.is_empty() {
                let shown: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
                Err(refuse(
                    RefuseReason::NotAllowed,
                    format!(
                        "{target}/{protocol} is not on this agent's allowlist (resolves to {})",
                        if shown.is_empty() {
                            "nothing".into()
                        } else {
                            shown.join(", ")
                        }
                    ),
                ))
            } else {
                Ok(ok)
            }
        }
    }
}

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
            TargetProtocol::Health => break,
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
) {
    let req = inc.request.clone();
    let protocol = match req.protocol {
        TargetProtocol::Tcp => Protocol::Tcp,
        TargetProtocol::Udp => Protocol::Udp,
        TargetProtocol::Health => return crate::health::serve(inc, allow, stats).await,
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
            let _ = inc.refuse(reason, message).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split() {
        assert_eq!(split_target("127.0.0.1:80"), Some(("127.0.0.1", 80)));
        assert_eq!(split_target("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split_target("nas.lan:445"), Some(("nas.lan", 445)));
        assert_eq!(split_target("nas.lan:0"), None);
        assert_eq!(split_target(":80"), None);
        assert_eq!(split_target("nas.lan"), None);
    }

    #[tokio::test]
    async fn names_not_listed_are_checked_by_address() {
        let allow = Allowlist::parse(["127.0.0.1:8080/tcp"]).unwrap();
        // `localhost` is not listed, but resolves to a listed address.
        // Only the listed address is kept (a `::1` for it is dropped).
        let addrs = match permitted_addrs(&allow, "localhost:8080", Protocol::Tcp).await {
            Ok(addrs) => addrs,
            Err(r) => panic!("localhost (127.0.0.1 is listed) refused: {}", r.message),
        };
        assert!(!addrs.is_empty());
        let listed: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(addrs.iter().all(|a| *a == listed), "{addrs:?}");
        let refused = permitted_addrs(&allow, "localhost:8081", Protocol::Tcp).await;
        assert!(matches!(
            refused,
            Err(Refusal {
                reason: RefuseReason::NotAllowed,
                ..
            })
        ));
        let refused = permitted_addrs(&allow, "127.0.0.2:8080", Protocol::Tcp).await;
        assert!(matches!(
            refused,
            Err(Refusal {
                reason: RefuseReason::NotAllowed,
                ..
            })
        ));
    }
}
