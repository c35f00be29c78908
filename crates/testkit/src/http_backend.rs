//! A real HTTP/1.1 origin (hyper) for tests, and a TLS origin that reads a
//! PROXY header first, both on `127.0.0.1:0`.
//!
//! The HTTP origin answers:
//! - `POST /upload`: `{"len":N,"sha256":"..."}` of the body it streamed in;
//! - `GET /download/N`: N bytes of [`pattern`], streamed;
//! - `GET /status/CODE`: that status (a health-check target);
//! - `GET /ws`: a WebSocket that echoes every message;
//! - anything else: JSON with its `name`, the method, path (as received) and headers.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// The byte at offset `i` of a download.
pub fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 11)) as u8
}

/// A running HTTP origin.
pub struct HttpBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The status `/status/health` answers (changeable at run time).
    pub health_status: Arc<AtomicU16>,
    /// Requests served.
    pub requests: Arc<AtomicU64>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicU64>,
}

/// Starts an HTTP origin named `name`.
pub async fn http_backend(name: &str) -> HttpBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let health_status = Arc::new(AtomicU16::new(200));
    let requests = Arc::new(AtomicU64::new(0));
    let name: Arc<str> = name.into();
    let connections = Arc::new(AtomicU64::new(0));
    let (hs, rq, conns) = (health_status.clone(), requests.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            conns.fetch_add(1, Ordering::Relaxed);
            let (name, hs, rq) = (name.clone(), hs.clone(), rq.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    rq.fetch_add(1, Ordering::Relaxed);
                    answer(name.clone(), hs.clone(), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    HttpBackend {
        addr,
        health_status,
        requests,
        connections,
    }
}

fn boxed(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

async fn answer(
    name: Arc<str>,
    health: Arc<AtomicU16>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let path = req.uri().path().to_owned();
    if path == "/upload" {
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(std::io::Error::other)?;
            if let Some(d) = frame.data_ref() {
                hasher.update(d);
                len += d.len() as u64;
            }
        }
        let out = json!({"len": len, "sha256": hex::encode(hasher.finalize())});
        return Ok(Response::new(boxed(out.to_string())));
    }
    if let Some(n) = path.strip_prefix("/download/") {
        let total: u64 = n.parse().unwrap_or(0);
        let chunks = futures_util::stream::unfold(0u64, move |off| async move {
            if off >= total {
                return None;
            }
            let n = (total - off).min(64 * 1024);
            let chunk: Vec<u8> = (off..off + n).map(pattern).collect();
            Some((
                Ok::<_, std::io::Error>(Frame::data(Bytes::from(chunk))),
                off + n,
            ))
        });
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
        resp.headers_mut()
            .insert("content-length", total.to_string().parse().expect("number"));
        return Ok(resp);
    }
    if path == "/status/health" {
        let code = health.load(Ordering::Relaxed);
        let mut resp = Response::new(boxed(format!("{name} {code}")));
        *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        if (300..400).contains(&code) {
            resp.headers_mut()
                .insert("location", "/login".parse().expect("header"));
        }
        return Ok(resp);
    }
    if path == "/ws" {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .cloned()
            .unwrap_or_else(|| http::HeaderValue::from_static(""));
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = upgrade.await {
                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(up),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                let (mut tx, mut rx) = ws.split();
                while let Some(Ok(msg)) = rx.next().await {
                    if msg.is_close() {
                        break;
                    }
                    if tx.send(msg).await.is_err() {
                        break;
                    }
                }
            }
        });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut resp = Response::new(boxed(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert("connection", "upgrade".parse().expect("header"));
        h.insert("upgrade", "websocket".parse().expect("header"));
        h.insert("sec-websocket-accept", accept.parse().expect("header"));
        return Ok(resp);
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let entry = headers
            .entry(k.as_str().to_owned())
            .or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!(String::from_utf8_lossy(v.as_bytes())));
        }
    }
    let out = json!({
        "name": &*name,
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
        "headers": headers,
    });
    let mut resp = Response::new(boxed(out.to_string()));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    Ok(resp)
}

/// A self-signed certificate for `names`: (cert PEM, key PEM).
pub fn self_signed(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("certificate");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// A TLS origin behind a PROXY header: each connection must start with a
/// PROXY v1 or v2 header; the origin then completes TLS with its own
/// certificate and answers one line: `proxy=VERSION client=IP:PORT`.
pub struct TlsBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate (PEM), which clients should see unchanged.
    pub cert_pem: String,
}

/// Starts a TLS origin for `name` that expects a PROXY header if
/// `expect_proxy` is set.
pub async fn tls_backend(name: &str, expect_proxy: bool) -> TlsBackend {
    use rustls::pki_types::pem::PemObject;
    let (cert_pem, key_pem) = self_signed(&[name]);
    let certs =
        vec![rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert")];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, peer)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut label = format!("proxy=none client={peer}");
                if expect_proxy {
                    // Read byte by byte up to the header's end: nothing of TLS is consumed.
                    let mut buf = Vec::new();
                    loop {
                        let mut b = [0u8; 1];
                        if tcp.read_exact(&mut b).await.is_err() {
                            return;
                        }
                        buf.push(b[0]);
                        match warren_ingress::proxy_header::parse(&buf) {
                            Ok(None) => continue,
                            Ok(Some((h, _))) => {
                                let client =
                                    h.addresses.map(|a| a.0.to_string()).unwrap_or_default();
                                label = format!("proxy={:?} client={client}", h.version);
                                break;
                            }
                            Err(_) => return,
                        }
                    }
                }
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = tls.write_all(format!("{label}\n").as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsBackend { addr, cert_pem }
}
