//! A hostile peer driving the mux state machine. The input is a script: each
//! step is either a frame from the peer (well-formed, on a small stream id,
//! so streams really open, carry data and close; or raw bytes decoded as a
//! frame) or a move of the local side (open, answer an open, take credit,
//! consume, finish, reset, a tick).
//!
//! Beside a panic, the target fails when the session breaks its flow-control
//! or stream bookkeeping, checked against a model kept here from what went
//! in and out of the session's public API only:
//! - a `Data` event never takes a stream past what this side granted
//!   (`opening_window` plus every `Window` increment it sent);
//! - `take_credit` never hands out more than the peer granted
//!   (`opening_window` plus every `Window` increment that raised `Credit`),
//!   and nothing once our side has finished;
//! - what the peer may still send plus what was received and not consumed,
//!   over every open stream, stays within `link_budget` plus one opening
//!   window per open stream, and matches `Session::link_held`;
//! - no `Data` or second `Fin` after the peer's `Fin`; events only for
//!   streams that are open; peer-opened ids odd and strictly increasing;
//! - the peer never holds more than `max_streams` streams open;
//! - the session stops at its first error (the script ends there).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use warren_proto::frame::{GoAwayReason, ResetCode};
use warren_proto::{
    Event, Frame, OpenReply, OpenRequest, RefuseReason, Role, Session, SessionConfig, StreamId,
    TargetProtocol,
};

const OPENING: u32 = 256;
const INITIAL: u32 = 1024;
const MAX_STREAMS: usize = 8;
const BUDGET: u64 = 3000;

/// What this side knows about one stream, from the session's inputs and
/// outputs.
#[derive(Default)]
struct Model {
    /// Window increments this side sent.
    granted: u64,
    /// Bytes of `Data` events.
    received: u64,
    /// Bytes received and not yet reported with `consumed`.
    unconsumed: u64,
    /// Window increments the peer sent that raised `Credit`.
    peer_granted: u64,
    /// Bytes `take_credit` gave out.
    taken: u64,
    remote_fin: bool,
    local_fin: bool,
    /// This side answered the peer's open.
    answered: bool,
}

