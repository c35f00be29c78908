//! `warren auth-daemon`: the SSH auth daemon's commands on a host.
//!
//! * `warren auth-daemon principals --username %u`: sshd's
//!   `AuthorizedPrincipalsCommand`. Prints the certificate principals that
//!   may log in as the account, from the records the daemon keeps (no
//!   network at login); nothing for an account with none; exit 1, printing
//!   nothing, for a name that could not be an account (`../x`, `%`).
//! * `warren auth-daemon --pre-shared-key-file F --listen ADDR`: the
//!   daemon for hosts the agent is not on. HTTPS (a self-signed
//!   certificate made once in the state directory; `--print-pin` prints
//!   the SHA-256 the agent pins), one endpoint, `POST /v1/ssh-user`, for
//!   the agent presenting the pre-shared key (`Authorization: Bearer`,
//!   compared in constant time): the body is a `warren_proto::ssh_user`
//!   request, the answer the host's reply. Bounds: 4 KiB and 10 s per
//!   request, 64 connections at once, TLS within 10 s.
//!
//! [`DaemonOptions`] are the host's own configuration (what certificates
//! may become here), shared by `warren site --ssh-auth-daemon`.

use crate::Failure;
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warren_proto::ssh_user::SshUserRequest;
use warren_proto::Secret;
use warren_transport::tls;

/// The default state directory.
const STATE_DIR: &str = "/var/lib/warren/auth-daemon";

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct AuthDaemonArgs {
    #[command(subcommand)]
    command: Option<AuthDaemonCommand>,
    /// The key the agent presents (at least 32 characters).
    #[arg(long, value_name = "FILE", required_unless_present = "print_pin")]
    pre_shared_key_file: Option<PathBuf>,
    /// Where to listen (HTTPS), e.g. 0.0.0.0:22123.
    #[arg(long, value_name = "ADDR", required_unless_present = "print_pin")]
    listen: Option<std::net::SocketAddr>,
    /// Print the SHA-256 pin of the daemon's certificate (made if need be)
    /// for the agent's `--auth-daemon HOST,ADDR,PIN`, and exit.
    #[arg(long)]
    print_pin: bool,
    #[command(flatten)]
    host: DaemonOptions,
}

#[derive(Subcommand, Debug)]
enum AuthDaemonCommand {
    /// For sshd's AuthorizedPrincipalsCommand: the principals that may log
    /// in as USERNAME, one per line.
    Principals {
        /// The account sshd asks about (`%u`).
        #[arg(long)]
        username: String,
        /// The daemon's state directory.
        #[arg(long, default_value = STATE_DIR)]
        state_dir: PathBuf,
    },
}

/// What this host lets certificates become (`warren site
/// --ssh-auth-daemon`).
#[derive(Args, Debug, Clone)]
pub(crate) struct DaemonOptions {
    /// Where the daemon keeps its records (readable by sshd's
    /// AuthorizedPrincipalsCommandUser).
    #[arg(long = "ssh-state-dir", default_value = STATE_DIR)]
    pub(crate) state_dir: PathBuf,
    /// A named account certificates may log in as when the policy grants
    /// it (repeat); no other named account is ever let in.
    #[arg(long = "ssh-account", value_name = "NAME")]
    pub(crate) accounts: Vec<String>,
    /// A sudo role this host grants when the policy names it (repeat); any
    /// other role is vetoed.
    #[arg(long = "ssh-sudo-role", value_name = "ROLE")]
    pub(crate) sudo_roles: Vec<String>,
    /// A group every just-in-time account joins (repeat; it must exist).
    #[arg(long = "ssh-group", value_name = "GROUP")]
    pub(crate) groups: Vec<String>,
    /// At most this many just-in-time accounts are made here.
    #[arg(long = "ssh-max-accounts", value_name = "N", default_value_t = 1000)]
    pub(crate) max_accounts: usize,
    /// Where sudoers drop-ins go.
    #[arg(
        long = "ssh-sudoers-dir",
        default_value = "/etc/sudoers.d",
        hide = true
    )]
    pub(crate) sudoers_dir: PathBuf,
}

impl DaemonOptions {
    /// The daemon, its records ready.
    pub(crate) fn start(&self) -> Result<warren_authd::AuthDaemon, Failure> {
        let mut config = warren_authd::Config::new(self.state_dir.clone());
        config.accounts = self.accounts.clone();
        config.sudo_roles = self.sudo_roles.clone();
        config.groups = self.groups.clone();
        config.sudoers_dir = self.sudoers_dir.clone();
        config.max_accounts = self.max_accounts;
        warren_authd::AuthDaemon::start(config)
            .map_err(|e| Failure::Usage(format!("--ssh-auth-daemon: {e}")))
    }
}

pub(crate) async fn run(args: AuthDaemonArgs) -> Result<(), Failure> {
    match args.command {
        Some(AuthDaemonCommand::Principals {
            username,
            state_dir,
        }) => match warren_authd::principals(&state_dir, &username) {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                Ok(())
            }
            Err(e) => Err(Failure::Other(anyhow::anyhow!("{e}"))),
        },
        None => standalone(args).await,
    }
}

