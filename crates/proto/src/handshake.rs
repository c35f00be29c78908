//! The link handshake: the first bytes an agent sends on a fresh link, and the
//! edge's answer.
//!
//! ```text
//! agent → edge   MAGIC(6) | version u16 | body_len u32 | body (JSON Hello)
//! edge → agent   MAGIC(6) | version u16 | status u8 | body_len u32 | body (JSON Welcome or Refusal)
//! ```
//!
//! The header layout is frozen for every protocol version, so that an edge can
//! refuse an agent of any version (and the reverse) with a message the other
//! side can print. Only the body and the frames after the handshake change with
//! the version. All integers are big-endian.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// Opens every handshake, in both directions.
pub const MAGIC: [u8; 6] = *b"WARREN";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 2;
/// The oldest protocol version this build accepts from a peer.
pub const MIN_SUPPORTED_VERSION: u16 = 2;
/// Largest handshake body accepted (the bodies are a few hundred bytes).
pub const MAX_BODY_LEN: usize = 16 * 1024;

const HELLO_HEADER_LEN: usize = 6 + 2 + 4;
const REPLY_HEADER_LEN: usize = 6 + 2 + 1 + 4;

/// What an agent says when it dials in. (`Debug` shows no secret: see [`Secret`].)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The site this agent serves.
    pub site_id: String,
    /// The site secret. Only ever sent inside the encrypted link.
    #[serde(serialize_with = "Secret::serialize_exposed")]
    pub secret: Secret,
    /// The agent's software version (`CARGO_PKG_VERSION`).
    pub agent_version: String,
    /// `os/arch` of the agent.
    pub platform: String,
    /// Random per-process id, so the edge can tell twins with equal credentials apart.
    pub instance: String,
}

/// The edge's acceptance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The edge's software version.
    pub edge_version: String,
    /// An id for this link, for matching logs on both sides.
    pub link_id: String,
}

/// Why the edge (or agent) refused the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalCode {
    /// The peer speaks a protocol version outside the supported range.
    UnsupportedVersion,
    /// Unknown site id or wrong secret (deliberately not told apart).
    BadCredentials,
    /// The hello could not be decoded.
    Malformed,
    /// The edge is shutting down or overloaded; try again later.
    Unavailable,
    /// The agent's software is older than the oldest the edge supports.
    AgentTooOld,
    /// A code from a newer peer.
    #[serde(other)]
    Other,
}

/// A refusal with a message meant for the operator reading the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Machine-readable reason.
    pub code: RefusalCode,
    /// Human-readable explanation, including what to do.
    pub message: String,
}

/// The edge's answer, as decoded by the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Accepted: the link now carries frames.
    Welcome(Welcome),
    /// Refused: the edge closes the link after this.
    Refused(Refusal),
}

/// A handshake that cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The first bytes are not Warren's magic: not a Warren peer at all.
    #[error("peer is not speaking the Warren protocol (bad magic bytes)")]
    BadMagic,
    /// The peer speaks a version this build does not.
    #[error(
        "peer speaks protocol version {offered}; this build speaks versions {min}..={max}: \
         upgrade the older side"
    )]
    UnsupportedVersion {
        /// The peer's version.
        offered: u16,
        /// Oldest version accepted here.
        min: u16,
        /// Newest version spoken here.
        max: u16,
    },
    /// The body length exceeds [`MAX_BODY_LEN`].
    #[error("handshake body of {0} bytes exceeds the {MAX_BODY_LEN}-byte limit")]
    TooLarge(usize),
    /// The reply status byte is unknown.
    #[error("unknown handshake status byte {0}")]
    BadStatus(u8),
    /// The body is not the expected JSON.
    #[error("malformed handshake body: {0}")]
    BadBody(String),
}

impl HandshakeError {
    /// The refusal an edge should send back for this error.
    pub fn to_refusal(&self) -> Refusal {
        let code = match self {
            HandshakeError::UnsupportedVersion { .. } => RefusalCode::UnsupportedVersion,
            _ => RefusalCode::Malformed,
        };
        Refusal {
            code,
            message: self.to_string(),
        }
    }
}

fn check_version(offered: u16) -> Result<(), HandshakeError> {
    if (MIN_SUPPORTED_VERSION..=PROTOCOL_VERSION).contains(&offered) {
        Ok(())
    } else {
        Err(HandshakeError::UnsupportedVersion {
            offered,
            min: MIN_SUPPORTED_VERSION,
            max: PROTOCOL_VERSION,
        })
    }
}

