//! Tunnel links over QUIC (quinn): one QUIC connection per agent link, one
//! QUIC stream per tunnelled connection, so QUIC's own per-stream flow control
//! and loss recovery apply.
//!
//! The agent opens the first bidirectional stream and runs the handshake on it;
//! it stays open as the control stream (the edge's `GoAway`). Each tunnelled
//! stream is opened by the edge and starts with an `Open` frame; the agent
//! answers with a `Reply` frame, then both sides carry raw bytes.

use crate::{LinkError, OpenError};
use bytes::{Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch, Mutex};
use warren_proto::frame::{FrameHeader, GoAwayReason, HEADER_LEN};
use warren_proto::{Frame, OpenReply, OpenRequest, SessionConfig};

/// Largest `Open`/`Reply` frame payload accepted on a QUIC stream.
const MAX_HEADER_PAYLOAD: usize = 4096;
/// How long a peer may take to send a stream's first frame.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest keepalive interval of an agent's QUIC link. A crashed edge sends
/// nothing; its agents learn that the link is gone from the restarted
/// edge's stateless reset, sent in answer to their next packet. So an idle
/// agent's keepalive bounds how long after the edge is back its agents
/// return (a TCP agent hears the kernel close the connection at once). It
/// costs an idle agent one small packet a second, and the edge's ack.
const AGENT_KEEPALIVE: Duration = Duration::from_secs(1);

/// QUIC transport settings derived from the session settings, so both
/// transports keep the same dead-link and window behaviour.
pub(crate) fn transport_config(
    session: &SessionConfig,
    role_is_agent: bool,
) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let keepalive = if role_is_agent {
        session.keepalive_interval.min(AGENT_KEEPALIVE)
    } else {
        session.keepalive_interval
    };
    t.keep_alive_interval(Some(keepalive));
    // QUIC restarts the idle timer when it sends the first ack-eliciting
    // packet after the last one received (RFC 9000 §10.1): a keepalive sent
    // just before the deadline would buy a whole new timeout. With the idle
    // timeout one keepalive interval short of `dead_after`, a silent peer is
    // declared dead within `dead_after`, as on the TCP transport. (Each side
    // uses the smaller of the two idle timeouts, RFC 9000 §10.1.)
    let idle = session
        .dead_after
        .saturating_sub(keepalive)
        .max(keepalive * 2);
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(idle).expect("idle timeout fits QUIC's limit"),
    ));
    // The link budget of the TCP transport, enforced by QUIC's own
    // connection-level flow control: what a peer can make this side buffer.
    // QUIC has no per-stream floor within it (the TCP session gives every
    // stream its opening window back whatever the budget), so streams
    // nobody reads stall the link's others once they hold the whole budget;
    // a stream window of 1/16 of the budget takes 16 of them to do it.
    t.receive_window(quinn::VarInt::from_u64(session.link_budget).unwrap_or(quinn::VarInt::MAX));
    let stream_window = (session.link_budget / 16).min(u64::from(session.max_window));
    t.stream_receive_window(quinn::VarInt::from_u64(stream_window).unwrap_or(quinn::VarInt::MAX));
    t.send_window(u64::from(session.max_window) * 4);
    // Only the edge opens tunnelled streams; the agent opens just the control stream.
    let bidi = if role_is_agent {
        session.max_streams as u32
    } else {
        4
    };
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(bidi));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    t
}

/// The edge's QUIC endpoint settings: the stateless-reset key, and
/// connection ids that a later run of the edge recognises as its own.
///
/// quinn answers a short-header packet for a connection it does not know
/// with a stateless reset only when the packet's connection id passes the
/// endpoint's id generator's `validate`. quinn's default generator signs the
/// ids with a key drawn at random per process, so an edge restarted after a
/// crash took its predecessor's ids for noise and dropped the agents'
/// packets without a reset: they waited out their idle timeout. Signed with
/// a key derived from `reset_key`, the old ids validate, and the agents are
/// reset at their next packet.
pub(crate) fn endpoint_config(reset_key: &[u8]) -> quinn::EndpointConfig {
    let reset = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, reset_key);
    let cid_key = connection_id_key(reset_key);
    let mut config = quinn::EndpointConfig::new(Arc::new(reset));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// The key that signs the edge's connection ids, derived from `reset_key`.
fn connection_id_key(reset_key: &[u8]) -> u64 {
    use aws_lc_rs::hmac;
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, reset_key),
        b"warren/quic-connection-id-key/v1",
    );
    let mut key = [0u8; 8];
    key.copy_from_slice(&tag.as_ref()[..8]);
    u64::from_le_bytes(key)
}

