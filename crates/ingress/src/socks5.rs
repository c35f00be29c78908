//! The subset of SOCKS5 (RFC 1928) that `warren connect --socks` serves:
//! no authentication, `CONNECT` only, to an IPv4 address or a name.
//!
//! Sans I/O: the caller reads what the client sent into a buffer and asks
//! [`greeting`], then [`request`], whether a whole message is there yet
//! (`Ok(None)`: read more). Every length in the protocol is one byte, so
//! nothing here can make a caller hold more than [`MAX_GREETING`] or
//! [`MAX_REQUEST`] bytes. What cannot be served is an [`Error`] that
//! names the reply to send ([`Error::reply`]).

use std::net::Ipv4Addr;

/// The longest greeting: version, count, 255 methods.
pub const MAX_GREETING: usize = 2 + 255;
/// The longest request: version, command, reserved, type, a name's length
/// byte, 255 bytes of name, the port.
pub const MAX_REQUEST: usize = 4 + 1 + 255 + 2;

/// The server's answer to a greeting that offers "no authentication".
pub const NO_AUTHENTICATION: [u8; 2] = [5, 0];
/// The server's answer to a greeting that offers no method it accepts.
pub const NO_ACCEPTABLE_METHOD: [u8; 2] = [5, 0xff];

/// Reply codes (RFC 1928, section 6).
pub mod code {
    /// Succeeded.
    pub const SUCCEEDED: u8 = 0;
    /// Connection not allowed by ruleset.
    pub const NOT_ALLOWED: u8 = 2;
    /// Host unreachable.
    pub const HOST_UNREACHABLE: u8 = 4;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 7;
    /// Address type not supported.
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;
}

/// Where the client asks to go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// A name: 1 to 255 bytes of ASCII letters, digits, `.`, `-` and `_`.
    Name(String),
}

/// A `CONNECT` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// The destination.
    pub host: Host,
    /// Its port.
    pub port: u16,
}

impl std::fmt::Display for Connect {
    /// `HOST:PORT`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Host::V4(a) => write!(f, "{a}:{}", self.port),
            Host::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

/// What is refused, and what the client is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The first byte is not 5 (another SOCKS version, or not SOCKS).
    #[error("not SOCKS5")]
    NotSocks5,
    /// The greeting offers no "no authentication" method.
    #[error("the client offers no method without authentication")]
    NoAcceptableMethod,
    /// A command other than CONNECT (BIND, UDP ASSOCIATE, or unknown).
    #[error("only CONNECT is supported")]
    CommandNotSupported,
    /// An IPv6 address or an unknown address type.
    #[error("only IPv4 addresses and names are supported")]
    AddressTypeNotSupported,
    /// A name that is empty or has a byte no name Warren serves has.
    #[error("a name Warren does not serve")]
    BadName,
}

impl Error {
    /// The bytes to answer with before closing, if any.
    pub fn reply(self) -> Option<Vec<u8>> {
        match self {
            Error::NotSocks5 => None,
            Error::NoAcceptableMethod => Some(NO_ACCEPTABLE_METHOD.to_vec()),
            Error::CommandNotSupported => Some(reply(code::COMMAND_NOT_SUPPORTED).to_vec()),
            Error::AddressTypeNotSupported | Error::BadName => {
                Some(reply(code::ADDRESS_TYPE_NOT_SUPPORTED).to_vec())
            }
        }
    }
}

/// Reads a greeting from the start of `buf`: `Ok(Some(n))` when its `n`
/// bytes are there and it offers "no authentication" (answer
/// [`NO_AUTHENTICATION`]); `Ok(None)` when more bytes are needed.
pub fn greeting(buf: &[u8]) -> Result<Option<usize>, Error> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    if version != 5 {
        return Err(Error::NotSocks5);
    }
    let Some(&count) = buf.get(1) else {
        return Ok(None);
    };
    let len = 2 + usize::from(count);
    let Some(methods) = buf.get(2..len) else {
        return Ok(None);
    };
    if !methods.contains(&0) {
        return Err(Error::NoAcceptableMethod);
    }
    Ok(Some(len))
}

