//! `ssh-user` streams: the edge, having checked its policy, asks this site
//! to let a user into an SSH target (`warren_proto::ssh_user`). The target
//! must be on the allowlist (as tcp) like any other; the host's auth
//! daemon ([`warren_authd`]) then decides, under its own configuration,
//! what the user gets. Without `--ssh-auth-daemon` the stream is refused.
//!
//! The request is read with a bound on size ([`MAX_MESSAGE`]) and time
//! ([`READ_TIMEOUT`]); the edge learns what was granted, or a reason, never
//! the host's detail (which is logged here).

use crate::target::permitted_addrs;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_authd::{AuthDaemon, AuthdError, Request};
use warren_egress::{Allowlist, Protocol};
use warren_proto::ssh_user::{SshUserReply, SshUserRequest, MAX_MESSAGE};
use warren_proto::RefuseReason;
use warren_transport::IncomingStream;

/// How long the edge may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve(inc: IncomingStream, allow: &Allowlist, daemon: Option<Arc<AuthDaemon>>) {
    let req = inc.request.clone();
    if let Err(r) = permitted_addrs(allow, &req.target, Protocol::Tcp).await {
        tracing::warn!(event = "stream_refused", resource = %req.resource, upstream = %req.target, protocol = "ssh-user", reason = r.reason.as_str(), "refused: {}", r.message);
        let _ = inc
            .refuse(r.reason, r.reason.public_text().to_owned())
            .await;
        return;
    }
    let Some(daemon) = daemon else {
        tracing::warn!(event = "stream_refused", resource = %req.resource, upstream = %req.target, protocol = "ssh-user", "refused: this agent runs no SSH auth daemon (--ssh-auth-daemon)");
        let _ = inc
            .refuse(
                RefuseReason::Other,
                "this agent runs no SSH auth daemon".to_owned(),
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
    let reply = match asked {
        None => {
            tracing::warn!(event = "ssh_user_refused", resource = %req.resource, "an ssh-user request that does not decode (or came too slowly)");
            SshUserReply::Refused("the request could not be read".into())
        }
        Some(asked) => answer(&daemon, &req.resource, asked).await,
    };
    if let Ok(bytes) = reply.encode() {
        let _ = stream.write_all(&bytes).await;
    }
    let _ = stream.shutdown().await;
}

async fn answer(daemon: &Arc<AuthDaemon>, resource: &str, asked: SshUserRequest) -> SshUserReply {
    let request = Request {
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
