//! The multiplexing state machine for one TCP+TLS link.
//!
//! A [`Session`] tracks every stream on a link: who opened it, how much each
//! side may still send (per-stream flow control), whether each direction has
//! finished, and the link's liveness. Drivers feed it every received frame with
//! [`Session::handle`] and get back at most one [`Event`]; they drain frames it
//! wants sent with [`Session::poll_transmit`]. It never buffers stream bytes:
//! those stay with the driver, so a `Data` payload is passed through without
//! copies.
//!
//! Flow control: each direction of each stream starts with only
//! [`SessionConfig::opening_window`] bytes of credit (protocol version 2), so
//! what a peer may send on a stream before its open is answered is small. Once
//! the stream is established (the acceptor sends `Connected`, the opener
//! receives it) each receiver grants the rest of
//! [`SessionConfig::initial_window`] with a `Window` frame, and more as its
//! consumer reads ([`Session::consumed`]). When a whole window is used up in
//! less than two round trips the window was what limited throughput, so the
//! receiver doubles it, up to [`SessionConfig::max_window`] (the scheme yamux
//! and HTTP/2 stacks use).
//!
//! Every grant beyond the opening window is drawn from one per-link budget,
//! [`SessionConfig::link_budget`]: the credit the peer holds plus the bytes
//! received and not yet consumed, over all streams. When the budget is spent,
//! grants wait (the stream is *starved*) until a consumer frees some; a stream
//! may always hold its opening window, so a link whose budget is pinned by
//! streams nobody reads still moves. What one peer can make this side buffer on
//! a link is therefore at most `link_budget + max_streams * opening_window`,
//! whatever it sends; the receiver, not the sender, decides it.
//!
//! Stream ids: the edge opens odd ids, the agent even ones, each strictly
//! increasing. A frame for an id that was used and is now closed is ignored
//! (it crossed a reset on the wire); a frame for an id never opened closes the
//! link with a [`ProtocolError`].

use crate::frame::{Frame, GoAwayReason, ResetCode, StreamId};
use crate::open::{OpenReply, OpenRequest};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Which end of the link this session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The edge: opens streams with odd ids.
    Edge,
    /// The agent: accepts streams (and would open even ids).
    Agent,
}

/// Credit a stream has in each direction before it is established: what a
/// peer may send on a stream before its open is answered.
pub const OPENING_WINDOW: u32 = 8 * 1024;

/// Tunables of a session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Credit each direction of a stream has before the stream is
    /// established. A protocol constant: both ends must agree.
    pub opening_window: u32,
    /// Window a stream is granted once established, in bytes.
    pub initial_window: u32,
    /// Largest window auto-tuning grows a stream to.
    pub max_window: u32,
    /// Streams the peer may have open at once; more are reset.
    pub max_streams: usize,
    /// Grants beyond the opening windows, over all streams of the link, stop
    /// at this many bytes held (credit outstanding plus bytes not consumed).
    pub link_budget: u64,
    /// How often to ping an idle link.
    pub keepalive_interval: Duration,
    /// A link that has received nothing for this long is dead.
    pub dead_after: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            opening_window: OPENING_WINDOW,
            initial_window: 256 * 1024,
            max_window: 16 * 1024 * 1024,
            max_streams: 4096,
            link_budget: 32 * 1024 * 1024,
            keepalive_interval: Duration::from_secs(4),
            dead_after: Duration::from_secs(12),
        }
    }
}

/// Something the driver must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The peer opened a stream.
    Opened {
        /// Stream.
        stream: StreamId,
        /// What it asks for.
        request: OpenRequest,
    },
    /// The peer answered a stream we opened. A refusal has closed the stream.
    Replied {
        /// Stream.
        stream: StreamId,
        /// Answer.
        reply: OpenReply,
    },
    /// Bytes for a stream.
    Data {
        /// Stream.
        stream: StreamId,
        /// Bytes.
        payload: Bytes,
    },
    /// The peer finished sending on a stream.
    Fin {
        /// Stream.
        stream: StreamId,
    },
    /// The peer reset a stream; it is gone.
    Reset {
        /// Stream.
        stream: StreamId,
        /// Why.
        code: ResetCode,
    },
    /// The stream has new send credit.
    Credit {
        /// Stream.
        stream: StreamId,
    },
    /// A control message.
    Control {
        /// JSON bytes.
        payload: Bytes,
    },
    /// The peer will open no more streams and close the link soon.
    GoAway {
        /// Why.
        reason: GoAwayReason,
    },
}

/// The peer broke the protocol: the link must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame for a stream id that was never opened.
    #[error("frame for stream {0}, which was never opened")]
    UnknownStream(StreamId),
    /// An `Open` with an id of the wrong parity or not above the last one.
    #[error("peer opened stream {got} out of order (last was {last})")]
    BadStreamId {
        /// The id.
        got: StreamId,
        /// The last id the peer opened.
        last: StreamId,
    },
    /// The peer opened a stream it is not allowed to open.
    #[error("this peer may not open streams")]
    OpenNotAllowed,
    /// More data than the window allowed.
    #[error("stream {0} sent more than its flow-control window")]
    FlowControl(StreamId),
    /// A window update pushing credit past 2^31.
    #[error("window update overflows the credit of stream {0}")]
    WindowOverflow(StreamId),
    /// Data after the peer's own `Fin`.
    #[error("data on stream {0} after its end")]
    DataAfterFin(StreamId),
    /// Data or `Fin` before the `Reply` on a stream we opened, or a second reply.
    #[error("stream {0}: reply missing, repeated or unexpected")]
    BadReply(StreamId),
    /// Nothing heard from the peer for [`SessionConfig::dead_after`].
    #[error("no traffic from peer for {0:?}")]
    Dead(Duration),
    /// All stream ids used up.
    #[error("stream ids exhausted")]
    IdsExhausted,
    /// The peer sent `GoAway`; no new streams.
    #[error("peer is going away")]
    GoingAway,
}

