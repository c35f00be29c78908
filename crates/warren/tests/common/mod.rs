//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_warren");

pub fn bin() -> &'static Path {
    Path::new(BIN)
}

/// Sends `data` through `addr` (an echo behind the tunnel), half-closes, and
/// returns everything read back.
pub async fn roundtrip(addr: SocketAddr, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let s = TcpStream::connect(addr).await?;
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await?;
        wr.shutdown().await?;
        std::io::Result::Ok(wr)
    });
    let mut got = Vec::new();
    rd.read_to_end(&mut got).await?;
    writer.await.expect("writer task")?;
    Ok(got)
}

/// A round trip that must echo `data` exactly.
pub async fn echo_ok(addr: SocketAddr, data: &[u8]) -> Result<(), String> {
    match roundtrip(addr, data.to_vec()).await {
        Ok(got) if got == data => Ok(()),
        Ok(got) => Err(format!(
            "echoed {} bytes, expected {}",
            got.len(),
            data.len()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// An edge publishing one TCP echo upstream as resource `echo` of site
/// `home` (no agent yet). Fields drop in order: the edge before its directory.
pub struct EchoEdge {
    pub edge: warren_testkit::EdgeProcess,
    pub echo: SocketAddr,
    pub dir: tempfile::TempDir,
}

pub async fn edge_with_echo() -> EchoEdge {
    let dir = tempfile::tempdir().unwrap();
    let echo = warren_testkit::echo_tcp().await;
    let spec = warren_testkit::EdgeSpec::new()
        .resource(warren_testkit::ResourceSpec::tcp("echo", "home", echo));
    let edge = warren_testkit::EdgeProcess::start(bin(), dir.path(), &spec);
    EchoEdge { edge, echo, dir }
}

/// A TCP server that answers every connection with `name` and closes, so
/// a test can tell which target a connection reached.
pub async fn banner(name: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(name.as_bytes()).await;
        }
    });
    addr
}

/// What a [`banner`] server behind `addr` said, if anything within 2 s.
pub async fn read_banner(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let mut got = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(2),
        s.read_to_string(&mut got),
    )
    .await
    .ok()?
    .ok()?;
    Some(got)
}

/// Polls `check` every 10 ms for up to 5 s; returns how long it took.
pub async fn within<F, Fut>(what: &str, mut check: F) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{what}: not within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// Whether nothing listens on `addr` any more. A bind is asked rather than
/// a connect: a connect to a listener that resets at once can fail too.
pub fn port_closed(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

/// Runs `args` (program first) and returns how it ended, whatever that was.
pub fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs `args` (program first), which must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = warren_testkit::run_ok(
        std::process::Command::new(args[0]).args(&args[1..]),
        &format!("{args:?}"),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
