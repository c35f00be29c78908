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
