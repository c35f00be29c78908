//! The HTTP client single sign-on talks to its providers with: one request
//! per connection, https only, redirects not followed, and everything
//! bounded (connect, TLS and answer within [`TIMEOUT`], an answer of at most
//! [`MAX_ANSWER`] bytes). A provider is trusted to say who someone is, not
//! to hold the edge's memory or time.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The most a provider's answer (discovery, keys, tokens) may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest answer read from a provider.
pub(crate) const MAX_ANSWER: usize = 1024 * 1024;

/// Why a request to a provider failed (logged; never shown to a visitor).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// Not an https URL with a host.
    #[error("not an https URL: {0}")]
    NotHttps(String),
    /// No answer within [`TIMEOUT`].
    #[error("no answer within {TIMEOUT:?}")]
    Timeout,
    /// Connecting, TLS or HTTP failed.
    #[error("{0}")]
    Io(String),
    /// The answer was over [`MAX_ANSWER`].
    #[error("the answer is over {MAX_ANSWER} bytes")]
    TooLong,
}

/// An https client with fixed roots.
pub(crate) struct Client {
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    /// Trusting `ca` (a PEM file), or the system's roots.
    pub(crate) fn new(ca: Option<&std::path::Path>) -> Result<Client, HttpError> {
        let trust = match ca {
            Some(path) => warren_transport::tls::EdgeTrust::CaFile(path.to_owned()),
            None => warren_transport::tls::EdgeTrust::SystemRoots,
        };
        let mut config = (*warren_transport::tls::client_config(&trust)
            .map_err(|e| HttpError::Io(format!("TLS roots: {e}")))?)
        .clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Client {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Sends `req` and reads the whole answer, within the bounds.
    pub(crate) async fn send(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        tokio::time::timeout(TIMEOUT, self.send_inner(req))
            .await
            .map_err(|_| HttpError::Timeout)?
    }

    async fn send_inner(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let uri = req.uri().clone();
        let (Some("https"), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return Err(HttpError::NotHttps(uri.to_string()));
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| HttpError::Io(format!("connect {host}:{port}: {e}")))?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| HttpError::Io(e.to_string()))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| HttpError::Io(format!("TLS: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| HttpError::Io(e.to_string()))?;
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        parts.uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e: http::uri::InvalidUri| HttpError::Io(e.to_string()))?;
        if let Some(authority) = uri.authority() {
            if let Ok(v) = http::HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(http::header::HOST, v);
            }
        }
        parts.headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("warren/", env!("CARGO_PKG_VERSION"))),
        );
        let resp = sender
            .send_request(http::Request::from_parts(
                parts,
                Full::new(Bytes::from(body)),
            ))
            .await
            .map_err(|e| HttpError::Io(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HttpError::TooLong
                } else {
                    HttpError::Io(e.to_string())
                }
            })?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body.to_vec()))
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for Client {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