/// Reads one frame from the start of a QUIC stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Frame, LinkError> {
    let mut head = [0u8; HEADER_LEN];
    rd.read_exact(&mut head)
        .await
        .map_err(|e| LinkError::Io(e.to_string()))?;
    let header = FrameHeader::parse(&head).map_err(|e| LinkError::Protocol(e.to_string()))?;
    if header.len > MAX_HEADER_PAYLOAD {
        return Err(LinkError::Protocol(format!(
            "stream header frame of {} bytes is over {MAX_HEADER_PAYLOAD}",
            header.len
        )));
    }
    let mut payload = vec![0u8; header.len];
    rd.read_exact(&mut payload)
        .await
        .map_err(|e| LinkError::Io(e.to_string()))?;
    Frame::from_parts(header, Bytes::from(payload)).map_err(|e| LinkError::Protocol(e.to_string()))
}

pub(crate) fn encode(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out
}

/// A stream the agent has been asked to open, not yet answered.
pub(crate) struct QuicIncoming {
    pub(crate) request: OpenRequest,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

/// A link over one QUIC connection.
#[derive(Clone)]
pub struct QuicLink {
    conn: quinn::Connection,
    incoming: Arc<Mutex<mpsc::Receiver<QuicIncoming>>>,
    control_send: Arc<Mutex<quinn::SendStream>>,
    go_away: watch::Receiver<Option<GoAwayReason>>,
}

impl QuicLink {
    /// Wraps a connection whose handshake ran on `control`.
    pub(crate) fn start(
        conn: quinn::Connection,
        control_send: quinn::SendStream,
        control_recv: quinn::RecvStream,
        accept_streams: bool,
    ) -> QuicLink {
        let (go_tx, go_rx) = watch::channel(None);
        tokio::spawn(control_loop(control_recv, go_tx, conn.clone()));
        let (inc_tx, inc_rx) = mpsc::channel(1024);
        if accept_streams {
            tokio::spawn(accept_loop(conn.clone(), inc_tx));
        }
        QuicLink {
            conn,
            incoming: Arc::new(Mutex::new(inc_rx)),
            control_send: Arc::new(Mutex::new(control_send)),
            go_away: go_rx,
        }
    }

    /// Opens a stream and waits for the agent's reply.
    pub async fn open(&self, request: OpenRequest) -> Result<QuicStream, OpenError> {
        let link_err = |e: &dyn std::fmt::Display| OpenError::Link(LinkError::Io(e.to_string()));
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| link_err(&e))?;
        let frame = Frame::Open { stream: 1, request };
        send.write_all(&encode(&frame))
            .await
            .map_err(|e| link_err(&e))?;
        let reply = match read_frame(&mut recv).await {
            Ok(Frame::Reply { reply, .. }) => reply,
            Ok(other) => {
                let _ = send.reset(quinn::VarInt::from_u32(1));
                return Err(OpenError::Link(LinkError::Protocol(format!(
                    "expected a reply frame, got {other:?}"
                ))));
            }
            Err(e) => {
                let _ = send.reset(quinn::VarInt::from_u32(1));
                return Err(OpenError::Link(e));
            }
        };
        match reply {
            OpenReply::Connected => Ok(QuicStream::new(send, recv)),
            OpenReply::Refused { reason, message } => Err(OpenError::Refused { reason, message }),
        }
    }

    pub(crate) async fn accept(&self) -> Option<QuicIncoming> {
        self.incoming.lock().await.recv().await
    }

    pub(crate) async fn reply(
        incoming: QuicIncoming,
        reply: OpenReply,
    ) -> Result<Option<QuicStream>, LinkError> {
        let QuicIncoming { mut send, recv, .. } = incoming;
        let connected = matches!(reply, OpenReply::Connected);
        let frame = Frame::Reply { stream: 1, reply };
        send.write_all(&encode(&frame))
            .await
            .map_err(|e| LinkError::Io(e.to_string()))?;
        if connected {
            Ok(Some(QuicStream::new(send, recv)))
        } else {
            let _ = send.finish();
            Ok(None)
        }
    }

    /// Tells the agent no new streams will come; existing ones go on.
    pub async fn go_away(&self, reason: GoAwayReason) {
        let mut send = self.control_send.lock().await;
        let _ = send.write_all(&encode(&Frame::GoAway { reason })).await;
    }

    pub(crate) fn go_away_watch(&self) -> watch::Receiver<Option<GoAwayReason>> {
        self.go_away.clone()
    }

    /// Closes the connection now.
    pub fn close(&self, reason: &str) {
        self.conn
            .close(quinn::VarInt::from_u32(0), reason.as_bytes());
    }