#[derive(Debug)]
struct StreamState {
    /// Bytes we may still send.
    send_credit: u64,
    /// Window we currently grant the peer.
    recv_window: u32,
    /// Bytes the peer may still send before we grant more.
    recv_remaining: u64,
    /// Bytes received and not yet consumed.
    recv_buffered: u64,
    /// Credit owed to the peer and not yet granted (consumed bytes, and the
    /// rest of the initial window until the stream is established).
    recv_unacked: u64,
    /// In the starved queue, waiting for link budget.
    starved: bool,
    /// Answered `Connected` (by us, or to us): grants beyond the opening
    /// window start only then.
    established: bool,
    last_grant: Option<Instant>,
    local_fin: bool,
    remote_fin: bool,
    /// For streams we opened: whether the peer has replied.
    awaiting_reply: bool,
}

/// The multiplexing state of one link. See the module docs.
#[derive(Debug)]
pub struct Session {
    role: Role,
    config: SessionConfig,
    streams: HashMap<StreamId, StreamState>,
    next_local: StreamId,
    last_remote: StreamId,
    outbox: VecDeque<Frame>,
    last_received: Instant,
    last_ping_sent: Option<(u64, Instant)>,
    ping_counter: u64,
    rtt: Option<Duration>,
    peer_going_away: bool,
    /// Credit outstanding plus bytes not consumed, over all streams.
    link_held: u64,
    /// Streams waiting for link budget to be granted credit, oldest first.
    starved: VecDeque<StreamId>,
}

impl Session {
    /// A new session whose link came up at `now`.
    pub fn new(role: Role, config: SessionConfig, now: Instant) -> Self {
        Session {
            role,
            config,
            streams: HashMap::new(),
            next_local: match role {
                Role::Edge => 1,
                Role::Agent => 2,
            },
            last_remote: 0,
            outbox: VecDeque::new(),
            last_received: now,
            last_ping_sent: None,
            ping_counter: 0,
            rtt: None,
            peer_going_away: false,
            link_held: 0,
            starved: VecDeque::new(),
        }
    }

    /// Bytes this side has let the peer put in flight or left unconsumed, over
    /// all streams: what the peer can make it buffer right now.
    pub fn link_held(&self) -> u64 {
        self.link_held
    }

    /// Open streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The latest measured round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Whether the stream is still open in at least one direction.
    pub fn is_open(&self, stream: StreamId) -> bool {
        self.streams.contains_key(&stream)
    }

    fn new_stream(&mut self, awaiting_reply: bool) -> StreamState {
        let opening = self.config.opening_window.min(self.config.initial_window);
        self.link_held += u64::from(opening);
        StreamState {
            send_credit: u64::from(opening),
            recv_window: self.config.initial_window,
            recv_remaining: u64::from(opening),
            recv_buffered: 0,
            recv_unacked: u64::from(self.config.initial_window - opening),
            starved: false,
            established: false,
            last_grant: None,
            local_fin: false,
            remote_fin: false,
            awaiting_reply,
        }
    }

    /// Removes a stream and returns what it held to the link budget.
    fn remove_stream(&mut self, stream: StreamId) -> Option<StreamState> {
        let s = self.streams.remove(&stream)?;
        self.link_held = self
            .link_held
            .saturating_sub(s.recv_remaining + s.recv_buffered);
        self.feed_starved();
        Some(s)
    }

    /// Grants `stream` what it is owed, as far as the link budget allows; a
    /// stream always gets back to holding its opening window. What cannot be
    /// granted waits in the starved queue.
    fn grant(&mut self, stream: StreamId, now: Option<Instant>) {
        let room = self.config.link_budget.saturating_sub(self.link_held);
        let opening = u64::from(self.config.opening_window);
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if !s.established || s.remote_fin || s.recv_unacked == 0 {
            return;
        }
        let floor = opening.saturating_sub(s.recv_remaining + s.recv_buffered);
        let give = s.recv_unacked.min(room.max(floor)).min(u64::from(u32::MAX));
        if give > 0 {
            s.recv_remaining += give;
            s.recv_unacked -= give;
            if now.is_some() {
                s.last_grant = now;
            }
            self.link_held += give;
            self.outbox.push_back(Frame::Window {
                stream,
                increment: give as u32,
            });
        }
        if s.recv_unacked > 0 && !s.starved {
            s.starved = true;
            self.starved.push_back(stream);
        }
    }

    /// Grants starved streams, oldest first, while the budget has room.
    fn feed_starved(&mut self) {
        for _ in 0..self.starved.len() {
            if self.link_held >= self.config.link_budget {
                return;
            }
            let Some(id) = self.starved.pop_front() else {
                return;
            };
            if let Some(s) = self.streams.get_mut(&id) {
                s.starved = false;
                self.grant(id, None);
            }
        }
    }

    fn is_local(&self, stream: StreamId) -> bool {
        let odd = stream % 2 == 1;
        odd == (self.role == Role::Edge)
    }

    /// Whether `stream` is an id that was used at some point (so a late frame
    /// for it is harmless).
    fn was_used(&self, stream: StreamId) -> bool {
        if self.is_local(stream) {
            stream < self.next_local
        } else {
            stream <= self.last_remote
        }
    }

    /// Opens a stream; the returned frame must be sent before any data on it.
    pub fn open(&mut self, request: OpenRequest) -> Result<(StreamId, Frame), ProtocolError> {
        if self.peer_going_away {
            return Err(ProtocolError::GoingAway);
        }
        let id = self.next_local;
        self.next_local = id.checked_add(2).ok_or(ProtocolError::IdsExhausted)?;
        let state = self.new_stream(true);
        self.streams.insert(id, state);
        Ok((
            id,
            Frame::Open {
                stream: id,
                request,
            },
        ))
    }

