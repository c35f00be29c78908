//! The driver that runs a [`warren_proto::Session`] over one TCP+TLS stream.
//!
//! Three parts share one [`MuxShared`]:
//! * a reader task decodes frames, feeds the session and routes stream bytes
//!   into per-stream queues (waking the stream's reader);
//! * stream handles and the reader append encoded frames to one outgoing
//!   [`OutQueue`]: stream data, `Open`, `Reply`, `Fin` and resets to its
//!   ordered *data* buffer (so a `Fin` never overtakes its data; writers wait
//!   when it passes [`HIGH_WATER`]), window updates and pongs to its *control*
//!   buffer, written first so a full data buffer never delays credit;
//! * a writer task swaps both buffers out and writes them in large batches.
//!   Buffers are reused, so the data path allocates nothing per frame (a
//!   per-frame allocation freed on another thread made glibc re-fault pages
//!   at line rate: see bench/RESULTS.md);
//! * [`MuxStream`] handles, which implement `AsyncRead`/`AsyncWrite`.
//!
//! Memory a peer can make a link hold: the session bounds the payload bytes
//! (its link budget, see [`warren_proto::session`]). A payload is a slice of
//! the read buffer it arrived in, so an unread one keeps that whole buffer
//! (up to [`READ_CHUNK`] and a frame) alive: at most [`MAX_PINNED`] payloads
//! on a link may do so at once, the others are copied out when queued.
//!
//! Invariant: the session mutex is never held across an `.await`.

use crate::{LinkError, OpenError};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use warren_proto::frame::{GoAwayReason, ResetCode, MAX_DATA_PAYLOAD};
use warren_proto::{Event, Frame, OpenReply, OpenRequest, Role, Session, SessionConfig, StreamId};

/// Stream writers wait while this much data is queued for the socket.
pub const HIGH_WATER: usize = 512 * 1024;
/// Queued control bytes beyond which the peer is deemed not to be reading.
const CONTROL_LIMIT: usize = 4 << 20;
const READ_CHUNK: usize = 256 * 1024;
/// Unread payloads of a link that may keep their read buffer alive.
const MAX_PINNED: usize = 32;

/// Counts an unread payload that shares its read buffer: dropped when the
/// payload is read to its end or thrown away.
struct BufferPin(Arc<AtomicUsize>);

