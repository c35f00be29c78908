//! Copying bytes both ways between two connections.
//!
//! Like `tokio::io::copy_bidirectional`, with two differences that matter for
//! a proxy holding thousands of mostly idle connections: buffers start small
//! and uninitialised and grow only while reads fill them, so an idle
//! connection costs a few hundred bytes rather than two 64 KiB buffers; and
//! each direction's end (EOF) is passed on as a half-close (`shutdown`) while
//! the other direction keeps going.

use bytes::BytesMut;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest read per direction.
pub const PUMP_BUF: usize = 64 * 1024;
/// First read size per direction. Even an untouched 64 KiB allocation costs
/// resident pages (the allocator's boundary tags at both ends), which adds up
/// over thousands of idle connections.
const FIRST_BUF: usize = 1024;

async fn one_way<R, W>(r: &mut R, w: &mut W) -> io::Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = BytesMut::new();
    let mut size = FIRST_BUF;
    let mut total = 0u64;
    loop {
        buf.reserve(size);
        let n = r.read_buf(&mut buf).await?;
        if n == 0 {
            w.shutdown().await?;
            return Ok(total);
        }
        // A full read means more is waiting: grow (bulk transfers reach the
        // full size after three reads; chatty or idle ones stay small).
        if n >= size && size < PUMP_BUF {
            size = (size * 4).min(PUMP_BUF);
        }
        w.write_all(&buf).await?;
        buf.clear();
        total += n as u64;
    }
}

/// Copies `a → b` and `b → a` until both directions have ended. Returns the
/// bytes moved each way. The first error ends both directions; the caller
/// then drops both ends (which resets a tunnel stream).
pub async fn pump<A, B>(a: A, b: B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    tokio::try_join!(one_way(&mut ar, &mut bw), one_way(&mut br, &mut aw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_both_ways_and_passes_half_close_on() {
        let (client, proxy_left) = tokio::io::duplex(1024);
        let (proxy_right, server) = tokio::io::duplex(1024);
        let proxy = tokio::spawn(pump(proxy_left, proxy_right));
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut sr, mut sw) = tokio::io::split(server);
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let send = {
            let data = data.clone();
            tokio::spawn(async move {
                cw.write_all(&data).await.unwrap();
                cw.shutdown().await.unwrap();
            })
        };
        let mut got = Vec::new();
        sr.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
        send.await.unwrap();
        // The other direction still works after the first one ended.
        sw.write_all(b"reply").await.unwrap();
        sw.shutdown().await.unwrap();
        let mut reply = Vec::new();
        cr.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"reply");
        assert_eq!(proxy.await.unwrap().unwrap(), (200_000, 5));
    }
}
