//! What the edge asks an agent to connect to, and the agent's answer.
//!
//! These travel as the payload of `Open` and `Reply` frames (see [`crate::frame`]):
//!
//! ```text
//! OpenRequest  protocol u8 | target_len u8 | target | resource_len u8 | resource | client_len u8 | client
//! OpenReply    status u8 | message_len u16 | message
//! ```
//!
//! `target` is `host:port` as configured on the edge; the agent checks it
//! against its own allowlist before it connects to anything.

use bytes::{Buf, BufMut};

/// Transport protocol of the connection the agent should make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetProtocol {
    /// A TCP connection; stream bytes are the connection's bytes.
    Tcp,
    /// A connected UDP socket; stream bytes are length-prefixed datagrams.
    Udp,
    /// No connection: the stream carries health-check plans to the agent and
    /// its reports back (see [`crate::health`]). `target` is unused.
    Health,
    /// No connection: one exchange with the auth daemon for the SSH host
    /// `target` (see [`crate::ssh_user`]); the target must be on the
    /// allowlist as tcp.
    SshUser,
}

impl TargetProtocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetProtocol::Tcp => "tcp",
            TargetProtocol::Udp => "udp",
            TargetProtocol::Health => "health",
            TargetProtocol::SshUser => "ssh-user",
        }
    }
}

/// The edge's request to open a connection at the site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRequest {
    /// TCP or UDP.
    pub protocol: TargetProtocol,
    /// `host:port` to connect to, as configured for the resource.
    pub target: String,
    /// Name of the resource, for the agent's logs.
    pub resource: String,
    /// The visitor's address as the edge saw it (`ip:port`), or empty.
    pub client: String,
}

/// Why an agent did not open a stream's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The target is not on the agent's egress allowlist.
    NotAllowed,
    /// The target could not be resolved.
    ResolveFailed,
    /// The target refused or did not answer the connection.
    ConnectFailed,
    /// The request itself was not understood.
    BadRequest,
    /// A reason from a newer agent.
    Other,
}

impl RefuseReason {
    /// What the agent tells the edge, and the edge may show: the reason
    /// only, never an address, a resolver's words or the allowlist (a
    /// compromised edge learns nothing of the site from a refusal; the
    /// agent's own log has the detail).
    pub fn public_text(self) -> &'static str {
        match self {
            RefuseReason::NotAllowed => "the target is not on the agent's allowlist",
            RefuseReason::ResolveFailed => "the target's name did not resolve",
            RefuseReason::ConnectFailed => "the target did not accept the connection",
            RefuseReason::BadRequest => "the agent could not read the request",
            RefuseReason::Other => "the agent refused",
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            RefuseReason::NotAllowed => 1,
            RefuseReason::ResolveFailed => 2,
            RefuseReason::ConnectFailed => 3,
            RefuseReason::BadRequest => 4,
            RefuseReason::Other => 255,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            1 => RefuseReason::NotAllowed,
            2 => RefuseReason::ResolveFailed,
            3 => RefuseReason::ConnectFailed,
            4 => RefuseReason::BadRequest,
            _ => RefuseReason::Other,
        }
    }

    /// Short snake_case name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseReason::NotAllowed => "not_allowed",
            RefuseReason::ResolveFailed => "resolve_failed",
            RefuseReason::ConnectFailed => "connect_failed",
            RefuseReason::BadRequest => "bad_request",
            RefuseReason::Other => "other",
        }
    }
}

/// The agent's answer to an [`OpenRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenReply {
    /// Connected; bytes may flow.
    Connected,
    /// Not connected, with the reason and a message for the edge's operator.
    Refused {
        /// Why.
        reason: RefuseReason,
        /// Details (the allowlist, the OS error...).
        message: String,
    },
}

