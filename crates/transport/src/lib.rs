//! Tunnel links between an agent and the edge.
//!
//! The agent dials ([`dial`]); the edge accepts ([`TunnelListener`]). Either
//! way the result is a [`Link`]: an encrypted, mutually authenticated
//! connection that carries many independent [`TunnelStream`]s. Two transports
//! sit behind it:
//! * **QUIC** (quinn): streams are QUIC streams;
//! * **TCP+TLS**: streams are multiplexed by Warren's own [`mux`] driver over
//!   the sans-IO [`warren_proto::Session`], because UDP is blocked on many
//!   networks.
//!
//! The edge authenticates agents (`site_id` + secret in the handshake), the
//! agent authenticates the edge (TLS: CA, pin or system roots). Who may do what
//! is decided by the callers; this crate only moves bytes and frames.
//!
//! Invariant: nothing here knows about sites, resources or allowlists.

mod handshake;
pub mod mux;
mod pump;
pub mod quic;
pub mod tls;

pub use handshake::{
    dial, Accepted, DialConfig, DialError, Endpoint, PendingLink, TransportChoice, TunnelListener,
    DEFAULT_PORT,
};
use mux::{MuxLink, MuxStream};
pub use pump::{pump, PUMP_BUF};
use quic::{QuicIncoming, QuicLink, QuicStream};
/// The QUIC endpoint type, re-exported for shutdown handling.
pub use quinn::Endpoint as QuicEndpoint;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
pub use warren_proto::frame::GoAwayReason;
use warren_proto::{OpenReply, OpenRequest, RefuseReason, StreamId};

/// Which transport a link runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// QUIC over UDP.
    Quic,
    /// Warren's multiplexer over TCP+TLS.
    Tcp,
}

impl TransportKind {
    /// `quic` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Quic => "quic",
            TransportKind::Tcp => "tcp",
        }
    }
}

/// Why a link ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Closed on purpose, by either side.
    #[error("{0}")]
    Closed(String),
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer went silent (lost NAT mapping, cut cable, crashed host).
    #[error("link dead: {0}")]
    Dead(String),
    /// The peer's endpoint no longer knows the link: a QUIC stateless reset,
    /// sent by an edge that restarted (or crashed and came back) since.
    #[error("link reset: {0}")]
    Reset(String),
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(String),
}

impl LinkError {
    /// One word for logs and tests: `closed`, `protocol`, `dead` (silence
    /// until the dead-link timeout), `reset` (QUIC stateless reset) or `io`.
    pub fn cause(&self) -> &'static str {
        match self {
            LinkError::Closed(_) => "closed",
            LinkError::Protocol(_) => "protocol",
            LinkError::Dead(_) => "dead",
            LinkError::Reset(_) => "reset",
            LinkError::Io(_) => "io",
        }
    }
}

/// Why an open failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The agent refused (allowlist, target down...). Retrying on another
    /// agent of the same site would give the same answer for `NotAllowed`.
    #[error("agent refused: {message} ({})", reason.as_str())]
    Refused {
        /// Why.
        reason: RefuseReason,
        /// The agent's explanation.
        message: String,
    },
    /// The link failed before the agent answered: safe to retry elsewhere.
    #[error("link failed: {0}")]
    Link(LinkError),
}

/// An established, authenticated link.
#[derive(Clone)]
pub enum Link {
    /// Over TCP+TLS.
    Mux(MuxLink),
    /// Over QUIC.
    Quic(QuicLink),
}

impl Link {
    /// The transport in use.
    pub fn kind(&self) -> TransportKind {
        match self {
            Link::Mux(_) => TransportKind::Tcp,
            Link::Quic(_) => TransportKind::Quic,
        }
    }

    /// Opens a stream to the agent and waits until it has connected to the target.
    pub async fn open(&self, request: OpenRequest) -> Result<TunnelStream, OpenError> {
        match self {
            Link::Mux(l) => l.open(request).await.map(TunnelStream::Mux),
            Link::Quic(l) => l.open(request).await.map(TunnelStream::Quic),
        }
    }

