//! Letting a user into an SSH host: the one exchange on a
//! [`TargetProtocol::SshUser`](crate::TargetProtocol::SshUser) stream.
//! The edge, having checked the policy, asks the site to make sure the
//! user's account exists; the site's auth daemon answers with what the
//! host allows (which may be less: the host has the last word).
//!
//! Each message is one length-prefixed payload (`len u16 | payload`, at
//! most [`MAX_MESSAGE`] bytes):
//!
//! ```text
//! SshUserRequest  resource s8 | email s8 | own u8 | sudo s8 (empty: none) | n u8 | account s8 * n
//! SshUserReply    0 | own s8 (empty: none) | sudo u8 | vetoed s8 | n u8 | account s8 * n
//!               | 1 | message s8
//! ```
//! (`s8`: a UTF-8 string after its u8 length.)

use crate::open::{get_short_str, put_short_str, PayloadError};
use bytes::{Buf, BufMut};

/// The certificate principal that lets `who` (an email, or a named
/// account) in on `resource` only: `vm-01/alice@corp.com`. The edge signs
/// it; the host's auth daemon records it for the account.
pub fn scoped(resource: &str, who: &str) -> String {
    format!("{resource}/{who}")
}

/// The largest message either side sends or reads.
pub const MAX_MESSAGE: usize = 4096;
/// At most this many named accounts in one message.
pub const MAX_ACCOUNTS: usize = 32;

/// The edge's request: who, and what the policy grants them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshUserRequest {
    /// The ssh resource (its alias): the host's principals are scoped to
    /// it (`vm-01/alice@corp.com`), so a certificate for one host is none
    /// for another.
    pub resource: String,
    /// The user's email (their own account's certificate principal).
    pub email: String,
    /// Whether the grant includes the user's own account.
    pub own: bool,
    /// The sudo role the grant names.
    pub sudo: Option<String>,
    /// Named accounts the grant includes.
    pub accounts: Vec<String>,
}

/// The site's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SshUserReply {
    /// What the host allows.
    Granted {
        /// The user's own account's name, if made (or found).
        own: Option<String>,
        /// Whether that account has sudo.
        sudo: bool,
        /// A sudo role the host refused.
        vetoed: Option<String>,
        /// Named accounts the host allows too.
        accounts: Vec<String>,
    },
    /// Nothing allowed, with a reason for the edge (never the host's detail).
    Refused(String),
}

fn put_accounts(out: &mut Vec<u8>, accounts: &[String]) -> Result<(), PayloadError> {
    if accounts.len() > MAX_ACCOUNTS {
        return Err(PayloadError::TooLong("accounts"));
    }
    out.put_u8(accounts.len() as u8);
    for a in accounts {
        put_short_str(out, "account", a)?;
    }
    Ok(())
}

fn get_accounts(src: &mut &[u8]) -> Result<Vec<String>, PayloadError> {
    let n = get_u8(src)? as usize;
    if n > MAX_ACCOUNTS {
        return Err(PayloadError::TooLong("accounts"));
    }
    (0..n).map(|_| get_short_str(src, "account")).collect()
}

fn get_u8(src: &mut &[u8]) -> Result<u8, PayloadError> {
    if src.remaining() < 1 {
        return Err(PayloadError::Truncated);
    }
    Ok(src.get_u8())
}

fn get_flag(src: &mut &[u8], field: &'static str) -> Result<bool, PayloadError> {
    match get_u8(src)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(PayloadError::BadValue(field)),
    }
}

fn finish(src: &[u8]) -> Result<(), PayloadError> {
    if src.is_empty() {
        Ok(())
    } else {
        Err(PayloadError::Trailing(src.len()))
    }
}

fn framed(payload: Vec<u8>) -> Result<Vec<u8>, PayloadError> {
    if payload.len() > MAX_MESSAGE {
        return Err(PayloadError::TooLong("message"));
    }
    let mut out = Vec::with_capacity(2 + payload.len());
    out.put_u16(payload.len() as u16);
    out.extend_from_slice(&payload);
    Ok(out)
}

impl SshUserRequest {
    /// The request with its length prefix, ready to write.
    pub fn encode(&self) -> Result<Vec<u8>, PayloadError> {
        let mut out = Vec::new();
        put_short_str(&mut out, "resource", &self.resource)?;
        put_short_str(&mut out, "email", &self.email)?;
        out.put_u8(u8::from(self.own));
        put_short_str(&mut out, "sudo", self.sudo.as_deref().unwrap_or(""))?;
        put_accounts(&mut out, &self.accounts)?;
        framed(out)
    }

