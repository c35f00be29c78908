//! The frame codec.
//!
//! After the handshake a TCP+TLS link carries only frames. On QUIC links each
//! stream starts with one `Open` (edge → agent) or `Reply` (agent → edge) frame
//! and the control stream carries `Ping`/`Pong`/`Control`/`GoAway` frames.
//!
//! ```text
//! type u8 | flags u8 (0) | stream u32 | length u32 | payload[length]
//! ```
//!
//! Stream 0 is the link itself: `Ping`, `Pong`, `Control` and `GoAway` use it and
//! nothing else may. Integers are big-endian.

use crate::open::{OpenReply, OpenRequest, PayloadError};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Identifies a stream within one link. 0 is the link itself.
pub type StreamId = u32;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 10;
/// Largest payload a receiver accepts. Senders use at most [`MAX_DATA_PAYLOAD`]
/// for data.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Largest data payload a sender puts in one frame.
pub const MAX_DATA_PAYLOAD: usize = 64 * 1024;

const T_DATA: u8 = 0;
const T_OPEN: u8 = 1;
const T_REPLY: u8 = 2;
const T_WINDOW: u8 = 3;
const T_FIN: u8 = 4;
const T_RESET: u8 = 5;
const T_PING: u8 = 6;
const T_PONG: u8 = 7;
const T_CONTROL: u8 = 8;
const T_GOAWAY: u8 = 9;

/// Why a stream was reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetCode {
    /// The local side gave up on the stream (its socket closed abruptly).
    Cancel,
    /// The receiver has too many streams open.
    Refused,
    /// The link is closing.
    LinkClosing,
    /// A code from a newer peer.
    Other(u8),
}

impl ResetCode {
    fn to_byte(self) -> u8 {
        match self {
            ResetCode::Cancel => 0,
            ResetCode::Refused => 1,
            ResetCode::LinkClosing => 2,
            ResetCode::Other(b) => b,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            0 => ResetCode::Cancel,
            1 => ResetCode::Refused,
            2 => ResetCode::LinkClosing,
            b => ResetCode::Other(b),
        }
    }
}

/// Why the peer is going away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GoAwayReason {
    /// The edge is shutting down for good (or for an unknown while).
    Shutdown,
    /// The edge is restarting: reconnect right away.
    Restart,
    /// A reason from a newer peer.
    Other(u8),
}

impl GoAwayReason {
    fn to_byte(self) -> u8 {
        match self {
            GoAwayReason::Shutdown => 0,
            GoAwayReason::Restart => 1,
            GoAwayReason::Other(b) => b,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            0 => GoAwayReason::Shutdown,
            1 => GoAwayReason::Restart,
            b => GoAwayReason::Other(b),
        }
    }
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Stream bytes.
    Data {
        /// Stream.
        stream: StreamId,
        /// Bytes.
        payload: Bytes,
    },
    /// Open a stream (edge → agent).
    Open {
        /// The new stream's id.
        stream: StreamId,
        /// What to connect to.
        request: OpenRequest,
    },
    /// Answer to an `Open` (agent → edge).
    Reply {
        /// Stream.
        stream: StreamId,
        /// Connected or refused.
        reply: OpenReply,
    },
    /// Grants the peer `increment` more bytes of send credit on `stream`.
    Window {
        /// Stream.
        stream: StreamId,
        /// Bytes granted.
        increment: u32,
    },
    /// The sender will send no more data on the stream (half-close).
    Fin {
        /// Stream.
        stream: StreamId,
    },
    /// The stream is abandoned in both directions.
    Reset {
        /// Stream.
        stream: StreamId,
        /// Why.
        code: ResetCode,
    },
    /// Keepalive and round-trip probe; answered with the same `opaque`.
    Ping {
        /// Echoed back.
        opaque: u64,
    },
    /// Answer to a ping.
    Pong {
        /// From the ping.
        opaque: u64,
    },
    /// A control message (JSON), reserved for later protocol features.
    /// Receivers ignore kinds they do not know.
    Control {
        /// JSON bytes.
        payload: Bytes,
    },
    /// The sender will open no new streams and will close the link soon.
    GoAway {
        /// Why.
        reason: GoAwayReason,
    },
}