/// Reads the script.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }
    /// A stream id: mostly small (so frames meet open streams), sometimes
    /// any.
    fn stream(&mut self) -> Option<StreamId> {
        let b = self.byte()?;
        if b == 0xff {
            self.u32()
        } else {
            Some(StreamId::from(b % 16))
        }
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

fn request() -> OpenRequest {
    OpenRequest {
        protocol: TargetProtocol::Tcp,
        target: "127.0.0.1:1".into(),
        resource: String::new(),
        client: String::new(),
    }
}

/// The next frame from the peer, `None` at the end of the script.
fn peer_frame(script: &mut Script, op: u8) -> Option<Frame> {
    Some(match op {
        0 => Frame::Data {
            stream: script.stream()?,
            payload: Bytes::from(vec![0u8; usize::from(script.u16()? % 4096)]),
        },
        1 => Frame::Open {
            stream: script.stream()?,
            request: request(),
        },
        2 => Frame::Reply {
            stream: script.stream()?,
            reply: OpenReply::Connected,
        },
        3 => Frame::Reply {
            stream: script.stream()?,
            reply: OpenReply::Refused {
                reason: RefuseReason::NotAllowed,
                message: String::new(),
            },
        },
        4 => {
            let stream = script.stream()?;
            let b = script.byte()?;
            // Mostly modest grants, sometimes huge ones.
            let increment = if b & 1 == 0 {
                u32::from(b) * 64
            } else {
                script.u32()?
            };
            Frame::Window { stream, increment }
        }
        5 => Frame::Fin {
            stream: script.stream()?,
        },
        6 => Frame::Reset {
            stream: script.stream()?,
            code: ResetCode::Other(script.byte()?),
        },
        7 => Frame::Ping {
            opaque: u64::from(script.byte()?),
        },
        8 => Frame::Pong {
            opaque: u64::from(script.byte()?),
        },
        9 => Frame::GoAway {
            reason: GoAwayReason::Other(script.byte()?),
        },
        _ => {
            // Raw bytes, as they would come off the wire.
            let n = usize::from(script.byte()?);
            let mut buf = BytesMut::from(script.bytes(n));
            match Frame::decode(&mut buf) {
                Ok(Some(f)) => f,
                _ => return Some(Frame::Ping { opaque: 0 }),
            }
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut script = Script(data);
    let Some(first) = script.byte() else { return };
    let role = if first & 1 == 0 {
        Role::Edge
    } else {
        Role::Agent
    };
    let config = SessionConfig {
        opening_window: OPENING,
        initial_window: INITIAL,
        max_window: 8192,
        max_streams: MAX_STREAMS,
        link_budget: BUDGET,
        ..SessionConfig::default()
    };
    let mut now = Instant::now();
    let mut s = Session::new(role, config, now);
    let mut model: HashMap<StreamId, Model> = HashMap::new();
    let mut last_peer_opened: StreamId = 0;
    let mut opened_locally = 0usize;
    while let Some(op) = script.byte() {
        now += Duration::from_millis(u64::from(op >> 4) * 20);
        match op & 0x0f {
            // The agent answers a stream the peer opened.
            10 if role == Role::Agent => {
                let Some(stream) = script.stream() else { break };
                let Some(how) = script.byte() else { break };
                if s.is_open(stream) && model.get(&stream).is_some_and(|m| !m.answered) {
                    let reply = if how & 1 == 0 {
                        OpenReply::Connected
                    } else {
                        OpenReply::Refused {
                            reason: RefuseReason::NotAllowed,
                            message: String::new(),
                        }
                    };
                    let refused = how & 1 == 1;
                    s.reply(stream, reply);
                    model.get_mut(&stream).expect("checked").answered = true;
                    assert_eq!(s.is_open(stream), !refused);
                }
            }
            // The local side opens a stream (only the edge does).
            11 => {
                if role == Role::Edge {
                    if let Ok((id, _)) = s.open(request()) {
                        assert_eq!(id % 2, 1, "the edge opens odd ids");
                        assert!(
                            model.insert(id, Model::default()).is_none(),
                            "id {id} reused"
                        );
                        opened_locally += 1;
                    }
                }
            }
            // The local side writes, reads and maybe finishes a stream.
            12 | 13 => {
                let Some(stream) = script.stream() else { break };
                let Some(how) = script.byte() else { break };
                let credit = s.take_credit(stream, usize::from(how) * 32) as u64;
                match model.get_mut(&stream) {
                    Some(m) => {
                        if m.local_fin {
                            assert_eq!(credit, 0, "credit on stream {stream} after our fin");
                        }
                        m.taken += credit;
                        assert!(
                            m.taken <= u64::from(OPENING) + m.peer_granted,
                            "stream {stream}: took {} bytes of credit, granted {}",
                            m.taken,
                            u64::from(OPENING) + m.peer_granted
                        );
                        let read = if how & 1 == 0 {
                            m.unconsumed
                        } else {
                            m.unconsumed / 2
                        };
                        m.unconsumed -= read;
                        s.consumed(stream, read as usize, now);
                        if op & 0x0f == 13 && s.finish(stream).is_some() {
                            m.local_fin = true;
                        }
                    }
                    None => assert_eq!(credit, 0, "credit on stream {stream}, never opened"),
                }
            }
            // The local side abandons a stream.
            14 => {
                let Some(stream) = script.stream() else { break };
                let was_open = s.is_open(stream);
                assert_eq!(s.reset(stream, ResetCode::Cancel).is_some(), was_open);
                assert!(!s.is_open(stream));
            }
            // Timers.
            15 => {
                if s.tick(now).is_err() {
                    break;
                }
            }
            // A frame from the peer.
            op => {
                let Some(frame) = peer_frame(&mut script, op) else {
                    break;
                };
                let stream = frame.stream();
                let increment = match frame {
                    Frame::Window { increment, .. } => Some(u64::from(increment)),
                    _ => None,
                };
                let was_open = s.is_open(stream);
                let event = match s.handle(frame, now) {
                    Ok(e) => e,
                    Err(_) => break,
                };
                match event {
                    Some(Event::Opened { stream: id, .. }) => {
                        assert_eq!(role, Role::Agent, "only the edge opens streams");
                        assert!(
                            id % 2 == 1 && id > last_peer_opened,
                            "peer id {id} after {last_peer_opened}"
                        );
                        last_peer_opened = id;
                        assert!(
                            model.insert(id, Model::default()).is_none(),
                            "id {id} reused"
                        );
                    }
                    Some(Event::Data {
                        stream: id,
                        payload,
                    }) => {
                        assert!(was_open, "data for stream {id}, which is not open");
                        let m = model.get_mut(&id).expect("data for a stream never opened");
                        assert!(!m.remote_fin, "data on stream {id} after the peer's fin");
                        m.received += payload.len() as u64;
                        m.unconsumed += payload.len() as u64;
                        assert!(
                            m.received <= u64::from(OPENING) + m.granted,
                            "stream {id}: accepted {} bytes, granted {}",
                            m.received,
                            u64::from(OPENING) + m.granted
                        );
                    }
                    Some(Event::Credit { stream: id }) => {
                        assert!(was_open, "credit for stream {id}, which is not open");
                        let m = model
                            .get_mut(&id)
                            .expect("credit for a stream never opened");
                        m.peer_granted +=
                            increment.expect("credit raised by a frame that is not Window");
                    }
                    Some(Event::Fin { stream: id }) => {
                        assert!(was_open, "fin for stream {id}, which is not open");
                        let m = model.get_mut(&id).expect("fin for a stream never opened");
                        assert!(!m.remote_fin, "second fin on stream {id}");
                        m.remote_fin = true;
                    }
                    Some(Event::Replied { stream: id, .. })
                    | Some(Event::Reset { stream: id, .. }) => {
                        assert!(
                            was_open,
                            "reply or reset for stream {id}, which was not open"
                        );
                    }
                    Some(Event::Control { .. }) | Some(Event::GoAway { .. }) | None => {}
                }
            }
        }
        assert!(s.stream_count() <= MAX_STREAMS + opened_locally);
        while let Some(out) = s.poll_transmit() {
            if let Frame::Window {
                stream: id,
                increment,
            } = out
            {
                let m = model
                    .get_mut(&id)
                    .expect("window for a stream never opened");
                m.granted += u64::from(increment);
            }
        }
        // The link budget, from the model: for each open stream, the credit
        // the peer still has (none after its fin) plus what is unconsumed.
        let mut held = 0u64;
        let mut open = 0u64;
        for (&id, m) in &model {
            if !s.is_open(id) {
                continue;
            }
            open += 1;
            if !m.remote_fin {
                held += u64::from(OPENING) + m.granted - m.received;
            }
            held += m.unconsumed;
        }
        assert_eq!(held, s.link_held(), "the session's count of what it holds");
        assert!(
            held <= BUDGET + open * u64::from(OPENING),
            "holding {held} bytes for {open} streams, budget {BUDGET}"
        );
    }
});