    /// Decodes a payload (without its length prefix).
    pub fn decode(mut src: &[u8]) -> Result<Self, PayloadError> {
        if src.len() > MAX_MESSAGE {
            return Err(PayloadError::TooLong("message"));
        }
        let resource = get_short_str(&mut src, "resource")?;
        let email = get_short_str(&mut src, "email")?;
        let own = get_flag(&mut src, "own")?;
        let sudo = Some(get_short_str(&mut src, "sudo")?).filter(|s| !s.is_empty());
        let accounts = get_accounts(&mut src)?;
        finish(src)?;
        Ok(SshUserRequest {
            resource,
            email,
            own,
            sudo,
            accounts,
        })
    }
}

impl SshUserReply {
    /// The reply with its length prefix, ready to write. A refusal's
    /// message is cut to 255 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, PayloadError> {
        let mut out = Vec::new();
        match self {
            SshUserReply::Granted {
                own,
                sudo,
                vetoed,
                accounts,
            } => {
                out.put_u8(0);
                put_short_str(&mut out, "own", own.as_deref().unwrap_or(""))?;
                out.put_u8(u8::from(*sudo));
                put_short_str(&mut out, "vetoed", vetoed.as_deref().unwrap_or(""))?;
                put_accounts(&mut out, accounts)?;
            }
            SshUserReply::Refused(message) => {
                out.put_u8(1);
                let mut cut = message.len().min(255);
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                put_short_str(&mut out, "message", &message[..cut])?;
            }
        }
        framed(out)
    }

    /// Decodes a payload (without its length prefix).
    pub fn decode(mut src: &[u8]) -> Result<Self, PayloadError> {
        if src.len() > MAX_MESSAGE {
            return Err(PayloadError::TooLong("message"));
        }
        let reply = match get_u8(&mut src)? {
            0 => {
                let own = Some(get_short_str(&mut src, "own")?).filter(|s| !s.is_empty());
                let sudo = get_flag(&mut src, "sudo")?;
                let vetoed = Some(get_short_str(&mut src, "vetoed")?).filter(|s| !s.is_empty());
                let accounts = get_accounts(&mut src)?;
                SshUserReply::Granted {
                    own,
                    sudo,
                    vetoed,
                    accounts,
                }
            }
            1 => SshUserReply::Refused(get_short_str(&mut src, "message")?),
            _ => return Err(PayloadError::BadValue("status")),
        };
        finish(src)?;
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn requests_round_trip(resource in "[a-z0-9.-]{1,20}", email in "[a-z]{1,20}@[a-z]{1,10}\\.com", own: bool,
                sudo in proptest::option::of("[a-z]{1,10}"),
                accounts in proptest::collection::vec("[a-z_][a-z0-9_-]{0,31}", 0..5)) {
            let req = SshUserRequest { resource, email, own, sudo, accounts };
            let bytes = req.encode().unwrap();
            prop_assert_eq!(SshUserRequest::decode(&bytes[2..]).unwrap(), req);
        }

        #[test]
        fn replies_round_trip(own in proptest::option::of("[a-z]{1,10}"), sudo: bool,
                vetoed in proptest::option::of("[a-z]{1,10}"),
                accounts in proptest::collection::vec("[a-z]{1,8}", 0..5),
                message in "\\PC{0,300}", refused: bool) {
            let reply = if refused {
                SshUserReply::Refused(message)
            } else {
                SshUserReply::Granted { own, sudo, vetoed, accounts }
            };
            let bytes = reply.encode().unwrap();
            let back = SshUserReply::decode(&bytes[2..]).unwrap();
            match (&reply, &back) {
                (SshUserReply::Refused(a), SshUserReply::Refused(b)) => prop_assert!(a.starts_with(b.as_str())),
                _ => prop_assert_eq!(back, reply),
            }
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SshUserRequest::decode(&bytes);
            let _ = SshUserReply::decode(&bytes);
        }
    }

    #[test]
    fn too_many_accounts_are_refused_both_ways() {
        let req = SshUserRequest {
            resource: "vm".into(),
            email: "a@b.co".into(),
            own: false,
            sudo: None,
            accounts: vec!["x".into(); MAX_ACCOUNTS + 1],
        };
        assert!(req.encode().is_err());
        let mut bytes = vec![
            2, b'v', b'm', 6, b'a', b'@', b'b', b'.', b'c', b'o', 0, 0, 200,
        ];
        bytes.extend(std::iter::repeat_n([1u8, b'x'], 200).flatten());
        assert_eq!(
            SshUserRequest::decode(&bytes),
            Err(PayloadError::TooLong("accounts"))
        );
    }
}
