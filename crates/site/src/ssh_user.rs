//! `ssh-user` streams: the edge, having checked its policy, asks this site
//! to let a user into an SSH target (`warren_proto::ssh_user`). The target
//! must be on the allowlist (as tcp) like any other; then the auth daemon
//! for that target decides, under its own host's configuration, what the
//! user gets: a standalone daemon on the target's host (`--auth-daemon
//! HOST,ADDR,PIN`: HTTPS to ADDR, its certificate pinned, the pre-shared
//! key as a bearer token), else the daemon in this agent
//! (`--ssh-auth-daemon`), else the stream is refused.
//!
//! The request is read with a bound on size ([`MAX_MESSAGE`]) and time
//! ([`READ_TIMEOUT`]), and so is a remote daemon's answer; the edge learns
//! what was granted, or a reason, never the host's detail (logged here).

use crate::target::permitted_addrs;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_authd::{AuthDaemon, AuthdError, Request};
use warren_egress::{Allowlist, Protocol};
use warren_proto::ssh_user::{SshUserReply, SshUserRequest, MAX_MESSAGE};
use warren_proto::{RefuseReason, Secret};
use warren_transport::IncomingStream;

/// How long the edge may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a standalone daemon may take to answer.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(15);
/// The path a standalone daemon answers on.
pub const DAEMON_PATH: &str = "/v1/ssh-user";
/// The ALPN protocol of the daemon's HTTPS.
pub const DAEMON_ALPN: &[u8] = b"http/1.1";

/// A standalone auth daemon, for the SSH targets on one host.
#[derive(Clone, Debug)]
pub struct RemoteDaemon {
    /// The targets' host, as the resources name it (`10.0.0.5`).
    pub host: String,
    /// Where the daemon listens (`10.0.0.5:22123`).
    pub addr: String,
    /// The SHA-256 of its certificate (`warren auth-daemon --print-pin`).
    pub pin: [u8; 32],
    /// Its own pre-shared key, if it has one (else [`SshAuth::psk`]): a
    /// key per host keeps one compromised host from posing as the agent
    /// to another.
    pub psk: Option<Secret>,
}

/// At most this many `ssh-user` requests are worked on at once (each may
/// run `useradd` on the blocking pool); more are refused at once.
const MAX_AT_ONCE: usize = 4;

/// Who answers `ssh-user` streams.
pub struct SshAuth {
    /// The daemon in this agent.
    pub local: Option<Arc<AuthDaemon>>,
    /// Standalone daemons, by the host of their targets.
    pub remote: Vec<RemoteDaemon>,
    /// The key this agent presents to them.
    pub psk: Option<Secret>,
    /// Requests worked on now (at most [`MAX_AT_ONCE`]).
    busy: tokio::sync::Semaphore,
}

impl Default for SshAuth {
    fn default() -> Self {
        SshAuth {
            local: None,
            remote: Vec::new(),
            psk: None,
            busy: tokio::sync::Semaphore::new(MAX_AT_ONCE),
        }
    }
}