    /// Answers a stream the peer opened. A refusal closes the stream; a
    /// `Connected` establishes it and queues the grant of the rest of its
    /// initial window (see [`Session::poll_transmit`]).
    pub fn reply(&mut self, stream: StreamId, reply: OpenReply) -> Frame {
        if matches!(reply, OpenReply::Connected) {
            if let Some(s) = self.streams.get_mut(&stream) {
                s.established = true;
            }
            self.grant(stream, None);
        } else {
            self.remove_stream(stream);
        }
        Frame::Reply { stream, reply }
    }

    /// Takes up to `want` bytes of send credit on `stream`. 0 means wait for
    /// [`Event::Credit`] (or the stream is gone: check [`Session::is_open`]).
    pub fn take_credit(&mut self, stream: StreamId, want: usize) -> usize {
        match self.streams.get_mut(&stream) {
            Some(s) if !s.local_fin => {
                let n = (want as u64).min(s.send_credit);
                s.send_credit -= n;
                n as usize
            }
            _ => 0,
        }
    }

    /// Marks our direction of `stream` finished; returns the `Fin` to send, or
    /// `None` if the stream is gone or already finished.
    pub fn finish(&mut self, stream: StreamId) -> Option<Frame> {
        let s = self.streams.get_mut(&stream)?;
        if s.local_fin {
            return None;
        }
        s.local_fin = true;
        if s.remote_fin {
            self.remove_stream(stream);
        }
        Some(Frame::Fin { stream })
    }

    /// Abandons `stream`; returns the `Reset` to send if it was open.
    pub fn reset(&mut self, stream: StreamId, code: ResetCode) -> Option<Frame> {
        self.remove_stream(stream)?;
        Some(Frame::Reset { stream, code })
    }

    /// Records that the consumer read `n` bytes of `stream`; may queue a
    /// window update (see [`Session::poll_transmit`]).
    pub fn consumed(&mut self, stream: StreamId, n: usize, now: Instant) {
        let rtt = self.rtt;
        let max_window = self.config.max_window;
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let n = (n as u64).min(s.recv_buffered);
        s.recv_buffered -= n;
        self.link_held = self.link_held.saturating_sub(n);
        let starved = s.starved;
        let due = !s.remote_fin && !starved && s.recv_unacked + n >= u64::from(s.recv_window / 2);
        if !s.remote_fin {
            s.recv_unacked += n;
        }
        // Streams that waited for budget are served before this one grants
        // itself again, or a busy stream would keep the budget to itself.
        self.feed_starved();
        if starved {
            // Still waiting: at least its opening window again, budget or not.
            self.grant(stream, None);
        }
        if !due {
            return;
        }
        // Windows grow only while the link has room for the growth twice over.
        let spare = self.config.link_budget.saturating_sub(self.link_held) / 2;
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        // Grow the window when it was used up quickly relative to the RTT.
        let quick = Duration::from_millis(100).max(rtt.map_or(Duration::ZERO, |r| r * 2));
        if let Some(last) = s.last_grant {
            if now.saturating_duration_since(last) < quick && s.recv_window < max_window {
                let grown = (s.recv_window.saturating_mul(2)).min(max_window);
                let growth = u64::from(grown - s.recv_window);
                if s.recv_unacked + growth <= spare {
                    s.recv_unacked += growth;
                    s.recv_window = grown;
                }
            }
        }
        self.grant(stream, Some(now));
    }

