//! `warren connect`: the private resources a device would reach over
//! WireGuard, from a machine with no WireGuard interface and no root —
//! local forwards (`-L 127.0.0.1:3000=grafana:3000`) and a SOCKS5 proxy
//! (`--socks 127.0.0.1:1080`), each connection one `GET /cli/connect`
//! upgraded to a byte stream through the edge, as `warren login`'s user.

use crate::ssh_cmd::SessionArgs;
use crate::Failure;
use anyhow::{anyhow, Context};
use clap::Args;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warren_ingress::socks5;

/// `warren connect`.
#[derive(Args, Debug)]
pub(crate) struct ConnectArgs {
    /// A local forward, `LOCAL_ADDR=DEST:PORT`: connections to LOCAL_ADDR
    /// go to DEST (a private resource's name, alias or address) on PORT.
    /// Repeatable.
    #[arg(short = 'L', value_name = "LOCAL_ADDR=DEST:PORT")]
    forward: Vec<String>,
    /// A SOCKS5 proxy (no authentication, CONNECT only) on this address.
    #[arg(long, value_name = "ADDR")]
    socks: Option<SocketAddr>,
    #[command(flatten)]
    session: SessionArgs,
}

/// How long a SOCKS5 client has to say where it goes.
const SOCKS_HANDSHAKE: Duration = Duration::from_secs(10);

pub(crate) async fn run(args: ConnectArgs) -> Result<(), Failure> {
    if args.forward.is_empty() && args.socks.is_none() {
        return Err(Failure::Usage(
            "warren connect: give -L LOCAL_ADDR=DEST:PORT and/or --socks ADDR".into(),
        ));
    }
    // The session is checked (and refreshed) once before anything listens.
    args.session.edge().await?;
    let session = Arc::new(args.session);
    let mut tasks = Vec::new();
    for f in &args.forward {
        let (local, dest) = f
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("-L {f}: expected LOCAL_ADDR=DEST:PORT")))?;
        let local: SocketAddr = local
            .parse()
            .map_err(|_| Failure::Usage(format!("-L {f}: `{local}` is not IP:PORT")))?;
        if !dest
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0))
        {
            return Err(Failure::Usage(format!("-L {f}: `{dest}` is not DEST:PORT")));
        }
        let listener = TcpListener::bind(local)
            .await
            .with_context(|| format!("listening on {local}"))?;
        let bound = listener.local_addr().context("local address")?;
        println!("warren connect: {bound} -> {dest}");
        let (session, dest) = (session.clone(), dest.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (session, dest) = (session.clone(), dest.clone());
                tokio::spawn(async move {
                    if let Err(e) = through(&session, &dest, client, None).await {
                        eprintln!("warren connect: {dest}: {e}");
                    }
                });
            }
        }));
    }
    if let Some(addr) = args.socks {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let bound = listener.local_addr().context("local address")?;
        println!("warren connect: SOCKS5 on {bound}");
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let session = session.clone();
                tokio::spawn(async move {
                    if let Err(e) = socks(&session, client).await {
                        eprintln!("warren connect: socks: {e}");
                    }
                });
            }
        }));
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// One connection to `dest` through the edge. With `socks`, the SOCKS5
/// reply is sent once the edge has answered (success, or which failure).
async fn through(
    session: &SessionArgs,
    dest: &str,
    mut client: TcpStream,
    socks: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    let (edge, token) = session.edge().await.map_err(|e| anyhow!("{e}"))?;
    let path = format!("/cli/connect?to={dest}");
    match edge
        .upgrade(&path, "warren-connect", &token)
        .await
        .map_err(|e| anyhow!("{e}"))?
    {
        Ok(upgraded) => {
            let mut upgraded = hyper_util::rt::TokioIo::new(upgraded);
            if let Some(early) = socks {
                client
                    .write_all(&socks5::reply(socks5::code::SUCCEEDED))
                    .await?;
                // What the client sent before its answer goes first.
                upgraded.write_all(&early).await?;
            }
            let _ = warren_transport::pump(upgraded, client).await;
            Ok(())
        }
        Err((status, answer)) => {
            if socks.is_some() {
                let code = if status == 403 || status == 404 {
                    socks5::code::NOT_ALLOWED
                } else {
                    socks5::code::HOST_UNREACHABLE
                };
                let _ = client.write_all(&socks5::reply(code)).await;
            }
            Err(anyhow!(
                "{status} {}: {}",
                answer["error"].as_str().unwrap_or("?"),
                answer["message"].as_str().unwrap_or("the edge refused")
            ))
        }
    }
}

/// A SOCKS5 client: the greeting and one CONNECT
/// (`warren_ingress::socks5`), then [`through`].
async fn socks(session: &SessionArgs, mut client: TcpStream) -> anyhow::Result<()> {
    let (dest, early) = tokio::time::timeout(SOCKS_HANDSHAKE, socks_request(&mut client))
        .await
        .map_err(|_| anyhow!("the client did not finish its SOCKS5 request in time"))??;
    through(session, &dest, client, Some(early)).await
}

/// Reads a SOCKS5 greeting and CONNECT request; answers the greeting and,
/// for what it cannot do, the request. Returns `HOST:PORT` and any bytes
/// the client sent after its request.
async fn socks_request(client: &mut TcpStream) -> anyhow::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(socks5::MAX_GREETING + socks5::MAX_REQUEST);
    let greeted = loop {
        match socks5::greeting(&buf) {
            Ok(Some(n)) => break n,
            Ok(None) => read_more(client, &mut buf).await?,
            Err(e) => return Err(refuse(client, e).await),
        }
    };
    buf.drain(..greeted);
    client.write_all(&socks5::NO_AUTHENTICATION).await?;
    loop {
        match socks5::request(&buf) {
            Ok(Some((n, connect))) => return Ok((connect.to_string(), buf.split_off(n))),
            Ok(None) => read_more(client, &mut buf).await?,
            Err(e) => return Err(refuse(client, e).await),
        }
    }
}

/// Appends what the client sends next to `buf` (one read: every message
/// the parser waits for is at most a few hundred bytes).
async fn read_more(client: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut chunk = [0u8; 512];
    let n = client.read(&mut chunk).await?;
    if n == 0 {
        return Err(anyhow!(
            "the client closed before its SOCKS5 request was whole"
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Tells the client why, if SOCKS5 has words for it.
async fn refuse(client: &mut TcpStream, e: socks5::Error) -> anyhow::Error {
    if let Some(reply) = e.reply() {
        let _ = client.write_all(&reply).await;
    }
    anyhow!("{e}")
}
