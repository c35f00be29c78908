//! `warren login`: the command line's sign-in, a device code confirmed in
//! a browser on the edge's sign-in host (`/device`). The tokens it gets
//! (an hour's access token, a 30-day refresh token) are kept in a 0600
//! file for the commands that follow (SSH and devices); [`session`] hands
//! them a live access token, refreshing it when it is about to expire.
//!
//! `warren login --status` says who the saved session is (refreshing it
//! if needed), or fails when it has ended (logout everywhere, a disabled
//! user, an expired refresh token).

use crate::Failure;
use anyhow::{anyhow, Context};
use clap::Args;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The longest answer read from the edge.
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Args, Debug)]
pub(crate) struct LoginArgs {
    /// The edge's sign-in host (`https://auth.example.com`); default: the
    /// saved session's.
    #[arg(long, env = "WARREN_EDGE")]
    pub(crate) edge: Option<String>,
    /// Trust this CA for the edge (PEM); otherwise the system roots.
    #[arg(long)]
    pub(crate) ca: Option<PathBuf>,
    /// Connect to this address instead of resolving the edge's name
    /// (split-horizon DNS, tests).
    #[arg(long, hide = true)]
    pub(crate) connect: Option<std::net::SocketAddr>,
    /// Where the session is kept (default ~/.config/warren/login.json).
    #[arg(long, env = "WARREN_LOGIN_FILE")]
    pub(crate) login_file: Option<PathBuf>,
    /// Say who the saved session is (refreshing it if needed) and exit.
    #[arg(long)]
    pub(crate) status: bool,
    /// With --status: refresh the access token even if it is still good.
    #[arg(long, requires = "status")]
    pub(crate) refresh: bool,
}

/// The saved session.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub(crate) struct Saved {
    pub(crate) edge: String,
    pub(crate) email: String,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    /// When the access token expires (Unix ms).
    pub(crate) expires_ms: i64,
    pub(crate) ca: Option<PathBuf>,
}