    /// Resolves when the connection has closed.
    pub async fn closed(&self) -> LinkError {
        describe(self.conn.closed().await)
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    /// Round-trip time as estimated by QUIC.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }
}

pub(crate) fn describe(e: quinn::ConnectionError) -> LinkError {
    match e {
        quinn::ConnectionError::TimedOut => {
            LinkError::Dead("no traffic from peer: QUIC idle timeout".into())
        }
        quinn::ConnectionError::Reset => LinkError::Reset(
            "the peer answered with a QUIC stateless reset (it restarted and lost the link)".into(),
        ),
        quinn::ConnectionError::LocallyClosed => LinkError::Closed("closed locally".into()),
        quinn::ConnectionError::ApplicationClosed(c) => LinkError::Closed(format!(
            "peer closed the link: {}",
            String::from_utf8_lossy(&c.reason)
        )),
        other => LinkError::Io(other.to_string()),
    }
}

async fn control_loop(
    mut recv: quinn::RecvStream,
    go_tx: watch::Sender<Option<GoAwayReason>>,
    conn: quinn::Connection,
) {
    loop {
        match read_frame(&mut recv).await {
            Ok(Frame::GoAway { reason }) => {
                go_tx.send_replace(Some(reason));
            }
            Ok(Frame::Ping { .. } | Frame::Pong { .. } | Frame::Control { .. }) => {}
            Ok(other) => {
                conn.close(
                    quinn::VarInt::from_u32(2),
                    b"unexpected frame on control stream",
                );
                tracing::warn!(frame = ?other, "unexpected frame on QUIC control stream; link closed");
                return;
            }
            Err(LinkError::Protocol(msg)) => {
                conn.close(quinn::VarInt::from_u32(2), b"protocol error");
                tracing::warn!(error = %msg, "protocol error on QUIC control stream; link closed");
                return;
            }
            Err(_) => return,
        }
    }
}

async fn accept_loop(conn: quinn::Connection, tx: mpsc::Sender<QuicIncoming>) {
    while let Ok((send, mut recv)) = conn.accept_bi().await {
        let tx = tx.clone();
        let conn = conn.clone();
        // Each stream's header is read in its own task: a slow peer stream
        // never holds up the others.
        tokio::spawn(async move {
            match tokio::time::timeout(HEADER_TIMEOUT, read_frame(&mut recv)).await {
                Ok(Ok(Frame::Open { request, .. })) => {
                    let _ = tx
                        .send(QuicIncoming {
                            request,
                            send,
                            recv,
                        })
                        .await;
                }
                Ok(Ok(other)) => {
                    tracing::warn!(frame = ?other, "QUIC stream did not start with an open frame; link closed");
                    conn.close(
                        quinn::VarInt::from_u32(2),
                        b"stream did not start with open",
                    );
                }
                Ok(Err(LinkError::Protocol(msg))) => {
                    tracing::warn!(error = %msg, "malformed open frame; link closed");
                    conn.close(quinn::VarInt::from_u32(2), b"malformed open frame");
                }
                Ok(Err(_)) | Err(_) => {
                    let mut send = send;
                    let _ = send.reset(quinn::VarInt::from_u32(1));
                }
            }
        });
    }
}

/// One tunnelled stream over QUIC. Dropping it before shutting down resets it.
pub struct QuicStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    shut_down: bool,
    eof: bool,
}

impl QuicStream {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        QuicStream {
            send,
            recv,
            shut_down: false,
            eof: false,
        }
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = AsyncRead::poll_read(Pin::new(&mut self.recv), cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            if buf.filled().len() == before && buf.remaining() > 0 {
                self.eof = true;
            }
        }
        r
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shut_down = true;
        AsyncWrite::poll_shutdown(Pin::new(&mut self.send), cx)
    }
}

impl Drop for QuicStream {
    fn drop(&mut self) {
        if !self.shut_down {
            let _ = self.send.reset(quinn::VarInt::from_u32(0));
        }
        if !self.eof {
            let _ = self.recv.stop(quinn::VarInt::from_u32(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn_proto::{ConnectionIdGenerator, HashedConnectionIdGenerator};

    fn ids(reset_key: &[u8]) -> HashedConnectionIdGenerator {
        HashedConnectionIdGenerator::from_key(connection_id_key(reset_key))
    }

    #[test]
    fn a_restarted_edge_recognises_its_predecessors_connection_ids() {
        let mut before = ids(&[7; 32]);
        let after = ids(&[7; 32]);
        let other_edge = ids(&[8; 32]);
        let mut foreign = 0;
        for _ in 0..200 {
            let cid = before.generate_cid();
            assert!(
                after.validate(&cid).is_ok(),
                "{cid} refused after a restart"
            );
            foreign += usize::from(other_edge.validate(&cid).is_err());
        }
        // Another key's ids fail (a 5-byte signature: all but by chance).
        assert!(
            foreign > 190,
            "only {foreign} of 200 refused by another key"
        );
    }
}