/// Encodes a hello as the given protocol `version` (normally [`PROTOCOL_VERSION`];
/// tests pass others to play an incompatible peer).
pub fn encode_hello(hello: &Hello, version: u16) -> Vec<u8> {
    let body = serde_json::to_vec(hello).expect("Hello serialises");
    let mut out = Vec::with_capacity(HELLO_HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a hello from the start of `buf`.
///
/// Returns `Ok(None)` while more bytes are needed, else the hello and how many
/// bytes it took. A version outside the supported range is reported as soon as
/// the header is complete, before the body is read.
pub fn decode_hello(buf: &[u8]) -> Result<Option<(Hello, usize)>, HandshakeError> {
    if buf.len() < HELLO_HEADER_LEN {
        check_magic_prefix(buf)?;
        return Ok(None);
    }
    check_magic_prefix(&buf[..6])?;
    let version = u16::from_be_bytes([buf[6], buf[7]]);
    check_version(version)?;
    let len = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    if len > MAX_BODY_LEN {
        return Err(HandshakeError::TooLarge(len));
    }
    let Some(body) = buf.get(HELLO_HEADER_LEN..HELLO_HEADER_LEN + len) else {
        return Ok(None);
    };
    let hello: Hello =
        serde_json::from_slice(body).map_err(|e| HandshakeError::BadBody(e.to_string()))?;
    Ok(Some((hello, HELLO_HEADER_LEN + len)))
}

/// Encodes the edge's answer as protocol `version`.
pub fn encode_reply(reply: &Reply, version: u16) -> Vec<u8> {
    let (status, body) = match reply {
        Reply::Welcome(w) => (0u8, serde_json::to_vec(w)),
        Reply::Refused(r) => (1u8, serde_json::to_vec(r)),
    };
    let body = body.expect("reply serialises");
    let mut out = Vec::with_capacity(REPLY_HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_be_bytes());
    out.push(status);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes the edge's answer from the start of `buf`.
///
/// A refusal is decoded whatever the version (its layout is frozen), so that an
/// agent can print why an edge of another version turned it away. A welcome of
/// an unsupported version is an error.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, HandshakeError> {
    if buf.len() < REPLY_HEADER_LEN {
        check_magic_prefix(buf)?;
        return Ok(None);
    }
    check_magic_prefix(&buf[..6])?;
    let version = u16::from_be_bytes([buf[6], buf[7]]);
    let status = buf[8];
    if status > 1 {
        return Err(HandshakeError::BadStatus(status));
    }
    let len = u32::from_be_bytes([buf[9], buf[10], buf[11], buf[12]]) as usize;
    if len > MAX_BODY_LEN {
        return Err(HandshakeError::TooLarge(len));
    }
    let Some(body) = buf.get(REPLY_HEADER_LEN..REPLY_HEADER_LEN + len) else {
        return Ok(None);
    };
    let bad_body = |e: serde_json::Error| HandshakeError::BadBody(e.to_string());
    let reply = if status == 1 {
        Reply::Refused(serde_json::from_slice(body).map_err(bad_body)?)
    } else {
        check_version(version)?;
        Reply::Welcome(serde_json::from_slice(body).map_err(bad_body)?)
    };
    Ok(Some((reply, REPLY_HEADER_LEN + len)))
}

fn check_magic_prefix(prefix: &[u8]) -> Result<(), HandshakeError> {
    if MAGIC.starts_with(prefix) || prefix.starts_with(&MAGIC) {
        Ok(())
    } else {
        Err(HandshakeError::BadMagic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            site_id: "home".into(),
            secret: "s3cret".into(),
            agent_version: "0.1.0".into(),
            platform: "linux/x86_64".into(),
            instance: "abc".into(),
        }
    }

    #[test]
    fn hello_round_trips_and_reports_length() {
        let bytes = encode_hello(&hello(), PROTOCOL_VERSION);
        let (decoded, used) = decode_hello(&bytes).unwrap().unwrap();
        assert_eq!(decoded, hello());
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn every_truncation_of_a_hello_asks_for_more() {
        let bytes = encode_hello(&hello(), PROTOCOL_VERSION);
        for cut in 0..bytes.len() {
            assert_eq!(decode_hello(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn unknown_version_is_refused_before_the_body() {
        let bytes = encode_hello(&hello(), 99);
        let err = decode_hello(&bytes[..HELLO_HEADER_LEN]).unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::UnsupportedVersion { offered: 99, .. }
        ));
        assert!(err.to_string().contains("upgrade"));
    }

    #[test]
    fn refusal_of_any_version_is_readable() {
        let refusal = Refusal {
            code: RefusalCode::UnsupportedVersion,
            message: "nope".into(),
        };
        let bytes = encode_reply(&Reply::Refused(refusal.clone()), 42);
        let (reply, _) = decode_reply(&bytes).unwrap().unwrap();
        assert_eq!(reply, Reply::Refused(refusal));
    }

    #[test]
    fn welcome_of_unknown_version_is_an_error() {
        let w = Welcome {
            edge_version: "9".into(),
            link_id: "x".into(),
        };
        let bytes = encode_reply(&Reply::Welcome(w), 42);
        assert!(matches!(
            decode_reply(&bytes),
            Err(HandshakeError::UnsupportedVersion { offered: 42, .. })
        ));
    }

    #[test]
    fn garbage_is_not_warren() {
        assert_eq!(
            decode_hello(b"GET / HTTP/1.1\r\n"),
            Err(HandshakeError::BadMagic)
        );
        assert_eq!(decode_reply(b"SSH-2.0"), Err(HandshakeError::BadMagic));
    }

    #[test]
    fn huge_body_is_refused_without_waiting_for_it() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_hello(&bytes),
            Err(HandshakeError::TooLarge(_))
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let debug = format!("{:?}", hello());
        assert!(!debug.contains("s3cret"), "{debug}");
        // Masked, not dropped: the rest is there for the logs.
        for shown in ["Hello", "home", "***", "0.1.0", "linux/x86_64", "abc"] {
            assert!(debug.contains(shown), "{shown} missing from {debug}");
        }
    }

    /// A hello whose JSON body is exactly `len` bytes.
    fn hello_of_body_len(len: usize) -> Hello {
        let mut h = hello();
        let base = serde_json::to_vec(&h).unwrap().len();
        h.platform.push_str(&"x".repeat(len - base));
        assert_eq!(serde_json::to_vec(&h).unwrap().len(), len);
        h
    }

    #[test]
    fn a_body_of_exactly_the_limit_is_read_and_one_more_byte_is_refused() {
        let h = hello_of_body_len(MAX_BODY_LEN);
        let bytes = encode_hello(&h, PROTOCOL_VERSION);
        assert_eq!(bytes.len(), HELLO_HEADER_LEN + MAX_BODY_LEN);
        assert_eq!(decode_hello(&bytes), Ok(Some((h, bytes.len()))));
        let bytes = encode_hello(&hello_of_body_len(MAX_BODY_LEN + 1), PROTOCOL_VERSION);
        assert_eq!(
            decode_hello(&bytes),
            Err(HandshakeError::TooLarge(MAX_BODY_LEN + 1))
        );

        let refusal = |len: usize| {
            let mut r = Refusal {
                code: RefusalCode::Malformed,
                message: String::new(),
            };
            let base = serde_json::to_vec(&r).unwrap().len();
            r.message = "m".repeat(len - base);
            Reply::Refused(r)
        };
        let bytes = encode_reply(&refusal(MAX_BODY_LEN), PROTOCOL_VERSION);
        assert_eq!(bytes.len(), REPLY_HEADER_LEN + MAX_BODY_LEN);
        assert_eq!(
            decode_reply(&bytes),
            Ok(Some((refusal(MAX_BODY_LEN), bytes.len())))
        );
        let bytes = encode_reply(&refusal(MAX_BODY_LEN + 1), PROTOCOL_VERSION);
        assert_eq!(
            decode_reply(&bytes),
            Err(HandshakeError::TooLarge(MAX_BODY_LEN + 1))
        );
    }

    #[test]
    fn welcome_round_trips_and_every_truncation_asks_for_more() {
        let w = Reply::Welcome(Welcome {
            edge_version: "0.1.0".into(),
            link_id: "l-1".into(),
        });
        let mut bytes = encode_reply(&w, PROTOCOL_VERSION);
        for cut in 0..bytes.len() {
            assert_eq!(decode_reply(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        let len = bytes.len();
        bytes.extend_from_slice(b"frames follow");
        assert_eq!(decode_reply(&bytes), Ok(Some((w, len))));
    }

    #[test]
    fn an_unknown_status_is_refused_from_the_header_alone() {
        for status in [2u8, 3, 255] {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
            bytes.push(status);
            bytes.extend_from_slice(&2u32.to_be_bytes());
            assert_eq!(bytes.len(), REPLY_HEADER_LEN);
            assert_eq!(decode_reply(&bytes), Err(HandshakeError::BadStatus(status)));
        }
    }

    #[test]
    fn errors_become_refusals_with_the_right_code() {
        let version = decode_hello(&encode_hello(&hello(), 99)).unwrap_err();
        let refusal = version.to_refusal();
        assert_eq!(refusal.code, RefusalCode::UnsupportedVersion);
        assert_eq!(refusal.message, version.to_string());
        for err in [
            HandshakeError::BadMagic,
            HandshakeError::TooLarge(1 << 20),
            HandshakeError::BadBody("x".into()),
        ] {
            let refusal = err.to_refusal();
            assert_eq!(refusal.code, RefusalCode::Malformed, "{err}");
            assert_eq!(refusal.message, err.to_string());
        }
    }
}