impl Drop for BufferPin {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Received bytes waiting for the stream's reader.
struct Chunk {
    bytes: Bytes,
    pin: Option<BufferPin>,
}

#[derive(Default)]
struct Slot {
    recv: VecDeque<Chunk>,
    recv_fin: bool,
    reset: Option<ResetCode>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Slot {
    fn wake_all(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

struct MuxState {
    session: Session,
    slots: HashMap<StreamId, Slot>,
    pending_opens: HashMap<StreamId, oneshot::Sender<OpenReply>>,
    incoming: Option<mpsc::UnboundedSender<(StreamId, OpenRequest)>>,
    closed: Option<LinkError>,
}

/// Encoded frames waiting for the writer task.
#[derive(Default)]
pub(crate) struct OutQueue {
    control: BytesMut,
    data: BytesMut,
    data_waiters: Vec<Waker>,
    writer: Option<Waker>,
    closed: bool,
}

impl OutQueue {
    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

pub(crate) struct MuxShared {
    state: Mutex<MuxState>,
    out: Mutex<OutQueue>,
    cancel: CancellationToken,
    go_away: watch::Sender<Option<GoAwayReason>>,
    /// Unread payloads that share a read buffer (see [`MAX_PINNED`]).
    pinned: Arc<AtomicUsize>,
}

impl MuxShared {
    /// A received payload as it will wait for its reader: sharing the read
    /// buffer while few do, else copied out so the buffer can go.
    fn keep(&self, payload: Bytes) -> Chunk {
        if self.pinned.fetch_add(1, Ordering::Relaxed) < MAX_PINNED {
            return Chunk {
                bytes: payload,
                pin: Some(BufferPin(self.pinned.clone())),
            };
        }
        self.pinned.fetch_sub(1, Ordering::Relaxed);
        Chunk {
            bytes: Bytes::copy_from_slice(&payload),
            pin: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, MuxState> {
        // A panic while holding the lock is a bug; keep serving the other streams.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn out(&self) -> MutexGuard<'_, OutQueue> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame in order with stream data.
    fn push_data(&self, frame: &Frame) {
        let mut q = self.out();
        frame.encode(&mut q.data);
        q.wake_writer();
    }

    /// Queues a data frame for `stream`, copying `payload` once.
    fn push_payload(&self, stream: StreamId, payload: &[u8]) {
        let mut q = self.out();
        Frame::encode_data_header(stream, payload.len(), &mut q.data);
        q.data.extend_from_slice(payload);
        q.wake_writer();
    }

    /// Ready when the data buffer has room (or the link is closed: `Err`).
    fn poll_data_room(&self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        let mut q = self.out();
        if q.closed {
            return Poll::Ready(Err(()));
        }
        if q.data.len() < HIGH_WATER {
            return Poll::Ready(Ok(()));
        }
        q.data_waiters.push(cx.waker().clone());
        Poll::Pending
    }

    async fn data_room(&self) -> Result<(), ()> {
        std::future::poll_fn(|cx| self.poll_data_room(cx)).await
    }

    /// Moves the session's queued frames to the control buffer. A peer that
    /// stops reading while it keeps sending pings fills it: the link is
    /// closed rather than buffering without bound.
    fn flush_outbox(&self, state: &mut MuxState) {
        // Most calls (every stream read) have nothing to send: do not touch
        // the queue or wake the writer then.
        let Some(first) = state.session.poll_transmit() else {
            return;
        };
        let mut overflow = false;
        {
            let mut q = self.out();
            let mut next = Some(first);
            while let Some(frame) = next {
                if q.control.len() > CONTROL_LIMIT {
                    overflow = true;
                    break;
                }
                frame.encode(&mut q.control);
                next = state.session.poll_transmit();
            }
            q.wake_writer();
        }
        if overflow {
            self.close_locked(
                state,
                LinkError::Protocol("control queue full: peer is not reading".into()),
            );
        }
    }

    fn close_locked(&self, state: &mut MuxState, err: LinkError) {
        if state.closed.is_some() {
            return;
        }
        state.closed = Some(err);
        for slot in state.slots.values_mut() {
            slot.wake_all();
        }
        state.pending_opens.clear();
        state.incoming = None;
        {
            let mut q = self.out();
            q.closed = true;
            q.wake_writer();
            for w in q.data_waiters.drain(..) {
                w.wake();
            }
        }
        self.cancel.cancel();
    }

    pub(crate) fn close(&self, err: LinkError) {
        let mut state = self.lock();
        self.close_locked(&mut state, err);
    }
}

/// A multiplexed link over one byte stream (TCP+TLS).
#[derive(Clone)]
pub struct MuxLink {
    shared: Arc<MuxShared>,
    incoming: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(StreamId, OpenRequest)>>>,
}

impl MuxLink {
    /// Starts the driver tasks over `io`, whose handshake is done.
    pub fn start<T>(io: T, role: Role, config: SessionConfig) -> MuxLink
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(MuxShared {
            state: Mutex::new(MuxState {
                session: Session::new(role, config, Instant::now()),
                slots: HashMap::new(),
                pending_opens: HashMap::new(),
                incoming: Some(incoming_tx),
                closed: None,
            }),
            out: Mutex::new(OutQueue::default()),
            cancel: CancellationToken::new(),
            go_away: watch::channel(None).0,
            pinned: Arc::new(AtomicUsize::new(0)),
        });
        let (rd, wr) = tokio::io::split(io);
        tokio::spawn(read_loop(rd, shared.clone()));
        tokio::spawn(write_loop(wr, shared.clone()));
        MuxLink {
            shared,
            incoming: Arc::new(tokio::sync::Mutex::new(incoming_rx)),
        }
    }

    /// Opens a stream and waits for the agent's reply.
    pub async fn open(&self, request: OpenRequest) -> Result<MuxStream, OpenError> {
        // Ids must reach the wire in increasing order: allocate the id and
        // enqueue its frame under the session lock.
        self.shared
            .data_room()
            .await
            .map_err(|_| OpenError::Link(self.close_reason()))?;
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut state = self.shared.lock();
            if let Some(err) = &state.closed {
                return Err(OpenError::Link(err.clone()));
            }
            let (id, frame) = state
                .session
                .open(request)
                .map_err(|e| OpenError::Link(LinkError::Protocol(e.to_string())))?;
            state.slots.insert(id, Slot::default());
            state.pending_opens.insert(id, tx);
            self.shared.push_data(&frame);
            id
        };
        // From here on, dropping `stream` resets the stream.
        let stream = MuxStream::new(id, self.shared.clone());
        match rx.await {
            Ok(OpenReply::Connected) => Ok(stream),
            Ok(OpenReply::Refused { reason, message }) => {
                Err(OpenError::Refused { reason, message })
            }
            Err(_) => Err(OpenError::Link(self.close_reason())),
        }
    }

    /// Waits for the next stream the peer opens; `None` once the link is closed.
    pub async fn accept(&self) -> Option<(StreamId, OpenRequest)> {
        self.incoming.lock().await.recv().await
    }

    /// Answers a stream the peer opened. `Connected` returns the stream.
    pub async fn reply(
        &self,
        id: StreamId,
        reply: OpenReply,
    ) -> Result<Option<MuxStream>, LinkError> {
        let connected = matches!(reply, OpenReply::Connected);
        self.shared
            .data_room()
            .await
            .map_err(|_| self.close_reason())?;
        {
            let mut state = self.shared.lock();
            if !connected {
                state.slots.remove(&id);
            }
            let frame = state.session.reply(id, reply);
            self.shared.push_data(&frame);
            // `Connected` grants the rest of the stream's window.
            self.shared.flush_outbox(&mut state);
        }
        Ok(connected.then(|| MuxStream::new(id, self.shared.clone())))
    }

    /// Abandons a stream the peer opened without answering it.
    pub fn reset(&self, id: StreamId) {
        let mut state = self.shared.lock();
        state.slots.remove(&id);
        if let Some(f) = state.session.reset(id, ResetCode::Cancel) {
            self.shared.push_data(&f);
        }
    }

    /// Tells the peer no new streams will be opened; existing ones go on.
    pub async fn go_away(&self, reason: GoAwayReason) {
        if self.shared.data_room().await.is_ok() {
            self.shared.push_data(&Frame::GoAway { reason });
        }
    }

    /// Resolves when the peer says it is going away.
    pub fn go_away_watch(&self) -> watch::Receiver<Option<GoAwayReason>> {
        self.shared.go_away.subscribe()
    }

    /// Closes the link now; every stream fails.
    pub fn close(&self, reason: &str) {
        self.shared.close(LinkError::Closed(reason.to_owned()));
    }

    /// Resolves when the link has closed, with why.
    pub async fn closed(&self) -> LinkError {
        self.shared.cancel.cancelled().await;
        self.close_reason()
    }

    /// Whether the link has closed.
    pub fn is_closed(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// The latest round-trip time measured by keepalives.
    pub fn rtt(&self) -> Option<Duration> {
        self.shared.lock().session.rtt()
    }

    fn close_reason(&self) -> LinkError {
        self.shared
            .lock()
            .closed
            .clone()
            .unwrap_or_else(|| LinkError::Closed("link closed".into()))
    }
}

async fn read_loop<R: AsyncRead>(rd: R, shared: Arc<MuxShared>) {
    tokio::pin!(rd);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut frames = Vec::new();
    let err = loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = rd.read_buf(&mut buf) => match read {
                Ok(0) => break LinkError::Closed("peer closed the link".into()),
                Ok(_) => {
                    loop {
                        match Frame::decode(&mut buf) {
                            Ok(Some(f)) => frames.push(f),
                            Ok(None) => break,
                            Err(e) => {
                                frames.clear();
                                shared.close(LinkError::Protocol(e.to_string()));
                                return;
                            }
                        }
                    }
                    if let Err(e) = dispatch(&shared, &mut frames) {
                        break e;
                    }
                }
                Err(e) => break LinkError::Io(e.to_string()),
            },
            _ = tick.tick() => {
                let mut state = shared.lock();
                if let Err(e) = state.session.tick(Instant::now()) {
                    drop(state);
                    break LinkError::Dead(e.to_string());
                }
                shared.flush_outbox(&mut state);
            }
            _ = shared.cancel.cancelled() => return,
        }
    };
    shared.close(err);
}

fn dispatch(shared: &MuxShared, frames: &mut Vec<Frame>) -> Result<(), LinkError> {
    let now = Instant::now();
    let mut state = shared.lock();
    let state = &mut *state;
    for frame in frames.drain(..) {
        let event = match state.session.handle(frame, now) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => return Err(LinkError::Protocol(e.to_string())),
        };
        match event {
            Event::Opened { stream, request } => {
                state.slots.insert(stream, Slot::default());
                let delivered = state
                    .incoming
                    .as_ref()
                    .is_some_and(|tx| tx.send((stream, request)).is_ok());
                if !delivered {
                    state.slots.remove(&stream);
                    if let Some(f) = state.session.reset(stream, ResetCode::Refused) {
                        shared.push_data(&f);
                    }
                }
            }
            Event::Replied { stream, reply } => {
                if !matches!(reply, OpenReply::Connected) {
                    state.slots.remove(&stream);
                }
                if let Some(tx) = state.pending_opens.remove(&stream) {
                    let _ = tx.send(reply);
                }
            }
            Event::Data { stream, payload } => {
                if let Some(slot) = state.slots.get_mut(&stream) {
                    slot.recv.push_back(shared.keep(payload));
                    if let Some(w) = slot.read_waker.take() {
                        w.wake();
                    }
                } else {
                    // The handle is gone: nobody will read, so give the credit back.
                    state.session.consumed(stream, payload.len(), now);
                }
            }
            Event::Fin { stream } => {
                if let Some(slot) = state.slots.get_mut(&stream) {
                    slot.recv_fin = true;
                    if let Some(w) = slot.read_waker.take() {
                        w.wake();
                    }
                }
            }
            Event::Reset { stream, code } => {
                state.pending_opens.remove(&stream);
                if let Some(slot) = state.slots.get_mut(&stream) {
                    slot.reset = Some(code);
                    slot.wake_all();
                }
            }
            Event::Credit { stream } => {
                if let Some(w) = state
                    .slots
                    .get_mut(&stream)
                    .and_then(|s| s.write_waker.take())
                {
                    w.wake();
                }
            }
            Event::Control { .. } => {
                // Protocol version 1 defines no control messages; ignore unknown ones.
            }
            Event::GoAway { reason } => {
                shared.go_away.send_replace(Some(reason));
            }
        }
    }
    shared.flush_outbox(state);
    Ok(())
}

async fn write_loop<W: AsyncWrite>(wr: W, shared: Arc<MuxShared>) {
    tokio::pin!(wr);
    let mut control = BytesMut::new();
    let mut data = BytesMut::new();
    loop {
        let more = std::future::poll_fn(|cx| {
            let mut q = shared.out();
            if !q.control.is_empty() || !q.data.is_empty() {
                // The (empty, already allocated) local buffers go back in the queue.
                std::mem::swap(&mut q.control, &mut control);
                std::mem::swap(&mut q.data, &mut data);
                for w in q.data_waiters.drain(..) {
                    w.wake();
                }
                return Poll::Ready(true);
            }
            if q.closed {
                return Poll::Ready(false);
            }
            q.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if !more {
            break;
        }
        let write = async {
            wr.write_all(&control).await?;
            wr.write_all(&data).await?;
            let idle = {
                let q = shared.out();
                q.control.is_empty() && q.data.is_empty()
            };
            if idle {
                wr.flush().await?;
            }
            io::Result::Ok(())
        };
        // A closed link gets a second to flush its last frames (a GoAway)
        // to a peer that may have stopped reading.
        let give_up = async {
            shared.cancel.cancelled().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let result = tokio::select! {
            r = write => r,
            _ = give_up => Err(io::Error::new(io::ErrorKind::TimedOut, "peer not reading")),
        };
        if let Err(e) = result {
            shared.close(LinkError::Io(e.to_string()));
            return;
        }
        control.clear();
        data.clear();
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
}

/// One stream of a [`MuxLink`]. Dropping it before both directions have
/// finished resets the stream.
pub struct MuxStream {
    id: StreamId,
    shared: Arc<MuxShared>,
    current: Bytes,
    /// Held while `current` shares its read buffer.
    current_pin: Option<BufferPin>,
    /// Bytes read from `current` without the lock, not yet given back as credit.
    unreported: usize,
    fin_sent: bool,
}

impl MuxStream {
    fn new(id: StreamId, shared: Arc<MuxShared>) -> Self {
        MuxStream {
            id,
            shared,
            current: Bytes::new(),
            current_pin: None,
            unreported: 0,
            fin_sent: false,
        }
    }

    fn link_error(state: &MuxState) -> io::Error {
        let msg = state
            .closed
            .as_ref()
            .map_or_else(|| "link closed".to_owned(), |e| e.to_string());
        io::Error::new(io::ErrorKind::ConnectionAborted, msg)
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.current.is_empty() {
            // The rest of a chunk taken earlier: no lock; the credit is given
            // back at the next locked step, before this stream can park.
            let n = this.current.len().min(buf.remaining());
            buf.put_slice(&this.current[..n]);
            this.current.advance(n);
            this.unreported += n;
            if this.current.is_empty() {
                this.current = Bytes::new();
                this.current_pin = None;
            }
            return Poll::Ready(Ok(()));
        }
        // One lock per chunk: take it, and give back the credit for what is
        // read from it now (plus any rest read since the last lock).
        let mut guard = this.shared.lock();
        let state = &mut *guard;
        let chunk = state
            .slots
            .get_mut(&this.id)
            .and_then(|s| s.recv.pop_front());
        let take = chunk
            .as_ref()
            .map_or(0, |c| c.bytes.len().min(buf.remaining()));
        let credit = std::mem::take(&mut this.unreported) + take;
        if credit > 0 {
            state.session.consumed(this.id, credit, Instant::now());
            this.shared.flush_outbox(state);
        }
        if let Some(chunk) = chunk {
            drop(guard);
            this.current = chunk.bytes;
            buf.put_slice(&this.current[..take]);
            this.current.advance(take);
            if this.current.is_empty() {
                this.current = Bytes::new();
            } else {
                this.current_pin = chunk.pin;
            }
            return Poll::Ready(Ok(()));
        }
        let Some(slot) = state.slots.get_mut(&this.id) else {
            return Poll::Ready(Err(Self::link_error(state)));
        };
        if let Some(code) = slot.reset {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("stream reset by peer ({code:?})"),
            )))
        } else if slot.recv_fin {
            Poll::Ready(Ok(()))
        } else if state.closed.is_some() {
            Poll::Ready(Err(Self::link_error(state)))
        } else {
            slot.read_waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.fin_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stream already shut down",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if ready!(this.shared.poll_data_room(cx)).is_err() {
            return Poll::Ready(Err(Self::link_error(&this.shared.lock())));
        }
        let n = {
            let mut state = this.shared.lock();
            let state = &mut *state;
            if state.closed.is_some() {
                return Poll::Ready(Err(Self::link_error(state)));
            }
            let Some(slot) = state.slots.get_mut(&this.id) else {
                return Poll::Ready(Err(Self::link_error(state)));
            };
            if slot.reset.is_some() || !state.session.is_open(this.id) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "stream reset by peer",
                )));
            }
            let n = state
                .session
                .take_credit(this.id, buf.len().min(MAX_DATA_PAYLOAD));
            if n == 0 {
                slot.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            n
        };
        this.shared.push_payload(this.id, &buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The writer task flushes whenever its queues run empty.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.fin_sent {
            return Poll::Ready(Ok(()));
        }
        if ready!(this.shared.poll_data_room(cx)).is_err() {
            return Poll::Ready(Err(Self::link_error(&this.shared.lock())));
        }
        let mut state = this.shared.lock();
        if let Some(frame) = state.session.finish(this.id) {
            this.shared.push_data(&frame);
        }
        this.fin_sent = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.slots.remove(&self.id);
        state.pending_opens.remove(&self.id);
        if let Some(frame) = state.session.reset(self.id, ResetCode::Cancel) {
            // In the ordered buffer, so it does not overtake data already queued.
            self.shared.push_data(&frame);
        }
    }
}