    /// Next frame the session wants sent (window updates, pongs, pings, resets).
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.outbox.pop_front()
    }

    /// Advances timers: queues a ping when one is due, and fails when the
    /// peer has been silent for too long. Call about once a second.
    pub fn tick(&mut self, now: Instant) -> Result<(), ProtocolError> {
        let silent = now.saturating_duration_since(self.last_received);
        if silent >= self.config.dead_after {
            return Err(ProtocolError::Dead(silent));
        }
        let due = match self.last_ping_sent {
            None => true,
            Some((_, at)) => now.saturating_duration_since(at) >= self.config.keepalive_interval,
        };
        if due {
            self.ping_counter += 1;
            self.last_ping_sent = Some((self.ping_counter, now));
            self.outbox.push_back(Frame::Ping {
                opaque: self.ping_counter,
            });
        }
        Ok(())
    }

    /// Handles one received frame.
    pub fn handle(&mut self, frame: Frame, now: Instant) -> Result<Option<Event>, ProtocolError> {
        self.last_received = now;
        match frame {
            Frame::Ping { opaque } => {
                self.outbox.push_back(Frame::Pong { opaque });
                Ok(None)
            }
            Frame::Pong { opaque } => {
                if let Some((sent, at)) = self.last_ping_sent {
                    if sent == opaque {
                        self.rtt = Some(now.saturating_duration_since(at));
                    }
                }
                Ok(None)
            }
            Frame::Control { payload } => Ok(Some(Event::Control { payload })),
            Frame::GoAway { reason } => {
                self.peer_going_away = true;
                Ok(Some(Event::GoAway { reason }))
            }
            Frame::Open { stream, request } => self.handle_open(stream, request),
            Frame::Reply { stream, reply } => {
                let Some(s) = self.streams.get_mut(&stream) else {
                    return self.late_or_unknown(stream);
                };
                if !s.awaiting_reply {
                    return Err(ProtocolError::BadReply(stream));
                }
                s.awaiting_reply = false;
                if matches!(reply, OpenReply::Connected) {
                    s.established = true;
                    self.grant(stream, None);
                } else {
                    self.remove_stream(stream);
                }
                Ok(Some(Event::Replied { stream, reply }))
            }
            Frame::Data { stream, payload } => {
                let Some(s) = self.streams.get_mut(&stream) else {
                    return self.late_or_unknown(stream);
                };
                if s.awaiting_reply {
                    return Err(ProtocolError::BadReply(stream));
                }
                if s.remote_fin {
                    return Err(ProtocolError::DataAfterFin(stream));
                }
                let len = payload.len() as u64;
                if len > s.recv_remaining {
                    return Err(ProtocolError::FlowControl(stream));
                }
                s.recv_remaining -= len;
                s.recv_buffered += len;
                Ok(Some(Event::Data { stream, payload }))
            }
            Frame::Window { stream, increment } => {
                let Some(s) = self.streams.get_mut(&stream) else {
                    return self.late_or_unknown(stream);
                };
                s.send_credit += u64::from(increment);
                if s.send_credit > 1 << 31 {
                    return Err(ProtocolError::WindowOverflow(stream));
                }
                Ok(Some(Event::Credit { stream }))
            }
            Frame::Fin { stream } => {
                let Some(s) = self.streams.get_mut(&stream) else {
                    return self.late_or_unknown(stream);
                };
                if s.awaiting_reply {
                    return Err(ProtocolError::BadReply(stream));
                }
                if s.remote_fin {
                    return Err(ProtocolError::DataAfterFin(stream));
                }
                s.remote_fin = true;
                // Credit the peer will never use goes back to the link.
                let unused = std::mem::take(&mut s.recv_remaining);
                self.link_held = self.link_held.saturating_sub(unused);
                if s.local_fin {
                    self.remove_stream(stream);
                }
                Ok(Some(Event::Fin { stream }))
            }
            Frame::Reset { stream, code } => {
                if self.remove_stream(stream).is_none() {
                    return self.late_or_unknown(stream);
                }
                Ok(Some(Event::Reset { stream, code }))
            }
        }
    }

    fn handle_open(
        &mut self,
        stream: StreamId,
        request: OpenRequest,
    ) -> Result<Option<Event>, ProtocolError> {
        // Only the edge opens streams (protocol versions 1 and 2).
        if self.role == Role::Edge {
            return Err(ProtocolError::OpenNotAllowed);
        }
        if self.is_local(stream) || stream <= self.last_remote {
            return Err(ProtocolError::BadStreamId {
                got: stream,
                last: self.last_remote,
            });
        }
        self.last_remote = stream;
        if self.streams.len() >= self.config.max_streams {
            self.outbox.push_back(Frame::Reset {
                stream,
                code: ResetCode::Refused,
            });
            return Ok(None);
        }
        let state = self.new_stream(false);
        self.streams.insert(stream, state);
        Ok(Some(Event::Opened { stream, request }))
    }

    fn late_or_unknown(&self, stream: StreamId) -> Result<Option<Event>, ProtocolError> {
        if self.was_used(stream) {
            Ok(None)
        } else {
            Err(ProtocolError::UnknownStream(stream))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open::{RefuseReason, TargetProtocol};

    fn req() -> OpenRequest {
        OpenRequest {
            protocol: TargetProtocol::Tcp,
            target: "127.0.0.1:80".into(),
            resource: "web".into(),
            client: String::new(),
        }
    }

    fn cfg() -> SessionConfig {
        SessionConfig {
            opening_window: 100,
            initial_window: 1000,
            max_window: 8000,
            ..SessionConfig::default()
        }
    }

    /// An edge and an agent session wired back to back.
    struct Pair {
        edge: Session,
        agent: Session,
        now: Instant,
    }

    impl Pair {
        fn new() -> Self {
            let now = Instant::now();
            Pair {
                edge: Session::new(Role::Edge, cfg(), now),
                agent: Session::new(Role::Agent, cfg(), now),
                now,
            }
        }

        /// Opens a stream from the edge and has the agent accept it.
        fn open(&mut self) -> StreamId {
            let (id, frame) = self.edge.open(req()).unwrap();
            let ev = self.agent.handle(frame, self.now).unwrap();
            assert!(matches!(ev, Some(Event::Opened { stream, .. }) if stream == id));
            let reply = self.agent.reply(id, OpenReply::Connected);
            let ev = self.edge.handle(reply, self.now).unwrap();
            assert!(matches!(ev, Some(Event::Replied { .. })));
            // Both establishment grants arrive: each side now has the whole
            // initial window.
            assert_eq!(self.flush_agent(), vec![Event::Credit { stream: id }]);
            assert_eq!(self.flush_edge(), vec![Event::Credit { stream: id }]);
            id
        }

        /// Delivers every queued frame from the edge to the agent.
        fn flush_edge(&mut self) -> Vec<Event> {
            let mut events = Vec::new();
            while let Some(f) = self.edge.poll_transmit() {
                if let Some(e) = self.agent.handle(f, self.now).unwrap() {
                    events.push(e);
                }
            }
            events
        }

        fn data(len: usize, stream: StreamId) -> Frame {
            Frame::Data {
                stream,
                payload: vec![0; len].into(),
            }
        }

        /// Delivers every queued frame from the agent to the edge.
        fn flush_agent(&mut self) -> Vec<Event> {
            let mut events = Vec::new();
            while let Some(f) = self.agent.poll_transmit() {
                if let Some(e) = self.edge.handle(f, self.now).unwrap() {
                    events.push(e);
                }
            }
            events
        }
    }

    #[test]
    fn sending_past_the_window_is_a_protocol_error() {
        let mut p = Pair::new();
        let id = p.open();
        assert_eq!(p.edge.take_credit(id, 5000), 1000);
        assert_eq!(p.edge.take_credit(id, 5000), 0);
        p.agent.handle(Pair::data(1000, id), p.now).unwrap();
        assert_eq!(
            p.agent.handle(Pair::data(1, id), p.now),
            Err(ProtocolError::FlowControl(id))
        );
    }

    #[test]
    fn consuming_half_the_window_grants_credit() {
        let mut p = Pair::new();
        let id = p.open();
        p.edge.take_credit(id, 1000);
        p.agent.handle(Pair::data(1000, id), p.now).unwrap();
        p.agent.consumed(id, 499, p.now);
        assert!(p.flush_agent().is_empty());
        p.agent.consumed(id, 1, p.now);
        assert_eq!(p.flush_agent(), vec![Event::Credit { stream: id }]);
        assert_eq!(p.edge.take_credit(id, 5000), 500);
    }

    #[test]
    fn window_doubles_when_used_up_quickly_and_stops_at_the_maximum() {
        let mut p = Pair::new();
        let id = p.open();
        let mut window = 1000;
        for _ in 0..10 {
            let credit = p.edge.take_credit(id, usize::MAX);
            p.agent.handle(Pair::data(credit, id), p.now).unwrap();
            p.agent.consumed(id, credit, p.now);
            p.flush_agent();
            window = p.agent.streams[&id].recv_window;
        }
        assert_eq!(window, 8000);
    }

    #[test]
    fn window_stays_when_the_consumer_is_slow() {
        let mut p = Pair::new();
        let id = p.open();
        for _ in 0..5 {
            let credit = p.edge.take_credit(id, usize::MAX);
            p.agent.handle(Pair::data(credit, id), p.now).unwrap();
            p.now += Duration::from_secs(1);
            p.agent.consumed(id, credit, p.now);
            p.flush_agent();
        }
        assert_eq!(p.agent.streams[&id].recv_window, 1000);
    }

    #[test]
    fn refusal_closes_the_stream_on_both_sides() {
        let mut p = Pair::new();
        let (id, frame) = p.edge.open(req()).unwrap();
        p.agent.handle(frame, p.now).unwrap();
        let reply = p.agent.reply(
            id,
            OpenReply::Refused {
                reason: RefuseReason::NotAllowed,
                message: "no".into(),
            },
        );
        assert!(!p.agent.is_open(id));
        p.edge.handle(reply, p.now).unwrap();
        assert!(!p.edge.is_open(id));
        // A late frame for it is ignored, not an error.
        assert_eq!(p.edge.handle(Frame::Fin { stream: id }, p.now), Ok(None));
    }

    #[test]
    fn data_before_reply_and_double_reply_are_errors() {
        let mut p = Pair::new();
        let (id, _) = p.edge.open(req()).unwrap();
        assert_eq!(
            p.edge.handle(Pair::data(1, id), p.now),
            Err(ProtocolError::BadReply(id))
        );
        let mut p = Pair::new();
        let id = p.open();
        let again = Frame::Reply {
            stream: id,
            reply: OpenReply::Connected,
        };
        assert_eq!(
            p.edge.handle(again, p.now),
            Err(ProtocolError::BadReply(id))
        );
    }

    #[test]
    fn frames_for_never_opened_streams_are_errors() {
        let mut p = Pair::new();
        assert_eq!(
            p.agent.handle(Pair::data(1, 41), p.now),
            Err(ProtocolError::UnknownStream(41))
        );
        assert_eq!(
            p.edge.handle(
                Frame::Window {
                    stream: 9,
                    increment: 1
                },
                p.now
            ),
            Err(ProtocolError::UnknownStream(9))
        );
    }

    #[test]
    fn agent_may_not_open_and_ids_must_increase() {
        let mut p = Pair::new();
        let open = |stream| Frame::Open {
            stream,
            request: req(),
        };
        assert_eq!(
            p.edge.handle(open(2), p.now),
            Err(ProtocolError::OpenNotAllowed)
        );
        p.agent.handle(open(5), p.now).unwrap();
        assert!(matches!(
            p.agent.handle(open(3), p.now),
            Err(ProtocolError::BadStreamId { got: 3, last: 5 })
        ));
        assert!(matches!(
            p.agent.handle(open(8), p.now),
            Err(ProtocolError::BadStreamId { got: 8, .. })
        ));
    }

    #[test]
    fn half_close_keeps_the_other_direction_open() {
        let mut p = Pair::new();
        let id = p.open();
        let fin = p.edge.finish(id).unwrap();
        assert_eq!(
            p.agent.handle(fin, p.now).unwrap(),
            Some(Event::Fin { stream: id })
        );
        // The agent can still send.
        assert!(p.agent.take_credit(id, 10) > 0);
        p.edge.handle(Pair::data(10, id), p.now).unwrap();
        let fin = p.agent.finish(id).unwrap();
        assert!(!p.agent.is_open(id));
        p.edge.handle(fin, p.now).unwrap();
        assert!(!p.edge.is_open(id));
        assert_eq!(p.agent.stream_count() + p.edge.stream_count(), 0);
    }

    #[test]
    fn window_overflow_is_an_error() {
        let mut p = Pair::new();
        let id = p.open();
        let w = Frame::Window {
            stream: id,
            increment: u32::MAX,
        };
        assert_eq!(
            p.edge.handle(w, p.now),
            Err(ProtocolError::WindowOverflow(id))
        );
    }

    #[test]
    fn silence_kills_the_link_and_pings_keep_it_alive() {
        let mut p = Pair::new();
        let start = p.now;
        let mut t = start;
        for _ in 0..30 {
            t += Duration::from_secs(1);
            p.edge.tick(t).unwrap();
            while let Some(f) = p.edge.poll_transmit() {
                p.agent.handle(f, t).unwrap();
            }
            while let Some(f) = p.agent.poll_transmit() {
                p.edge.handle(f, t).unwrap();
            }
        }
        assert!(p.edge.rtt().is_some());
        assert!(p.agent.tick(t).is_ok());
        let later = t + Duration::from_secs(12);
        assert!(matches!(p.agent.tick(later), Err(ProtocolError::Dead(_))));
    }

    #[test]
    fn too_many_streams_are_reset_not_fatal() {
        let now = Instant::now();
        let mut agent = Session::new(
            Role::Agent,
            SessionConfig {
                max_streams: 1,
                ..cfg()
            },
            now,
        );
        agent
            .handle(
                Frame::Open {
                    stream: 1,
                    request: req(),
                },
                now,
            )
            .unwrap();
        assert_eq!(
            agent.handle(
                Frame::Open {
                    stream: 3,
                    request: req()
                },
                now
            ),
            Ok(None)
        );
        assert_eq!(
            agent.poll_transmit(),
            Some(Frame::Reset {
                stream: 3,
                code: ResetCode::Refused
            })
        );
    }

    #[test]
    fn streams_are_counted_and_open_until_closed() {
        let mut p = Pair::new();
        assert_eq!(p.edge.stream_count(), 0);
        let a = p.open();
        let b = p.open();
        assert_eq!((a, b), (1, 3), "the edge opens odd ids, in order");
        assert_eq!((p.edge.stream_count(), p.agent.stream_count()), (2, 2));
        assert!(p.edge.is_open(a) && p.agent.is_open(a));
        assert!(!p.edge.is_open(5));
        let reset = p.edge.reset(a, ResetCode::Cancel).unwrap();
        assert_eq!(
            reset,
            Frame::Reset {
                stream: a,
                code: ResetCode::Cancel
            }
        );
        assert_eq!(p.edge.reset(a, ResetCode::Cancel), None, "already gone");
        assert_eq!(
            p.agent.handle(reset, p.now),
            Ok(Some(Event::Reset {
                stream: a,
                code: ResetCode::Cancel
            }))
        );
        assert_eq!((p.edge.stream_count(), p.agent.stream_count()), (1, 1));
        assert!(!p.agent.is_open(a) && p.agent.is_open(b));
    }

    #[test]
    fn a_finished_stream_has_no_credit_and_finishes_once() {
        let mut p = Pair::new();
        let id = p.open();
        assert_eq!(p.edge.finish(id), Some(Frame::Fin { stream: id }));
        assert_eq!(p.edge.finish(id), None);
        assert_eq!(p.edge.take_credit(id, 10), 0);
        assert!(p.edge.is_open(id), "the peer may still send");
    }

    #[test]
    fn rtt_is_the_time_from_ping_to_its_pong_and_stale_pongs_are_ignored() {
        let mut p = Pair::new();
        let t0 = p.now;
        p.edge.tick(t0).unwrap();
        let ping = p.edge.poll_transmit().unwrap();
        assert_eq!(ping, Frame::Ping { opaque: 1 });
        assert_eq!(p.agent.handle(ping, t0), Ok(None));
        let pong = p.agent.poll_transmit().unwrap();
        assert_eq!(pong, Frame::Pong { opaque: 1 });
        let stale = Frame::Pong { opaque: 7 };
        assert_eq!(
            p.edge.handle(stale, t0 + Duration::from_millis(10)),
            Ok(None)
        );
        assert_eq!(p.edge.rtt(), None);
        p.edge.handle(pong, t0 + Duration::from_millis(50)).unwrap();
        assert_eq!(p.edge.rtt(), Some(Duration::from_millis(50)));
    }

    #[test]
    fn pings_are_numbered_and_sent_every_keepalive_interval() {
        let mut p = Pair::new();
        let start = p.now;
        let mut pings = Vec::new();
        for s in 0..=9 {
            let t = start + Duration::from_secs(s);
            // The agent keeps the link alive, so only pings are queued.
            p.edge.handle(Frame::Pong { opaque: 0 }, t).unwrap();
            p.edge.tick(t).unwrap();
            while let Some(f) = p.edge.poll_transmit() {
                pings.push((s, f));
            }
        }
        let expected: Vec<_> = [(0, 1), (4, 2), (8, 3)]
            .into_iter()
            .map(|(s, opaque)| (s, Frame::Ping { opaque }))
            .collect();
        assert_eq!(pings, expected);
    }

    #[test]
    fn the_link_dies_exactly_at_dead_after() {
        let now = Instant::now();
        let mut s = Session::new(Role::Agent, cfg(), now);
        let dead_after = cfg().dead_after;
        assert!(s.tick(now + dead_after - Duration::from_millis(1)).is_ok());
        assert_eq!(
            s.tick(now + dead_after),
            Err(ProtocolError::Dead(dead_after))
        );
    }

    /// Fills the window of `id` (edge to agent) and has the agent consume it
    /// all at `at`; returns the increment it grants (one `Window` frame).
    fn use_whole_window(p: &mut Pair, id: StreamId, at: Instant) -> u32 {
        let credit = p.edge.take_credit(id, usize::MAX);
        assert!(credit > 0);
        p.agent.handle(Pair::data(credit, id), at).unwrap();
        p.agent.consumed(id, credit, at);
        let Some(Frame::Window { stream, increment }) = p.agent.poll_transmit() else {
            panic!("no window update")
        };
        assert_eq!(stream, id);
        assert_eq!(p.agent.poll_transmit(), None);
        assert_eq!(
            p.edge.handle(Frame::Window { stream, increment }, at),
            Ok(Some(Event::Credit { stream: id }))
        );
        increment
    }

    #[test]
    fn a_grown_window_is_granted_whole_and_no_byte_more() {
        let mut p = Pair::new();
        let id = p.open();
        let t = p.now;
        // First grant: no earlier grant to compare with, the window stays.
        assert_eq!(use_whole_window(&mut p, id, t), 1000);
        // Used up again at once: doubled, the consumed bytes plus the growth.
        assert_eq!(use_whole_window(&mut p, id, t), 2000);
        assert_eq!(use_whole_window(&mut p, id, t), 4000);
        assert_eq!(use_whole_window(&mut p, id, t), 8000);
        // At the maximum it stays.
        assert_eq!(use_whole_window(&mut p, id, t), 8000);
        assert_eq!(p.edge.take_credit(id, usize::MAX), 8000);
        p.agent.handle(Pair::data(8000, id), t).unwrap();
        assert_eq!(
            p.agent.handle(Pair::data(1, id), t),
            Err(ProtocolError::FlowControl(id))
        );
    }

    #[test]
    fn quick_means_within_100ms_or_two_round_trips() {
        // Without an RTT: a grant 100 ms after the last is not quick.
        let mut p = Pair::new();
        let id = p.open();
        let t = p.now;
        use_whole_window(&mut p, id, t);
        assert_eq!(
            use_whole_window(&mut p, id, t + Duration::from_millis(99)),
            2000
        );
        assert_eq!(
            use_whole_window(&mut p, id, t + Duration::from_millis(199)),
            2000
        );
        // With a 1 s RTT, 1.5 s is within two round trips, 2 s is not.
        let mut p = Pair::new();
        let id = p.open();
        let t = p.now;
        p.agent.tick(t).unwrap();
        let ping = p.agent.poll_transmit().unwrap();
        p.edge.handle(ping, t).unwrap();
        let pong = p.edge.poll_transmit().unwrap();
        let t = t + Duration::from_secs(1);
        p.agent.handle(pong, t).unwrap();
        assert_eq!(p.agent.rtt(), Some(Duration::from_secs(1)));
        use_whole_window(&mut p, id, t);
        let t = t + Duration::from_millis(1500);
        assert_eq!(use_whole_window(&mut p, id, t), 2000);
        let t = t + Duration::from_secs(2);
        assert_eq!(use_whole_window(&mut p, id, t), 2000);
    }

    #[test]
    fn credit_may_reach_two_to_the_31_and_no_further() {
        let mut p = Pair::new();
        let id = p.open();
        let to_limit = (1u32 << 31) - cfg().initial_window;
        let w = |increment| Frame::Window {
            stream: id,
            increment,
        };
        assert_eq!(
            p.edge.handle(w(to_limit), p.now),
            Ok(Some(Event::Credit { stream: id }))
        );
        assert_eq!(
            p.edge.handle(w(1), p.now),
            Err(ProtocolError::WindowOverflow(id))
        );
    }

    #[test]
    fn late_frames_for_closed_streams_are_ignored_on_both_sides_and_unknown_ids_are_not() {
        let mut p = Pair::new();
        let id = p.open();
        let reset = p.agent.reset(id, ResetCode::Cancel).unwrap();
        // The edge's data crossed the reset on the wire.
        assert_eq!(p.agent.handle(Pair::data(1, id), p.now), Ok(None));
        assert_eq!(p.agent.handle(Frame::Fin { stream: id }, p.now), Ok(None));
        p.edge.handle(reset, p.now).unwrap();
        assert_eq!(p.edge.handle(Frame::Fin { stream: id }, p.now), Ok(None));
        // The next ids were never opened, on either side.
        let next = id + 2;
        assert_eq!(
            p.agent.handle(Pair::data(1, next), p.now),
            Err(ProtocolError::UnknownStream(next))
        );
        assert_eq!(
            p.edge.handle(Frame::Fin { stream: next }, p.now),
            Err(ProtocolError::UnknownStream(next))
        );
    }

    #[test]
    fn a_stream_id_cannot_be_opened_twice() {
        let mut p = Pair::new();
        let open = Frame::Open {
            stream: 1,
            request: req(),
        };
        p.agent.handle(open.clone(), p.now).unwrap();
        assert_eq!(
            p.agent.handle(open, p.now),
            Err(ProtocolError::BadStreamId { got: 1, last: 1 })
        );
    }

    #[test]
    fn before_its_open_is_answered_a_stream_carries_only_the_opening_window() {
        let mut p = Pair::new();
        let (id, frame) = p.edge.open(req()).unwrap();
        p.agent.handle(frame, p.now).unwrap();
        // The opener may send the opening window and no more.
        assert_eq!(p.edge.take_credit(id, 5000), 100);
        assert_eq!(p.edge.take_credit(id, 5000), 0);
        p.agent.handle(Pair::data(100, id), p.now).unwrap();
        assert_eq!(
            p.agent.handle(Pair::data(1, id), p.now),
            Err(ProtocolError::FlowControl(id))
        );
        // Consuming before the answer grants nothing: the rest of the window
        // waits for `Connected`.
        let mut p = Pair::new();
        let (id, frame) = p.edge.open(req()).unwrap();
        p.agent.handle(frame, p.now).unwrap();
        assert_eq!(p.edge.take_credit(id, 5000), 100);
        p.agent.handle(Pair::data(100, id), p.now).unwrap();
        p.agent.consumed(id, 100, p.now);
        assert!(p.flush_agent().is_empty());
        assert_eq!(p.agent.link_held(), 0);
        // The answer grants the rest of the initial window (900), and the 100
        // consumed meanwhile.
        let reply = p.agent.reply(id, OpenReply::Connected);
        p.edge.handle(reply, p.now).unwrap();
        assert_eq!(p.flush_agent(), vec![Event::Credit { stream: id }]);
        assert_eq!(p.edge.take_credit(id, 5000), 1000);
    }

    #[test]
    fn a_refused_stream_gives_back_what_it_held() {
        let mut p = Pair::new();
        let (id, frame) = p.edge.open(req()).unwrap();
        p.agent.handle(frame, p.now).unwrap();
        p.agent.handle(Pair::data(60, id), p.now).unwrap();
        assert_eq!(p.agent.link_held(), 100);
        p.agent.reply(
            id,
            OpenReply::Refused {
                reason: RefuseReason::NotAllowed,
                message: String::new(),
            },
        );
        assert_eq!(p.agent.link_held(), 0);
        // The edge's own hold on its receive direction goes too.
        assert_eq!(p.edge.link_held(), 100);
        p.edge.reset(id, ResetCode::Refused);
        assert_eq!(p.edge.link_held(), 0);
    }

    fn budget_pair(budget: u64) -> Pair {
        let now = Instant::now();
        let config = SessionConfig {
            link_budget: budget,
            ..cfg()
        };
        Pair {
            edge: Session::new(Role::Edge, config.clone(), now),
            agent: Session::new(Role::Agent, config, now),
            now,
        }
    }

    /// Opens a stream and delivers every grant either side makes.
    fn open_granted(p: &mut Pair) -> StreamId {
        let (id, frame) = p.edge.open(req()).unwrap();
        p.agent.handle(frame, p.now).unwrap();
        let reply = p.agent.reply(id, OpenReply::Connected);
        p.edge.handle(reply, p.now).unwrap();
        p.flush_agent();
        p.flush_edge();
        id
    }

    #[test]
    fn the_link_budget_bounds_what_a_peer_can_make_us_hold_whatever_it_opens() {
        // Budget 2,500 bytes, opening 100, initial 1,000: the first streams
        // get whole windows, later ones only their opening window.
        let mut p = budget_pair(2500);
        let ids: Vec<StreamId> = (0..10).map(|_| open_granted(&mut p)).collect();
        let mut sent = 0;
        for &id in &ids {
            let credit = p.edge.take_credit(id, usize::MAX);
            assert!(credit >= 100, "every stream may send its opening window");
            p.agent.handle(Pair::data(credit, id), p.now).unwrap();
            sent += credit;
        }
        // Nobody consumes: the agent holds everything the edge could send.
        assert_eq!(p.agent.link_held(), sent as u64);
        assert!(sent <= 2500 + 10 * 100, "held {sent}");
        assert!(sent >= 2500, "the budget is used: {sent}");
        for &id in &ids {
            assert_eq!(p.edge.take_credit(id, usize::MAX), 0);
        }
    }

    #[test]
    fn a_starved_stream_is_granted_when_another_consumes_and_never_loses_its_opening_window() {
        let mut p = budget_pair(1500);
        let a = open_granted(&mut p);
        let b = open_granted(&mut p);
        // a: 1,000 granted; b: its 100 and 400 of the rest (1,500 budget).
        assert_eq!(p.edge.take_credit(a, usize::MAX), 1000);
        assert_eq!(p.edge.take_credit(b, usize::MAX), 500);
        p.agent.handle(Pair::data(1000, a), p.now).unwrap();
        p.agent.handle(Pair::data(500, b), p.now).unwrap();
        // b's consumer reads: b may hold its opening window again at once
        // even though a pins the rest of the budget.
        p.agent.consumed(b, 500, p.now);
        assert_eq!(p.flush_agent(), vec![Event::Credit { stream: b }]);
        assert!(p.edge.take_credit(b, usize::MAX) >= 100);
        // a's consumer reads: the budget frees, and b, starved, is fed.
        p.agent.consumed(a, 1000, p.now);
        let events = p.flush_agent();
        assert!(events.contains(&Event::Credit { stream: b }), "{events:?}");
        assert!(p.agent.link_held() <= 1500 + 2 * 100);
    }

    #[test]
    fn with_the_budget_spent_a_reading_stream_still_gets_its_opening_window_back() {
        let mut p = budget_pair(1000);
        let a = open_granted(&mut p);
        let b = open_granted(&mut p);
        // a holds the whole budget and nobody reads it.
        assert_eq!(p.edge.take_credit(a, usize::MAX), 1000);
        p.agent.handle(Pair::data(1000, a), p.now).unwrap();
        // b has only its opening window, again and again, as it is read.
        for _ in 0..5 {
            assert_eq!(p.edge.take_credit(b, usize::MAX), 100);
            p.agent.handle(Pair::data(100, b), p.now).unwrap();
            p.agent.consumed(b, 100, p.now);
            assert_eq!(p.flush_agent(), vec![Event::Credit { stream: b }]);
        }
        assert_eq!(p.agent.link_held(), 1000 + 100);
    }

    #[test]
    fn a_stream_the_peer_finished_is_never_granted_more() {
        let mut p = budget_pair(1000);
        let a = open_granted(&mut p);
        let b = open_granted(&mut p);
        // a holds the whole budget, unread; b waits for the rest of its window.
        let credit = p.edge.take_credit(a, usize::MAX);
        p.agent.handle(Pair::data(credit, a), p.now).unwrap();
        // The edge finishes b: it will send nothing more there.
        p.agent.handle(Frame::Fin { stream: b }, p.now).unwrap();
        // a is read: the budget frees, and only a is granted.
        p.agent.consumed(a, credit, p.now);
        assert_eq!(p.flush_agent(), vec![Event::Credit { stream: a }]);
        assert_eq!(p.agent.link_held(), 1000);
    }

    #[test]
    fn windows_grow_only_while_the_link_has_room_for_it() {
        let mut p = budget_pair(2500);
        let a = open_granted(&mut p);
        let b = open_granted(&mut p);
        // b's 1,000 bytes sit unread.
        let credit = p.edge.take_credit(b, usize::MAX);
        p.agent.handle(Pair::data(credit, b), p.now).unwrap();
        // a is read at once, twice: quick enough to grow, but the link has
        // 1,500 bytes of room and growing needs twice the 2,000 it would hold.
        for _ in 0..2 {
            let credit = p.edge.take_credit(a, usize::MAX);
            p.agent.handle(Pair::data(credit, a), p.now).unwrap();
            p.agent.consumed(a, credit, p.now);
            p.flush_agent();
        }
        assert_eq!(p.agent.streams[&a].recv_window, 1000);
    }

    #[test]
    fn windows_do_grow_when_the_link_has_room_twice_over() {
        // 10,000 bytes of budget: growing 1,000 -> 2,000 holds 2,000, and
        // the link has 9,000 free, more than twice that.
        let mut p = budget_pair(10_000);
        let a = open_granted(&mut p);
        for _ in 0..2 {
            let credit = p.edge.take_credit(a, usize::MAX);
            p.agent.handle(Pair::data(credit, a), p.now).unwrap();
            p.agent.consumed(a, credit, p.now);
            p.flush_agent();
        }
        assert_eq!(p.agent.streams[&a].recv_window, 2000);
    }

    #[test]
    fn closing_streams_returns_their_budget() {
        let mut p = budget_pair(1500);
        let a = open_granted(&mut p);
        let credit = p.edge.take_credit(a, usize::MAX);
        p.agent.handle(Pair::data(credit, a), p.now).unwrap();
        assert_eq!(p.agent.link_held(), 1000);
        // The edge resets; the agent's unread bytes no longer count.
        let reset = p.edge.reset(a, ResetCode::Cancel).unwrap();
        p.agent.handle(reset, p.now).unwrap();
        assert_eq!(p.agent.link_held(), 0);
        // A Fin returns the credit the peer will never use.
        let b = open_granted(&mut p);
        p.agent.handle(Frame::Fin { stream: b }, p.now).unwrap();
        assert_eq!(p.agent.link_held(), 0);
    }
}
