//! The shared TLS port (`https_listen`): reads each connection's
//! ClientHello without terminating it, then
//!
//! - `acme-tls/1` in ALPN: answers a TLS-ALPN-01 validation;
//! - SNI of a `tls` resource: passes the untouched bytes through to a
//!   target (optionally after a PROXY header), so the edge never holds that
//!   service's key;
//! - SNI of an `http` resource, the sign-in host (`[auth] host`) or the
//!   configured default host: terminates
//!   TLS, getting an ACME certificate first if needed, and serves HTTP
//!   ([`crate::proxy::http::serve`]);
//! - anything else: closes the connection.

use crate::proxy::accept::accept_loop;
use crate::proxy::balance::ResourceSlot;
use crate::proxy::dispatch::connect;
use crate::proxy::http::conn::ConnContext;
use crate::proxy::http::serve::serve_connection;
use crate::EdgeShared;
use bytes::{Buf, Bytes};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use warren_ingress::client_hello::{sniff, HelloError, Sniff, MAX_HELLO_LEN};
use warren_ingress::router::Route;
use warren_proto::TargetProtocol;

/// How long a client may take to send its ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a handshake may wait for a first-need ACME certificate.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) async fn serve(listener: TcpListener, shared: Arc<EdgeShared>, stop: CancellationToken) {
    accept_loop(listener, stop, "https_listen", move |tcp, peer| {
        handle(tcp, peer, shared.clone())
    })
    .await;
}

/// Whether `host` is the sign-in host (`[auth] host`), served like an
/// http resource.
fn is_sign_in_host(shared: &EdgeShared, host: &str) -> bool {
    shared
        .config
        .load()
        .auth
        .as_ref()
        .is_some_and(|a| a.host.eq_ignore_ascii_case(host))
}

/// Whether an ACME certificate may be ordered for `host`: it is the host
/// of an http resource as written (not a wildcard's match), the sign-in
/// host or the default host.
fn orderable(shared: &EdgeShared, host: &str) -> bool {
    let config = shared.config.load();
    config.tls.default_host.as_deref() == Some(host)
        || config.auth.as_ref().is_some_and(|a| a.host == host)
        || config
            .resources
            .iter()
            .any(|r| r.kind == crate::config::ResourceKind::Http && r.host.as_deref() == Some(host))
}

async fn read_hello(
    tcp: &mut TcpStream,
) -> Result<(Vec<u8>, warren_ingress::client_hello::ClientHello), String> {
    let mut buf = Vec::with_capacity(2048);
    let read = async {
        loop {
            match sniff(&buf) {
                Ok(Sniff::Hello(h)) => return Ok(h),
                Ok(Sniff::NeedMore) => {}
                Err(HelloError::NotTls) if buf.starts_with(b"GET ") || buf.starts_with(b"POS") => {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 44\r\n\r\nThis port speaks HTTPS; plain HTTP was sent.")
                        .await;
                    return Err("plain HTTP on the TLS port".to_owned());
                }
                Err(e) => return Err(e.to_string()),
            }
            if buf.len() > MAX_HELLO_LEN + 1024 {
                return Err("ClientHello too large".to_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before the ClientHello".to_owned());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read)
        .await
        .map_err(|_| "no ClientHello within 10 s".to_owned())??;
    Ok((buf, hello))
}

async fn handle(mut tcp: TcpStream, peer: SocketAddr, shared: Arc<EdgeShared>) {
    let _ = tcp.set_nodelay(true);
    let (prefix, hello) = match read_hello(&mut tcp).await {
        Ok(v) => v,
        Err(why) => {
            tracing::debug!(client = %peer, reason = %why, "TLS connection refused");
            return;
        }
    };
    let sni = hello.server_name.clone();
    if hello.alpn.iter().any(|p| p == b"acme-tls/1") {
        let acceptor = tokio_rustls::TlsAcceptor::from(shared.challenge_tls.clone());
        if let Ok(mut tls) = acceptor.accept(Rewind::new(prefix, tcp)).await {
            let _ = tls.shutdown().await;
        }
        return;
    }
    let table = shared.resources.load();
    if let Some(host) = &sni {
        if let Route::Found(slot) = table.tls.route(host, "/") {
            let slot = slot.clone();
            drop(table);
            let resource = slot.resource.load_full();
            if crate::access::check(&shared, &resource, peer) == crate::access::Access::Denied {
                super::tcp::reset_on_close(&tcp);
                return;
            }
            passthrough(tcp, peer, prefix, slot, &shared).await;
            return;
        }
    }
    let default_host = shared.certs.default_host();
    let routed = sni
        .as_deref()
        .is_some_and(|h| table.http.has_host(h) || is_sign_in_host(&shared, h));
    drop(table);
    let cert_host = match (&sni, routed) {
        (Some(h), true) => h.clone(),
        _ => match default_host {
            Some(d) => d,
            None => {
                tracing::info!(event = "tls_unknown_name", client = %peer, sni = sni.as_deref().unwrap_or(""), "TLS for an unknown name; connection closed");
                return;
            }
        },
    };
    if shared.certs.lookup(&cert_host).is_none() {
        // Only names the configuration spells out are ordered: a random
        // name under a wildcard route would be one order per handshake.
        if !orderable(&shared, &cert_host) {
            tracing::info!(event = "tls_no_certificate", host = %cert_host, client = %peer, "no certificate for this name, and it is not one to order (names under a wildcard need a certificate in [tls] certs)");
            return;
        }
        let Some(acme) = shared.acme.clone() else {
            tracing::warn!(event = "tls_no_certificate", host = %cert_host, "no certificate for this host and no ACME configured");
            return;
        };
        match tokio::time::timeout(ISSUE_TIMEOUT, acme.ensure(&cert_host)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(host = %cert_host, error = %e, "no certificate; connection closed");
                return;
            }
            Err(_) => return,
        }
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(shared.terminating_tls.clone());
    let tls = match acceptor.accept(Rewind::new(prefix, tcp)).await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
            return;
        }
    };
    let ctx = Arc::new(ConnContext {
        shared,
        client: peer,
        sni,
    });
    serve_connection(tls, ctx).await;
}

async fn passthrough(
    tcp: TcpStream,
    peer: SocketAddr,
    prefix: Vec<u8>,
    slot: Arc<ResourceSlot>,
    shared: &EdgeShared,
) {
    let resource = slot.resource.load_full();
    let connected = match connect(shared, &slot, TargetProtocol::Tcp, peer, None, true).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(event = "connection_failed", resource = %resource.name, client = %peer, error = %e, "could not reach the site");
            return;
        }
    };
    crate::proxy::tcp::relay(tcp, peer, &resource, connected, &prefix).await;
}

/// A stream whose first bytes were already read: they are replayed first.
pub(crate) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Rewind {
            prefix: Bytes::from(prefix),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
