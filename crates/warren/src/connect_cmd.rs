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
    socks: Option<()>,
) -> anyhow::Result<()> {
    let (edge, token) = session.edge().await.map_err(|e| anyhow!("{e}"))?;
    let path = format!("/cli/connect?to={dest}");
    match edge
        .upgrade(&path, "warren-connect", &token)
        .await
        .map_err(|e| anyhow!("{e}"))?
    {
        Ok(upgraded) => {
            if socks.is_some() {
                client.write_all(&socks_reply(0)).await?;
            }
            let _ = warren_transport::pump(hyper_util::rt::TokioIo::new(upgraded), client).await;
            Ok(())
        }
        Err((status, answer)) => {
            if socks.is_some() {
                // 2: not allowed by the ruleset; 4: host unreachable.
                let code = if status == 403 || status == 404 { 2 } else { 4 };
                let _ = client.write_all(&socks_reply(code)).await;
            }
            Err(anyhow!(
                "{status} {}: {}",
                answer["error"].as_str().unwrap_or("?"),
                answer["message"].as_str().unwrap_or("the edge refused")
            ))
        }
    }
}

/// A SOCKS5 reply with `code` and an empty IPv4 bound address.
fn socks_reply(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

/// A SOCKS5 client: the greeting and one CONNECT, read in bounded pieces
/// (every length is a byte), then [`through`].
async fn socks(session: &SessionArgs, mut client: TcpStream) -> anyhow::Result<()> {
    let dest = tokio::time::timeout(SOCKS_HANDSHAKE, socks_request(&mut client))
        .await
        .map_err(|_| anyhow!("the client did not finish its SOCKS5 request in time"))??;
    through(session, &dest, client, Some(())).await
}

/// Reads a SOCKS5 greeting and CONNECT request; answers the greeting and,
/// for what it cannot do, the request. Returns `HOST:PORT`.
async fn socks_request(client: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(anyhow!("not SOCKS5"));
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        client.write_all(&[5, 0xff]).await?;
        return Err(anyhow!(
            "the client offers no method without authentication"
        ));
    }
    client.write_all(&[5, 0]).await?;
    let mut req = [0u8; 4];
    client.read_exact(&mut req).await?;
    if req[0] != 5 || req[1] != 1 {
        client.write_all(&socks_reply(7)).await?;
        return Err(anyhow!("only CONNECT is supported"));
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a).await?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name).await?;
            let name = String::from_utf8(name).map_err(|_| anyhow!("a name that is not UTF-8"))?;
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
            {
                client.write_all(&socks_reply(8)).await?;
                return Err(anyhow!("a name Warren does not serve"));
            }
            name
        }
        _ => {
            client.write_all(&socks_reply(8)).await?;
            return Err(anyhow!("only IPv4 addresses and names"));
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    Ok(format!("{host}:{}", u16::from_be_bytes(port)))
}