pub(crate) fn default_file() -> Result<PathBuf, Failure> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| Failure::Usage("no HOME: give --login-file".into()))?;
    Ok(base.join("warren/login.json"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A small https client to the sign-in host: one request per connection.
pub(crate) struct Edge {
    base: String,
    host: String,
    port: u16,
    connect: Option<std::net::SocketAddr>,
    tls: tokio_rustls::TlsConnector,
}

impl Edge {
    pub(crate) fn new(
        base: &str,
        ca: Option<&std::path::Path>,
        connect: Option<std::net::SocketAddr>,
    ) -> Result<Edge, Failure> {
        let url: hyper::Uri = base
            .parse()
            .map_err(|_| Failure::Usage(format!("--edge `{base}` is not a URL")))?;
        if url.scheme_str() != Some("https") {
            return Err(Failure::Usage(
                "--edge must be the sign-in host's https:// URL".into(),
            ));
        }
        let host = url
            .host()
            .ok_or_else(|| Failure::Usage("--edge has no host".into()))?
            .to_owned();
        let trust = match ca {
            Some(p) => warren_transport::tls::EdgeTrust::CaFile(p.to_owned()),
            None => warren_transport::tls::EdgeTrust::SystemRoots,
        };
        let mut config = (*warren_transport::tls::client_config(&trust)
            .map_err(|e| anyhow!("TLS: {e}"))?)
        .clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Edge {
            base: format!("https://{}", url.authority().map_or("", |a| a.as_str())),
            port: url.port_u16().unwrap_or(443),
            host,
            connect,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// One HTTP/1.1 connection to the edge, over TLS.
    async fn open(
        &self,
    ) -> anyhow::Result<(
        hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>>,
        hyper::client::conn::http1::Connection<
            TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
            Full<bytes::Bytes>,
        >,
    )> {
        let tcp = match self.connect {
            Some(addr) => tokio::net::TcpStream::connect(addr).await,
            None => tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await,
        }
        .with_context(|| format!("connecting to {}", self.base))?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| anyhow!("{e}"))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {}", self.base))?;
        hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP")
    }

    fn request(&self, method: hyper::Method, path: &str) -> hyper::http::request::Builder {
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(
                hyper::header::HOST,
                self.base.trim_start_matches("https://"),
            )
            .header(hyper::header::ACCEPT, "application/json")
    }

    /// `GET path` upgraded to `protocol`: the connection, once the edge
    /// answered 101; otherwise the edge's status and JSON answer.
    pub(crate) async fn upgrade(
        &self,
        path: &str,
        protocol: &str,
        bearer: &str,
    ) -> Result<Result<hyper::upgrade::Upgraded, (u16, Value)>, Failure> {
        let fut = async {
            let (mut sender, conn) = self.open().await?;
            tokio::spawn(conn.with_upgrades());
            let req = self
                .request(hyper::Method::GET, path)
                .header(hyper::header::CONNECTION, "upgrade")
                .header(hyper::header::UPGRADE, protocol)
                .header(hyper::header::AUTHORIZATION, format!("Bearer {bearer}"))
                .body(Full::new(bytes::Bytes::new()))
                .map_err(|e| anyhow!("{e}"))?;
            let mut resp = sender.send_request(req).await.context("HTTP")?;
            if resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
                let upgraded = hyper::upgrade::on(&mut resp).await.context("upgrade")?;
                return Ok(Ok(upgraded));
            }
            Ok::<_, anyhow::Error>(Err(answer(resp).await?))
        };
        Ok(tokio::time::timeout(Duration::from_secs(30), fut)
            .await
            .map_err(|_| anyhow!("{} did not answer within 30 s", self.base))??)
    }

    /// `POST path` with a JSON body and the access token.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &Value,
        bearer: &str,
    ) -> Result<(u16, Value), Failure> {
        self.send(
            hyper::Method::POST,
            path,
            Some(Body::Json(body)),
            Some(bearer),
        )
        .await
    }

    async fn call(
        &self,
        method: hyper::Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
        bearer: Option<&str>,
    ) -> Result<(u16, Value), Failure> {
        self.send(method, path, form.map(Body::Form), bearer).await
    }

    async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Body<'_>>,
        bearer: Option<&str>,
    ) -> Result<(u16, Value), Failure> {
        let fut = async {
            let (mut sender, conn) = self.open().await?;
            tokio::spawn(conn);
            let mut req = self.request(method, path);
            let body = match body {
                None => String::new(),
                Some(Body::Form(form)) => {
                    req = req.header(
                        hyper::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    );
                    url_encode(form)
                }
                Some(Body::Json(v)) => {
                    req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                    v.to_string()
                }
            };
            if let Some(token) = bearer {
                req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let req = req
                .body(Full::new(bytes::Bytes::from(body)))
                .map_err(|e| anyhow!("{e}"))?;
            let resp = sender.send_request(req).await.context("HTTP")?;
            answer(resp).await
        };
        // Signing may wait on the site making an account.
        Ok(tokio::time::timeout(Duration::from_secs(40), fut)
            .await
            .map_err(|_| anyhow!("{} did not answer within 40 s", self.base))??)
    }
}

/// An answer's status and its JSON body (`Null` when it is not JSON),
/// read up to [`MAX_ANSWER`].
async fn answer(resp: hyper::Response<hyper::body::Incoming>) -> anyhow::Result<(u16, Value)> {
    let status = resp.status().as_u16();
    let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the answer: {e}"))?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

enum Body<'a> {
    Form(&'a [(&'a str, &'a str)]),
    Json(&'a Value),
}

fn url_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn save(file: &std::path::Path, saved: &Saved) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = file.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(
        serde_json::to_string_pretty(saved)
            .unwrap_or_default()
            .as_bytes(),
    )
    .context("writing the session")?;
    std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}

fn load(file: &std::path::Path) -> Result<Saved, Failure> {
    let text = std::fs::read_to_string(file).map_err(|_| {
        Failure::Other(anyhow!(
            "not signed in ({} is missing): run `warren login --edge https://auth.example.com`",
            file.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| Failure::Other(anyhow!("{}: {e}", file.display())))
}

pub(crate) async fn run(args: LoginArgs) -> Result<(), Failure> {
    let file = match &args.login_file {
        Some(f) => f.clone(),
        None => default_file()?,
    };
    if args.status {
        let saved = session(&file, args.connect, args.refresh).await?;
        let edge = Edge::new(&saved.edge, saved.ca.as_deref(), args.connect)?;
        let (status, who) = edge
            .call(
                hyper::Method::GET,
                "/cli/whoami",
                None,
                Some(&saved.access_token),
            )
            .await?;
        if status != 200 {
            return Err(Failure::Other(anyhow!(
                "the session has ended: run `warren login` again"
            )));
        }
        println!(
            "signed in as {} on {} (groups: {}; access token until {} ms)",
            who["email"].as_str().unwrap_or("?"),
            saved.edge,
            who["groups"]
                .as_array()
                .map(|g| g
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            who["expires_ms"]
        );
        return Ok(());
    }
    let base = match &args.edge {
        Some(e) => e.clone(),
        None => load(&file)?.edge,
    };
    let edge = Edge::new(&base, args.ca.as_deref(), args.connect)?;
    let (status, pair) = edge
        .call(hyper::Method::POST, "/cli/device", Some(&[]), None)
        .await?;
    if status != 200 {
        return Err(Failure::Other(anyhow!(
            "{base} refused to start a sign-in ({status}: {})",
            pair["error"].as_str().unwrap_or("?")
        )));
    }
    let device_code = pair["device_code"].as_str().unwrap_or("").to_owned();
    eprintln!(
        "To sign in, open\n\n  {}\n\nand confirm the code {} (it is good for {} minutes).",
        pair["verification_uri_complete"].as_str().unwrap_or(""),
        pair["user_code"].as_str().unwrap_or(""),
        pair["expires_in"].as_i64().unwrap_or(600) / 60
    );
    let interval = Duration::from_secs(pair["interval"].as_u64().unwrap_or(1).clamp(1, 30));
    loop {
        tokio::time::sleep(interval).await;
        let (status, answer) = edge
            .call(
                hyper::Method::POST,
                "/cli/token",
                Some(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", &device_code),
                ]),
                None,
            )
            .await?;
        match (status, answer["error"].as_str()) {
            (200, _) => {
                let saved = saved_from(&base, args.ca.clone(), &answer)?;
                save(&file, &saved)?;
                println!(
                    "signed in as {} (session kept in {})",
                    saved.email,
                    file.display()
                );
                return Ok(());
            }
            (_, Some("authorization_pending" | "slow_down")) => continue,
            (_, Some("access_denied")) => {
                return Err(Failure::Other(anyhow!(
                    "the sign-in was refused in the browser"
                )))
            }
            (_, Some("expired_token")) => {
                return Err(Failure::Other(anyhow!(
                    "the code expired before it was confirmed; run `warren login` again"
                )))
            }
            (status, error) => {
                return Err(Failure::Other(anyhow!(
                    "{base} answered {status} ({})",
                    error.unwrap_or("?")
                )))
            }
        }
    }
}

fn saved_from(base: &str, ca: Option<PathBuf>, answer: &Value) -> Result<Saved, Failure> {
    let text = |k: &str| {
        answer[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::Other(anyhow!("the edge's answer has no {k}")))
    };
    Ok(Saved {
        edge: base.to_owned(),
        email: text("email")?,
        access_token: text("access_token")?,
        refresh_token: text("refresh_token")?,
        expires_ms: now_ms() + answer["expires_in"].as_i64().unwrap_or(3600) * 1000,
        ca,
    })
}

/// The saved session with an access token good for at least a minute
/// (refreshed, and saved again, when not; or when `force`).
pub(crate) async fn session(
    file: &std::path::Path,
    connect: Option<std::net::SocketAddr>,
    force: bool,
) -> Result<Saved, Failure> {
    let saved = load(file)?;
    if !force && saved.expires_ms > now_ms() + 60_000 {
        return Ok(saved);
    }
    let edge = Edge::new(&saved.edge, saved.ca.as_deref(), connect)?;
    let (status, answer) = edge
        .call(
            hyper::Method::POST,
            "/cli/token",
            Some(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &saved.refresh_token),
            ]),
            None,
        )
        .await?;
    if status != 200 {
        return Err(Failure::Other(anyhow!(
            "the session has ended ({}): run `warren login` again",
            answer["error"].as_str().unwrap_or("?")
        )));
    }
    let fresh = saved_from(&saved.edge, saved.ca.clone(), &answer)?;
    save(file, &fresh)?;
    Ok(fresh)
}