/// Input that is not a valid frame. Any of these closes the link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Unknown frame type byte.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// Declared payload length over [`MAX_PAYLOAD`].
    #[error("frame payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge(u32),
    /// Payload length wrong for the frame type.
    #[error("frame type {kind} needs a {expected}-byte payload, got {got}")]
    BadLength {
        /// Frame type byte.
        kind: u8,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// A stream frame on stream 0 or a link frame on another stream.
    #[error("frame type {kind} is not allowed on stream {stream}")]
    WrongStream {
        /// Frame type byte.
        kind: u8,
        /// Stream id.
        stream: StreamId,
    },
    /// Non-zero flags (none are defined).
    #[error("unknown frame flags {0:#x}")]
    UnknownFlags(u8),
    /// The payload of an `Open` or `Reply` is malformed.
    #[error("bad payload: {0}")]
    Payload(#[from] PayloadError),
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Frame type byte.
    pub kind: u8,
    /// Stream id.
    pub stream: StreamId,
    /// Payload length (already checked against [`MAX_PAYLOAD`]).
    pub len: usize,
}

impl FrameHeader {
    /// Parses and checks a header.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Self, FrameError> {
        let mut b = &bytes[..];
        let kind = b.get_u8();
        let flags = b.get_u8();
        let stream = b.get_u32();
        let len = b.get_u32();
        if kind > T_GOAWAY {
            return Err(FrameError::UnknownType(kind));
        }
        if flags != 0 {
            return Err(FrameError::UnknownFlags(flags));
        }
        if len as usize > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        let link_level = matches!(kind, T_PING | T_PONG | T_CONTROL | T_GOAWAY);
        if link_level != (stream == 0) {
            return Err(FrameError::WrongStream { kind, stream });
        }
        let fixed = match kind {
            T_WINDOW => Some(4),
            T_FIN => Some(0),
            T_RESET | T_GOAWAY => Some(1),
            T_PING | T_PONG => Some(8),
            _ => None,
        };
        if let Some(expected) = fixed {
            if len as usize != expected {
                return Err(FrameError::BadLength {
                    kind,
                    expected,
                    got: len as usize,
                });
            }
        }
        Ok(FrameHeader {
            kind,
            stream,
            len: len as usize,
        })
    }
}

impl Frame {
    /// The stream this frame belongs to (0 for link frames).
    pub fn stream(&self) -> StreamId {
        match self {
            Frame::Data { stream, .. }
            | Frame::Open { stream, .. }
            | Frame::Reply { stream, .. }
            | Frame::Window { stream, .. }
            | Frame::Fin { stream }
            | Frame::Reset { stream, .. } => *stream,
            Frame::Ping { .. }
            | Frame::Pong { .. }
            | Frame::Control { .. }
            | Frame::GoAway { .. } => 0,
        }
    }

    /// Builds a frame from a checked header and its whole payload.
    pub fn from_parts(header: FrameHeader, payload: Bytes) -> Result<Self, FrameError> {
        debug_assert_eq!(header.len, payload.len());
        let stream = header.stream;
        let mut p = &payload[..];
        Ok(match header.kind {
            T_DATA => Frame::Data { stream, payload },
            T_OPEN => Frame::Open {
                stream,
                request: OpenRequest::decode(&payload)?,
            },
            T_REPLY => Frame::Reply {
                stream,
                reply: OpenReply::decode(&payload)?,
            },
            T_WINDOW => Frame::Window {
                stream,
                increment: p.get_u32(),
            },
            T_FIN => Frame::Fin { stream },
            T_RESET => Frame::Reset {
                stream,
                code: ResetCode::from_byte(p.get_u8()),
            },
            T_PING => Frame::Ping {
                opaque: p.get_u64(),
            },
            T_PONG => Frame::Pong {
                opaque: p.get_u64(),
            },
            T_CONTROL => Frame::Control { payload },
            T_GOAWAY => Frame::GoAway {
                reason: GoAwayReason::from_byte(p.get_u8()),
            },
            other => return Err(FrameError::UnknownType(other)),
        })
    }

    /// Decodes one frame from the front of `src`, consuming it.
    ///
    /// Returns `Ok(None)` while the frame is incomplete (and reserves room for
    /// it). Data payloads are split off `src` without copying.
    pub fn decode(src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(head) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let header = FrameHeader::parse(head.try_into().expect("HEADER_LEN bytes"))?;
        let total = HEADER_LEN + header.len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(header.len).freeze();
        Frame::from_parts(header, payload).map(Some)
    }

    /// Appends the header of a `Data` frame of `len` bytes; the caller
    /// appends the payload (saves a copy on the send path).
    pub fn encode_data_header(stream: StreamId, len: usize, dst: &mut BytesMut) {
        dst.reserve(HEADER_LEN + len);
        dst.put_u8(T_DATA);
        dst.put_u8(0);
        dst.put_u32(stream);
        dst.put_u32(len as u32);
    }