/// Shortest pre-shared key accepted.
const MIN_PSK: usize = 32;
/// The largest request body read.
const MAX_BODY: usize = warren_proto::ssh_user::MAX_MESSAGE + 2;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// Time for a TLS handshake, and for a request.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A pre-shared key from a file (trimmed), at least [`MIN_PSK`] long.
pub(crate) fn read_psk(path: &Path) -> Result<Secret, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let key = text.trim();
    if key.len() < MIN_PSK {
        return Err(Failure::Usage(format!(
            "{}: a pre-shared key of at least {MIN_PSK} characters (e.g. `openssl rand -hex 32`)",
            path.display()
        )));
    }
    Ok(Secret::new(key))
}

/// The daemon's certificate, made once in the state directory.
fn certificate(
    dir: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    if !cert.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Usage(format!("{}: {e}", dir.display())))?;
        let made = tls::generate_self_signed(vec!["warren-auth-daemon".into()])
            .map_err(|e| Failure::Other(anyhow::anyhow!("{e}")))?;
        let write = |path: &Path, text: &str, mode: u32| {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
        };
        write(&key, &made.key_pem, 0o600)?;
        write(&cert, &made.cert_pem, 0o644)?;
    }
    let certs = tls::load_certs(&cert).map_err(|e| Failure::Usage(e.to_string()))?;
    let key = tls::load_key(&key).map_err(|e| Failure::Usage(e.to_string()))?;
    Ok((certs, key))
}

async fn standalone(args: AuthDaemonArgs) -> Result<(), Failure> {
    let (certs, key) = certificate(&args.host.state_dir)?;
    let pin = tls::pin_of(certs.first().ok_or_else(|| {
        Failure::Usage(format!(
            "{}: no certificate in tls.crt",
            args.host.state_dir.display()
        ))
    })?);
    if args.print_pin {
        println!("{pin}");
        return Ok(());
    }
    // clap requires both unless --print-pin.
    let (Some(psk_file), Some(listen)) = (&args.pre_shared_key_file, args.listen) else {
        return Err(Failure::Usage(
            "--pre-shared-key-file and --listen are needed".into(),
        ));
    };
    let psk = Arc::new(read_psk(psk_file)?);
    let daemon = Arc::new(args.host.start()?);
    let mut config =
        (*tls::server_config(certs, key).map_err(|e| Failure::Usage(e.to_string()))?).clone();
    config.alpn_protocols = vec![warren_site::ssh_user::DAEMON_ALPN.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Usage(format!("--listen {listen}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(listen);
    tracing::info!(event = "auth_daemon_listening", addr = %bound, pin = %pin, "the SSH auth daemon is listening");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let stop = crate::terminate_signal();
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(event = "auth_daemon_busy", client = %peer, "{MAX_CONNECTIONS} connections at once: closed");
            continue;
        };
        let (acceptor, psk, daemon) = (acceptor.clone(), psk.clone(), daemon.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(Ok(tls)) = tokio::time::timeout(IO_TIMEOUT, acceptor.accept(tcp)).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let (psk, daemon) = (psk.clone(), daemon.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(req, &psk, &daemon, peer).await) }
            });
            // One request per connection: a slot is not held between them.
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .header_read_timeout(IO_TIMEOUT)
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(tls), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
    tracing::info!(event = "auth_daemon_stopped", "the SSH auth daemon stopped");
    Ok(())
}

fn reply(status: u16, body: Vec<u8>) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
    resp
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    psk: &Secret,
    daemon: &Arc<warren_authd::AuthDaemon>,
    peer: std::net::SocketAddr,
) -> hyper::Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST || req.uri().path() != warren_site::ssh_user::DAEMON_PATH
    {
        return reply(404, Vec::new());
    }
    let presented = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Secret's equality is constant-time.
    if Secret::new(presented) != *psk {
        tracing::warn!(event = "auth_daemon_refused", client = %peer, reason = "bad_key", "a request without the pre-shared key");
        return reply(401, Vec::new());
    }
    let body = match tokio::time::timeout(
        IO_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        _ => return reply(400, Vec::new()),
    };
    let asked = body
        .get(2..)
        .filter(|p| {
            body.len() >= 2 && usize::from(u16::from_be_bytes([body[0], body[1]])) == p.len()
        })
        .and_then(|p| SshUserRequest::decode(p).ok());
    let Some(asked) = asked else {
        tracing::warn!(event = "auth_daemon_refused", client = %peer, reason = "bad_request", "a request that does not decode");
        return reply(400, Vec::new());
    };
    let answer = warren_site::ssh_user::answer(daemon, "standalone", asked).await;
    match answer.encode() {
        Ok(bytes) => reply(200, bytes),
        Err(_) => reply(500, Vec::new()),
    }
}