/// A payload that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Ended before a field did.
    #[error("payload truncated")]
    Truncated,
    /// Bytes left over after the last field.
    #[error("{0} trailing bytes after payload")]
    Trailing(usize),
    /// A string field is not UTF-8.
    #[error("field `{0}` is not UTF-8")]
    NotUtf8(&'static str),
    /// Protocol byte not 0 (tcp) or 1 (udp).
    #[error("unknown target protocol {0}")]
    UnknownProtocol(u8),
    /// A string field is longer than its length prefix allows.
    #[error("field `{0}` is too long")]
    TooLong(&'static str),
    /// The target is empty.
    #[error("empty target")]
    EmptyTarget,
    /// A flag byte that is neither 0 nor 1, or an unknown status.
    #[error("field `{0}` has a value that is not allowed")]
    BadValue(&'static str),
}

pub(crate) fn put_short_str(
    dst: &mut Vec<u8>,
    field: &'static str,
    value: &str,
) -> Result<(), PayloadError> {
    let len = u8::try_from(value.len()).map_err(|_| PayloadError::TooLong(field))?;
    dst.put_u8(len);
    dst.put_slice(value.as_bytes());
    Ok(())
}

pub(crate) fn get_short_str(src: &mut &[u8], field: &'static str) -> Result<String, PayloadError> {
    if src.remaining() < 1 {
        return Err(PayloadError::Truncated);
    }
    let len = src.get_u8() as usize;
    if src.remaining() < len {
        return Err(PayloadError::Truncated);
    }
    let s = std::str::from_utf8(&src[..len]).map_err(|_| PayloadError::NotUtf8(field))?;
    let s = s.to_owned();
    src.advance(len);
    Ok(s)
}

impl OpenRequest {
    /// Encodes the request as a frame payload.
    pub fn encode(&self) -> Result<Vec<u8>, PayloadError> {
        if self.target.is_empty() {
            return Err(PayloadError::EmptyTarget);
        }
        let mut out =
            Vec::with_capacity(4 + self.target.len() + self.resource.len() + self.client.len());
        out.put_u8(match self.protocol {
            TargetProtocol::Tcp => 0,
            TargetProtocol::Udp => 1,
            TargetProtocol::Health => 2,
            TargetProtocol::SshUser => 3,
        });
        put_short_str(&mut out, "target", &self.target)?;
        put_short_str(&mut out, "resource", &self.resource)?;
        put_short_str(&mut out, "client", &self.client)?;
        Ok(out)
    }

    /// Decodes a request from a whole frame payload.
    pub fn decode(mut src: &[u8]) -> Result<Self, PayloadError> {
        if src.is_empty() {
            return Err(PayloadError::Truncated);
        }
        let protocol = match src.get_u8() {
            0 => TargetProtocol::Tcp,
            1 => TargetProtocol::Udp,
            2 => TargetProtocol::Health,
            3 => TargetProtocol::SshUser,
            other => return Err(PayloadError::UnknownProtocol(other)),
        };
        let target = get_short_str(&mut src, "target")?;
        if target.is_empty() {
            return Err(PayloadError::EmptyTarget);
        }
        let resource = get_short_str(&mut src, "resource")?;
        let client = get_short_str(&mut src, "client")?;
        if !src.is_empty() {
            return Err(PayloadError::Trailing(src.len()));
        }
        Ok(OpenRequest {
            protocol,
            target,
            resource,
            client,
        })
    }
}

impl OpenReply {
    /// Encodes the reply as a frame payload. Messages are cut to 1 KiB.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            OpenReply::Connected => vec![0, 0, 0],
            OpenReply::Refused { reason, message } => {
                let mut cut = message.len().min(1024);
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                let mut out = Vec::with_capacity(3 + cut);
                out.put_u8(reason.to_byte());
                out.put_u16(cut as u16);
                out.put_slice(&message.as_bytes()[..cut]);
                out
            }
        }
    }

    /// Decodes a reply from a whole frame payload.
    pub fn decode(mut src: &[u8]) -> Result<Self, PayloadError> {
        if src.remaining() < 3 {
            return Err(PayloadError::Truncated);
        }
        let status = src.get_u8();
        let len = src.get_u16() as usize;
        if src.remaining() < len {
            return Err(PayloadError::Truncated);
        }
        if src.remaining() > len {
            return Err(PayloadError::Trailing(src.remaining() - len));
        }
        let message = std::str::from_utf8(src)
            .map_err(|_| PayloadError::NotUtf8("message"))?
            .to_owned();
        Ok(match status {
            0 => OpenReply::Connected,
            b => OpenReply::Refused {
                reason: RefuseReason::from_byte(b),
                message,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn request_round_trips(udp: bool, target in "[a-z0-9.:]{1,60}", resource in "\\PC{0,20}", client in "[0-9.:]{0,21}") {
            let req = OpenRequest {
                protocol: if udp { TargetProtocol::Udp } else { TargetProtocol::Tcp },
                target, resource, client,
            };
            let bytes = req.encode().unwrap();
            prop_assert_eq!(OpenRequest::decode(&bytes).unwrap(), req);
        }

        #[test]
        fn reply_round_trips(reason in 1u8..=4, message in "\\PC{0,300}") {
            let reply = OpenReply::Refused { reason: RefuseReason::from_byte(reason), message };
            prop_assert_eq!(OpenReply::decode(&reply.encode()).unwrap(), reply);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = OpenRequest::decode(&bytes);
            let _ = OpenReply::decode(&bytes);
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let reply = OpenReply::Refused {
            reason: RefuseReason::ConnectFailed,
            message: "é".repeat(1000),
        };
        let OpenReply::Refused { message, .. } = OpenReply::decode(&reply.encode()).unwrap() else {
            panic!("not a refusal")
        };
        assert_eq!(message.len(), 1024);
    }

    #[test]
    fn names_for_logs_and_labels() {
        assert_eq!(
            [
                TargetProtocol::Tcp,
                TargetProtocol::Udp,
                TargetProtocol::Health
            ]
            .map(TargetProtocol::as_str),
            ["tcp", "udp", "health"]
        );
        assert_eq!(
            [
                RefuseReason::NotAllowed,
                RefuseReason::ResolveFailed,
                RefuseReason::ConnectFailed,
                RefuseReason::BadRequest,
                RefuseReason::Other,
            ]
            .map(RefuseReason::as_str),
            [
                "not_allowed",
                "resolve_failed",
                "connect_failed",
                "bad_request",
                "other"
            ]
        );
    }

    #[test]
    fn each_reason_keeps_its_byte() {
        for (reason, byte) in [
            (RefuseReason::NotAllowed, 1),
            (RefuseReason::ResolveFailed, 2),
            (RefuseReason::ConnectFailed, 3),
            (RefuseReason::BadRequest, 4),
            (RefuseReason::Other, 255),
        ] {
            let reply = OpenReply::Refused {
                reason,
                message: "m".into(),
            };
            assert_eq!(reply.encode(), [byte, 0, 1, b'm'], "{reason:?}");
            assert_eq!(OpenReply::decode(&[byte, 0, 1, b'm']), Ok(reply));
        }
        // A reason from a newer agent is still a refusal.
        assert_eq!(
            OpenReply::decode(&[9, 0, 0]),
            Ok(OpenReply::Refused {
                reason: RefuseReason::Other,
                message: String::new()
            })
        );
    }

    #[test]
    fn connected_and_an_empty_refusal_round_trip() {
        assert_eq!(OpenReply::Connected.encode(), [0, 0, 0]);
        assert_eq!(OpenReply::decode(&[0, 0, 0]), Ok(OpenReply::Connected));
        let empty = OpenReply::Refused {
            reason: RefuseReason::Other,
            message: String::new(),
        };
        assert_eq!(empty.encode(), [255, 0, 0]);
        assert_eq!(OpenReply::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn a_cut_inside_a_character_backs_off_to_its_start() {
        // "a" then 2-byte characters: byte 1024 is in the middle of one.
        let message = format!("a{}", "é".repeat(600));
        let reply = OpenReply::Refused {
            reason: RefuseReason::ConnectFailed,
            message: message.clone(),
        };
        let OpenReply::Refused { message: got, .. } = OpenReply::decode(&reply.encode()).unwrap()
        else {
            panic!("not a refusal")
        };
        assert_eq!(got.len(), 1023);
        assert!(message.starts_with(&got));
    }

    #[test]
    fn every_truncation_is_truncated_and_every_extension_trailing() {
        let req = OpenRequest {
            protocol: TargetProtocol::Health,
            target: "t:1".into(),
            resource: String::new(),
            client: String::new(),
        };
        let bytes = req.encode().unwrap();
        assert_eq!(OpenRequest::decode(&bytes), Ok(req));
        for cut in 0..bytes.len() {
            assert_eq!(
                OpenRequest::decode(&bytes[..cut]),
                Err(PayloadError::Truncated),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"xyz");
        assert_eq!(OpenRequest::decode(&longer), Err(PayloadError::Trailing(3)));

        let reply = OpenReply::Refused {
            reason: RefuseReason::NotAllowed,
            message: "no".into(),
        }
        .encode();
        for cut in 0..reply.len() {
            assert_eq!(
                OpenReply::decode(&reply[..cut]),
                Err(PayloadError::Truncated),
                "cut at {cut}"
            );
        }
        for extra in 1..4 {
            let mut longer = reply.clone();
            longer.extend_from_slice(&vec![b'x'; extra]);
            assert_eq!(
                OpenReply::decode(&longer),
                Err(PayloadError::Trailing(extra))
            );
        }
    }

    #[test]
    fn overlong_target_is_an_error_not_a_truncation() {
        let req = OpenRequest {
            protocol: TargetProtocol::Tcp,
            target: "a".repeat(300),
            resource: String::new(),
            client: String::new(),
        };
        assert_eq!(req.encode(), Err(PayloadError::TooLong("target")));
    }
}