    /// Appends the encoded frame to `dst`.
    ///
    /// Panics only on programming errors: an `Open` whose strings exceed 255
    /// bytes (callers validate requests with [`OpenRequest::encode`] first).
    pub fn encode(&self, dst: &mut BytesMut) {
        let mut head = |kind: u8, stream: StreamId, len: usize| {
            dst.reserve(HEADER_LEN + len);
            dst.put_u8(kind);
            dst.put_u8(0);
            dst.put_u32(stream);
            dst.put_u32(len as u32);
        };
        match self {
            Frame::Data { stream, payload } => {
                head(T_DATA, *stream, payload.len());
                dst.put_slice(payload);
            }
            Frame::Open { stream, request } => {
                let body = request
                    .encode()
                    .expect("open request validated before encoding");
                head(T_OPEN, *stream, body.len());
                dst.put_slice(&body);
            }
            Frame::Reply { stream, reply } => {
                let body = reply.encode();
                head(T_REPLY, *stream, body.len());
                dst.put_slice(&body);
            }
            Frame::Window { stream, increment } => {
                head(T_WINDOW, *stream, 4);
                dst.put_u32(*increment);
            }
            Frame::Fin { stream } => head(T_FIN, *stream, 0),
            Frame::Reset { stream, code } => {
                head(T_RESET, *stream, 1);
                dst.put_u8(code.to_byte());
            }
            Frame::Ping { opaque } => {
                head(T_PING, 0, 8);
                dst.put_u64(*opaque);
            }
            Frame::Pong { opaque } => {
                head(T_PONG, 0, 8);
                dst.put_u64(*opaque);
            }
            Frame::Control { payload } => {
                head(T_CONTROL, 0, payload.len());
                dst.put_slice(payload);
            }
            Frame::GoAway { reason } => {
                head(T_GOAWAY, 0, 1);
                dst.put_u8(reason.to_byte());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open::{RefuseReason, TargetProtocol};
    use proptest::prelude::*;

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let stream = 1u32..;
        prop_oneof![
            (
                stream.clone(),
                proptest::collection::vec(any::<u8>(), 0..2000)
            )
                .prop_map(|(stream, p)| Frame::Data {
                    stream,
                    payload: p.into()
                }),
            (
                stream.clone(),
                "[a-z0-9.:-]{1,80}",
                "[a-z]{0,20}",
                any::<bool>()
            )
                .prop_map(|(stream, target, resource, udp)| Frame::Open {
                    stream,
                    request: OpenRequest {
                        protocol: if udp {
                            TargetProtocol::Udp
                        } else {
                            TargetProtocol::Tcp
                        },
                        target,
                        resource,
                        client: "192.0.2.1:5555".into(),
                    },
                }),
            (stream.clone(), "\\PC{0,50}").prop_map(|(stream, message)| Frame::Reply {
                stream,
                reply: OpenReply::Refused {
                    reason: RefuseReason::NotAllowed,
                    message
                },
            }),
            (stream.clone(), any::<u32>())
                .prop_map(|(stream, increment)| Frame::Window { stream, increment }),
            stream.clone().prop_map(|stream| Frame::Fin { stream }),
            (stream, any::<u8>()).prop_map(|(stream, c)| Frame::Reset {
                stream,
                code: ResetCode::from_byte(c)
            }),
            any::<u64>().prop_map(|opaque| Frame::Ping { opaque }),
            any::<u64>().prop_map(|opaque| Frame::Pong { opaque }),
            any::<u8>().prop_map(|r| Frame::GoAway {
                reason: GoAwayReason::from_byte(r)
            }),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip_through_any_split(frames in proptest::collection::vec(arb_frame(), 1..20), split in 0usize..4000) {
            let mut wire = BytesMut::new();
            for f in &frames { f.encode(&mut wire); }
            let wire = wire.freeze();
            let split = split.min(wire.len());
            let mut buf = BytesMut::from(&wire[..split]);
            let mut decoded = Vec::new();
            while let Some(f) = Frame::decode(&mut buf).unwrap() { decoded.push(f); }
            buf.extend_from_slice(&wire[split..]);
            while let Some(f) = Frame::decode(&mut buf).unwrap() { decoded.push(f); }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = Frame::decode(&mut buf) {}
        }
    }

    #[test]
    fn oversized_length_is_refused_from_the_header_alone() {
        let mut buf = BytesMut::from(&[T_DATA, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(Frame::decode(&mut buf), Err(FrameError::TooLarge(u32::MAX)));
    }

    #[test]
    fn a_payload_of_exactly_the_limit_is_accepted_and_room_is_reserved() {
        let mut head = BytesMut::new();
        Frame::encode_data_header(3, MAX_PAYLOAD, &mut head);
        let mut buf = BytesMut::from(&head[..]);
        assert_eq!(Frame::decode(&mut buf), Ok(None));
        assert!(
            buf.capacity() >= HEADER_LEN + MAX_PAYLOAD,
            "decode reserves room for the whole frame, got {}",
            buf.capacity()
        );
        let mut over = BytesMut::new();
        Frame::encode_data_header(3, MAX_PAYLOAD + 1, &mut over);
        assert_eq!(
            Frame::decode(&mut over),
            Err(FrameError::TooLarge(MAX_PAYLOAD as u32 + 1))
        );
    }

    #[test]
    fn senders_data_frames_fit_the_receivers_limit() {
        const { assert!(MAX_DATA_PAYLOAD > 0 && MAX_DATA_PAYLOAD <= MAX_PAYLOAD) };
        let mut buf = BytesMut::new();
        Frame::encode_data_header(1, MAX_DATA_PAYLOAD, &mut buf);
        buf.extend_from_slice(&vec![7; MAX_DATA_PAYLOAD]);
        assert!(matches!(
            Frame::decode(&mut buf),
            Ok(Some(Frame::Data { stream: 1, payload })) if payload.len() == MAX_DATA_PAYLOAD
        ));
    }

    #[test]
    fn the_data_header_is_the_data_frame_without_its_payload() {
        for len in [0, 1, 9, 10, 11, 5000] {
            let payload = Bytes::from(vec![0xab; len]);
            let mut whole = BytesMut::new();
            Frame::Data {
                stream: 77,
                payload: payload.clone(),
            }
            .encode(&mut whole);
            let mut split = BytesMut::new();
            Frame::encode_data_header(77, len, &mut split);
            assert_eq!(split.len(), HEADER_LEN, "len {len}");
            split.extend_from_slice(&payload);
            assert_eq!(split, whole, "len {len}");
        }
    }

    #[test]
    fn fixed_size_frames_with_another_length_are_refused() {
        for (kind, stream, expected) in [
            (T_WINDOW, 1, 4),
            (T_FIN, 1, 0),
            (T_RESET, 1, 1),
            (T_GOAWAY, 0, 1),
            (T_PING, 0, 8),
            (T_PONG, 0, 8),
        ] {
            let got = expected + 1;
            let mut buf = BytesMut::new();
            buf.put_u8(kind);
            buf.put_u8(0);
            buf.put_u32(stream);
            buf.put_u32(got as u32);
            buf.extend_from_slice(&vec![0; got]);
            assert_eq!(
                Frame::decode(&mut buf),
                Err(FrameError::BadLength {
                    kind,
                    expected,
                    got
                }),
                "kind {kind}"
            );
        }
    }

    #[test]
    fn frames_name_their_stream() {
        let reply = OpenReply::Connected;
        for (frame, stream) in [
            (
                Frame::Data {
                    stream: 5,
                    payload: Bytes::new(),
                },
                5,
            ),
            (
                Frame::Reply {
                    stream: 7,
                    reply: reply.clone(),
                },
                7,
            ),
            (
                Frame::Window {
                    stream: 9,
                    increment: 1,
                },
                9,
            ),
            (Frame::Fin { stream: 11 }, 11),
            (
                Frame::Reset {
                    stream: 13,
                    code: ResetCode::Cancel,
                },
                13,
            ),
            (Frame::Ping { opaque: 3 }, 0),
            (
                Frame::GoAway {
                    reason: GoAwayReason::Restart,
                },
                0,
            ),
        ] {
            assert_eq!(frame.stream(), stream, "{frame:?}");
        }
    }

    #[test]
    fn link_frames_only_on_stream_zero() {
        let mut buf =
            BytesMut::from(&[T_PING, 0, 0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(
            Frame::decode(&mut buf),
            Err(FrameError::WrongStream {
                kind: T_PING,
                stream: 7
            })
        );
        let mut buf = BytesMut::from(&[T_DATA, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]);
        assert!(matches!(
            Frame::decode(&mut buf),
            Err(FrameError::WrongStream { .. })
        ));
    }
}