/// Reads a request from the start of `buf`: `Ok(Some((n, connect)))` when
/// its `n` bytes are there; `Ok(None)` when more bytes are needed.
pub fn request(buf: &[u8]) -> Result<Option<(usize, Connect)>, Error> {
    let Some(head) = buf.get(..4) else {
        return match buf.first() {
            Some(&v) if v != 5 => Err(Error::NotSocks5),
            _ => Ok(None),
        };
    };
    if head[0] != 5 {
        return Err(Error::NotSocks5);
    }
    if head[1] != 1 {
        return Err(Error::CommandNotSupported);
    }
    let (host, at) = match head[3] {
        1 => {
            let Some(a) = buf.get(4..8) else {
                return Ok(None);
            };
            (Host::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])), 8)
        }
        3 => {
            let Some(&len) = buf.get(4) else {
                return Ok(None);
            };
            let end = 5 + usize::from(len);
            let Some(name) = buf.get(5..end) else {
                return Ok(None);
            };
            if name.is_empty()
                || !name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            {
                return Err(Error::BadName);
            }
            // ASCII, checked just above.
            let name = name.iter().map(|&b| char::from(b)).collect();
            (Host::Name(name), end)
        }
        _ => return Err(Error::AddressTypeNotSupported),
    };
    let Some(port) = buf.get(at..at + 2) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes([port[0], port[1]]);
    Ok(Some((at + 2, Connect { host, port })))
}

/// A reply with `code` and an empty IPv4 bound address.
pub fn reply(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_greeting_and_a_connect_by_name_and_by_address() {
        assert_eq!(greeting(&[5, 2, 2, 0, 5, 1]), Ok(Some(4)));
        assert_eq!(greeting(&[5, 2, 2]), Ok(None));
        assert_eq!(greeting(&[5, 1, 2]), Err(Error::NoAcceptableMethod));
        assert_eq!(greeting(&[4, 1, 0]), Err(Error::NotSocks5));
        let by_name = [
            5, 1, 0, 3, 7, b'g', b'r', b'a', b'f', b'a', b'n', b'a', 0x0b, 0xb8,
        ];
        let (n, c) = request(&by_name).unwrap().unwrap();
        assert_eq!((n, c.to_string()), (14, "grafana:3000".to_owned()));
        let by_address = [5, 1, 0, 1, 10, 0, 0, 7, 0, 22];
        let (n, c) = request(&by_address).unwrap().unwrap();
        assert_eq!((n, c.to_string()), (10, "10.0.0.7:22".to_owned()));
        for short in 0..by_name.len() {
            assert_eq!(request(&by_name[..short]), Ok(None), "{short} bytes");
        }
    }

    #[test]
    fn what_is_not_served_is_refused_with_its_reply() {
        let bind = [5, 2, 0, 1, 10, 0, 0, 7, 0, 22];
        assert_eq!(request(&bind), Err(Error::CommandNotSupported));
        let v6 = [5, 1, 0, 4];
        assert_eq!(request(&v6), Err(Error::AddressTypeNotSupported));
        let empty = [5, 1, 0, 3, 0, 0, 80];
        assert_eq!(request(&empty), Err(Error::BadName));
        let slash = [5, 1, 0, 3, 3, b'a', b'/', b'b', 0, 80];
        assert_eq!(request(&slash), Err(Error::BadName));
        let query = [5, 1, 0, 3, 3, b'a', b'&', b'b', 0, 80];
        assert_eq!(request(&query), Err(Error::BadName));
        assert_eq!(Error::BadName.reply(), Some(reply(8).to_vec()));
        assert_eq!(Error::NotSocks5.reply(), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_and_never_past_the_bounds(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)
        ) {
            if let Ok(Some(n)) = greeting(&bytes) {
                proptest::prop_assert!(n <= bytes.len() && n <= MAX_GREETING);
            }
            if let Ok(Some((n, c))) = request(&bytes) {
                proptest::prop_assert!(n <= bytes.len() && n <= MAX_REQUEST);
                proptest::prop_assert_eq!(request(&bytes[..n]), Ok(Some((n, c))));
            }
        }
    }
}