impl SshAuth {
    fn remote_for(&self, target: &str) -> Option<&RemoteDaemon> {
        let host = target
            .rsplit_once(':')
            .map_or(target, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        self.remote.iter().find(|d| d.host == host)
    }
}

pub(crate) async fn serve(inc: IncomingStream, allow: &Allowlist, auth: Arc<SshAuth>) {
    let req = inc.request.clone();
    if let Err(r) = permitted_addrs(allow, &req.target, Protocol::Tcp).await {
        tracing::warn!(event = "stream_refused", resource = %req.resource, upstream = %req.target, protocol = "ssh-user", reason = r.reason.as_str(), "refused: {}", r.message);
        let _ = inc
            .refuse(r.reason, r.reason.public_text().to_owned())
            .await;
        return;
    }
    let remote = auth.remote_for(&req.target).cloned();
    if remote.is_none() && auth.local.is_none() {
        tracing::warn!(event = "stream_refused", resource = %req.resource, upstream = %req.target, protocol = "ssh-user", "refused: no SSH auth daemon for this target (--ssh-auth-daemon, --auth-daemon)");
        let _ = inc
            .refuse(
                RefuseReason::Other,
                "this agent has no SSH auth daemon for the target".to_owned(),
            )
            .await;
        return;
    }
    let Ok(_working) = auth.busy.try_acquire() else {
        tracing::warn!(event = "stream_refused", resource = %req.resource, protocol = "ssh-user", "refused: {MAX_AT_ONCE} SSH users are being let in already");
        let _ = inc
            .refuse(
                RefuseReason::Other,
                "the agent is busy letting other SSH users in".to_owned(),
            )
            .await;
        return;
    };
    let Ok(mut stream) = inc.accept().await else {
        return;
    };
    let asked = tokio::time::timeout(READ_TIMEOUT, async {
        let len = stream.read_u16().await.ok()? as usize;
        if len > MAX_MESSAGE {
            return None;
        }
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.ok()?;
        SshUserRequest::decode(&buf).ok()
    })
    .await
    .ok()
    .flatten();
    let reply = match (asked, remote) {
        (None, _) => {
            tracing::warn!(event = "ssh_user_refused", resource = %req.resource, "an ssh-user request that does not decode (or came too slowly)");
            SshUserReply::Refused("the request could not be read".into())
        }
        (Some(asked), Some(daemon)) => {
            ask_remote(
                &daemon,
                daemon.psk.as_ref().or(auth.psk.as_ref()),
                &req.resource,
                &asked,
            )
            .await
        }
        (Some(asked), None) => match &auth.local {
            Some(local) => answer(local, &req.resource, asked).await,
            None => SshUserReply::Refused("no SSH auth daemon".into()),
        },
    };
    if let Ok(bytes) = reply.encode() {
        let _ = stream.write_all(&bytes).await;
    }
    let _ = stream.shutdown().await;
}

/// The daemon in this agent (or a standalone one serving a request): what
/// `asked` gets on this host.
pub async fn answer(
    daemon: &Arc<AuthDaemon>,
    resource: &str,
    asked: SshUserRequest,
) -> SshUserReply {
    let request = Request {
        resource: asked.resource.clone(),
        email: asked.email.clone(),
        own: asked.own,
        accounts: asked.accounts,
        sudo: asked.sudo,
    };
    let daemon = daemon.clone();
    let done = tokio::task::spawn_blocking(move || daemon.provision(&request)).await;
    match done {
        Ok(Ok(g)) => {
            tracing::info!(event = "ssh_user_granted", resource, user = %asked.email, account = ?g.own, accounts = ?g.accounts, sudo = g.sudo, vetoed = ?g.vetoed, "an SSH user was let in");
            SshUserReply::Granted {
                own: g.own,
                sudo: g.sudo,
                vetoed: g.vetoed,
                accounts: g.accounts,
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(event = "ssh_user_refused", resource, user = %asked.email, error = %e, "an SSH user was not let in");
            SshUserReply::Refused(match e {
                AuthdError::NoAccount => "no account this host allows".into(),
                AuthdError::Refused(_) => "the host refused the request".into(),
                _ => "the host could not make the account".into(),
            })
        }
        Err(_) => SshUserReply::Refused("the host could not make the account".into()),
    }
}

/// Asks a standalone daemon; any failure is a refusal for the edge (the
/// detail logged here).
async fn ask_remote(
    daemon: &RemoteDaemon,
    psk: Option<&Secret>,
    resource: &str,
    asked: &SshUserRequest,
) -> SshUserReply {
    match tokio::time::timeout(REMOTE_TIMEOUT, post(daemon, psk, asked)).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => {
            tracing::warn!(event = "auth_daemon_failed", resource, daemon = %daemon.addr, error = %e, "the SSH host's auth daemon did not answer");
            SshUserReply::Refused("the host's auth daemon did not answer".into())
        }
        Err(_) => {
            tracing::warn!(event = "auth_daemon_failed", resource, daemon = %daemon.addr, error = "timeout", "the SSH host's auth daemon did not answer in time");
            SshUserReply::Refused("the host's auth daemon did not answer".into())
        }
    }
}

async fn post(
    daemon: &RemoteDaemon,
    psk: Option<&Secret>,
    asked: &SshUserRequest,
) -> Result<SshUserReply, String> {
    let psk = psk.ok_or("no --auth-daemon-psk-file")?;
    let mut tls =
        (*warren_transport::tls::client_config(&warren_transport::tls::EdgeTrust::Pin(daemon.pin))
            .map_err(|e| e.to_string())?)
        .clone();
    tls.alpn_protocols = vec![DAEMON_ALPN.to_vec()];
    let tcp = tokio::net::TcpStream::connect(&daemon.addr)
        .await
        .map_err(|e| e.to_string())?;
    let name =
        rustls::pki_types::ServerName::try_from("warren-auth-daemon").map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let body = asked.encode().map_err(|e| e.to_string())?;
    let req = hyper::Request::post(DAEMON_PATH)
        .header(hyper::header::HOST, "warren-auth-daemon")
        .header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", psk.expose()),
        )
        .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), MAX_MESSAGE + 2)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let payload = bytes.get(2..).ok_or("a short answer")?;
    SshUserReply::decode(payload).map_err(|e| e.to_string())
}