    /// Waits for the next stream the edge opens; `None` once the link is closed.
    pub async fn accept(&self) -> Option<IncomingStream> {
        match self {
            Link::Mux(l) => {
                let (id, request) = l.accept().await?;
                Some(IncomingStream {
                    request: request.clone(),
                    inner: IncomingInner::Mux {
                        link: l.clone(),
                        id,
                        answered: false,
                    },
                })
            }
            Link::Quic(l) => {
                let inc = l.accept().await?;
                Some(IncomingStream {
                    request: inc.request.clone(),
                    inner: IncomingInner::Quic(Some(inc)),
                })
            }
        }
    }

    /// Tells the peer that no new streams will be opened.
    pub async fn go_away(&self, reason: GoAwayReason) {
        match self {
            Link::Mux(l) => l.go_away(reason).await,
            Link::Quic(l) => l.go_away(reason).await,
        }
    }

    /// Changes when the peer announces it is going away.
    pub fn go_away_watch(&self) -> watch::Receiver<Option<GoAwayReason>> {
        match self {
            Link::Mux(l) => l.go_away_watch(),
            Link::Quic(l) => l.go_away_watch(),
        }
    }

    /// Closes the link now.
    pub fn close(&self, reason: &str) {
        match self {
            Link::Mux(l) => l.close(reason),
            Link::Quic(l) => l.close(reason),
        }
    }

    /// Resolves when the link has closed.
    pub async fn closed(&self) -> LinkError {
        match self {
            Link::Mux(l) => l.closed().await,
            Link::Quic(l) => l.closed().await,
        }
    }

    /// Whether the link has closed.
    pub fn is_closed(&self) -> bool {
        match self {
            Link::Mux(l) => l.is_closed(),
            Link::Quic(l) => l.is_closed(),
        }
    }

    /// Round-trip time, if measured.
    pub fn rtt(&self) -> Option<Duration> {
        match self {
            Link::Mux(l) => l.rtt(),
            Link::Quic(l) => Some(l.rtt()),
        }
    }
}

/// A stream the edge asked the agent to open, awaiting the agent's decision.
/// Dropping it unanswered resets the stream.
pub struct IncomingStream {
    /// What the edge asks for.
    pub request: OpenRequest,
    inner: IncomingInner,
}

enum IncomingInner {
    Mux {
        link: MuxLink,
        id: StreamId,
        answered: bool,
    },
    Quic(Option<QuicIncoming>),
}

impl IncomingStream {
    /// Tells the edge the target is connected; returns the stream.
    pub async fn accept(mut self) -> Result<TunnelStream, LinkError> {
        let stream = self.answer(OpenReply::Connected).await?;
        stream.ok_or_else(|| LinkError::Closed("stream closed before it was accepted".into()))
    }

    /// Tells the edge the stream is refused, and why.
    pub async fn refuse(mut self, reason: RefuseReason, message: String) -> Result<(), LinkError> {
        self.answer(OpenReply::Refused { reason, message })
            .await
            .map(drop)
    }

    async fn answer(&mut self, reply: OpenReply) -> Result<Option<TunnelStream>, LinkError> {
        match &mut self.inner {
            IncomingInner::Mux { link, id, answered } => {
                *answered = true;
                Ok(link.reply(*id, reply).await?.map(TunnelStream::Mux))
            }
            IncomingInner::Quic(inc) => {
                let inc = inc
                    .take()
                    .ok_or_else(|| LinkError::Closed("already answered".into()))?;
                Ok(QuicLink::reply(inc, reply).await?.map(TunnelStream::Quic))
            }
        }
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        if let IncomingInner::Mux {
            link,
            id,
            answered: false,
        } = &self.inner
        {
            link.reset(*id);
        }
    }
}

/// One tunnelled connection: bytes in both directions, half-close with
/// `shutdown`, reset when dropped before both directions finished.
pub enum TunnelStream {
    /// On a TCP+TLS link.
    Mux(MuxStream),
    /// On a QUIC link.
    Quic(QuicStream),
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TunnelStream::Mux(s) => Pin::new(s).poll_read(cx, buf),
            TunnelStream::Quic(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TunnelStream::Mux(s) => Pin::new(s).poll_write(cx, buf),
            TunnelStream::Quic(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TunnelStream::Mux(s) => Pin::new(s).poll_flush(cx),
            TunnelStream::Quic(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TunnelStream::Mux(s) => Pin::new(s).poll_shutdown(cx),
            TunnelStream::Quic(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
