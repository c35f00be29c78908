//! PROXY protocol headers (HAProxy's spec, v1 text and v2 binary), which tell
//! an origin the real client address of a connection the edge relays.
//!
//! The edge only writes them ([`encode`]); [`parse`] exists for origins
//! written in Rust, for the tests, and is fuzzed.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Which header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `PROXY TCP4 1.2.3.4 5.6.7.8 1234 443\r\n`
    V1,
    /// The binary header.
    V2,
}

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (spec section 2.1).
pub const V1_MAX_LEN: usize = 107;

/// Transport of the relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP (v1 and v2).
    Tcp,
    /// UDP (v2 only; v1 has no way to say it).
    Udp,
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// v1 or v2.
    pub version: Version,
    /// `None` for `UNKNOWN` (v1) or `LOCAL` (v2): use the socket's addresses.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// Neither signature.
    #[error("no PROXY protocol header")]
    Missing,
    /// A v1 line that breaks the grammar.
    #[error("malformed PROXY v1 line: {0}")]
    BadV1(&'static str),
    /// A v2 header that breaks the format.
    #[error("malformed PROXY v2 header: {0}")]
    BadV2(&'static str),
}

/// Both addresses in the same family (v4 addresses are mapped into v6 when
/// the other side is v6).
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (src, dst) = (canon(src), canon(dst));
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (v6(src), v6(dst))
    }
}

/// The header for a connection from `src` (the client) to `dst` (the edge
/// address the client reached).
pub fn encode(version: Version, transport: Transport, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    match version {
        Version::V1 => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        Version::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            out.push(0x21); // version 2, command PROXY
            let proto = match transport {
                Transport::Tcp => 0x1,
                Transport::Udp => 0x2,
            };
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x10 | proto);
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    let six = |ip: IpAddr| match ip {
                        IpAddr::V6(v) => v,
                        IpAddr::V4(v) => v.to_ipv6_mapped(),
                    };
                    out.push(0x20 | proto);
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&six(s).octets());
                    out.extend_from_slice(&six(d).octets());
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out
        }
    }
}

/// Reads a header at the start of `buf`: `Ok(None)` if more bytes are
/// needed, else the header and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let sig_len = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig_len] == V2_SIGNATURE[..sig_len] && !buf.is_empty() {
        return parse_v2(buf);
    }
    let v1 = b"PROXY ";
    let n = buf.len().min(v1.len());
    if buf[..n] == v1[..n] {
        return parse_v1(buf);
    }
    Err(ProxyHeaderError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyHeaderError::BadV1("no line end within 107 bytes"))
        } else {
            Ok(None)
        };
    };
    if end + 1 > V1_MAX_LEN || end == 0 || buf[end - 1] != b'\r' {
        return Err(ProxyHeaderError::BadV1(
            "line not ended by CRLF within 107 bytes",
        ));
    }
    let line =
        std::str::from_utf8(&buf[..end - 1]).map_err(|_| ProxyHeaderError::BadV1("not ASCII"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let header = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => ProxyHeader {
            version: Version::V1,
            addresses: None,
        },
        ["PROXY", fam @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Result<IpAddr, ProxyHeaderError> {
                let ip: IpAddr = s
                    .parse()
                    .map_err(|_| ProxyHeaderError::BadV1("bad address"))?;
                if ip.is_ipv4() != (*fam == "TCP4") {
                    return Err(ProxyHeaderError::BadV1("address does not match the family"));
                }
                Ok(ip)
            };
            let port = |s: &str| -> Result<u16, ProxyHeaderError> {
                if s.is_empty()
                    || s.len() > 5
                    || !s.bytes().all(|b| b.is_ascii_digit())
                    || (s.len() > 1 && s.starts_with('0'))
                {
                    return Err(ProxyHeaderError::BadV1("bad port"));
                }
                s.parse().map_err(|_| ProxyHeaderError::BadV1("bad port"))
            };
            ProxyHeader {
                version: Version::V1,
                addresses: Some((
                    SocketAddr::new(ip(src)?, port(sport)?),
                    SocketAddr::new(ip(dst)?, port(dport)?),
                )),
            }
        }
        _ => {
            return Err(ProxyHeaderError::BadV1(
                "expected PROXY TCP4|TCP6|UNKNOWN ...",
            ))
        }
    };
    Ok(Some((header, end + 1)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::BadV2("version is not 2"));
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let addresses = match ver_cmd & 0xf {
        0 => None, // LOCAL
        1 => match buf[13] {
            0x11 | 0x12 => {
                if body.len() < 12 {
                    return Err(ProxyHeaderError::BadV2("IPv4 block too short"));
                }
                let ip = |o: usize| IpAddr::from([body[o], body[o + 1], body[o + 2], body[o + 3]]);
                let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                Some((
                    SocketAddr::new(ip(0), port(8)),
                    SocketAddr::new(ip(4), port(10)),
                ))
            }
            0x21 | 0x22 => {
                if body.len() < 36 {
                    return Err(ProxyHeaderError::BadV2("IPv6 block too short"));
                }
                let ip = |o: usize| {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&body[o..o + 16]);
                    IpAddr::V6(Ipv6Addr::from(a))
                };
                let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                Some((
                    SocketAddr::new(ip(0), port(32)),
                    SocketAddr::new(ip(16), port(34)),
                ))
            }
            _ => None, // UNSPEC or UNIX: the receiver uses the socket's addresses
        },
        _ => return Err(ProxyHeaderError::BadV2("unknown command")),
    };
    Ok(Some((
        ProxyHeader {
            version: Version::V2,
            addresses,
        },
        16 + len,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_matches_the_spec_example() {
        let h = encode(
            Version::V1,
            Transport::Tcp,
            a("192.168.0.1:56324"),
            a("192.168.0.11:443"),
        );
        assert_eq!(h, b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        let h6 = encode(
            Version::V1,
            Transport::Tcp,
            a("[2001:db8::1]:1"),
            a("10.0.0.1:443"),
        );
        assert_eq!(h6, b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 443\r\n");
    }

    #[test]
    fn round_trips_both_versions() {
        for v in [Version::V1, Version::V2] {
            for (src, dst) in [
                (a("1.2.3.4:5"), a("6.7.8.9:443")),
                (a("[2001:db8::7]:65535"), a("[::1]:8443")),
                (a("[::ffff:1.2.3.4]:9"), a("6.7.8.9:443")),
            ] {
                let h = encode(v, Transport::Tcp, src, dst);
                let mut bytes = h.clone();
                bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
                let (parsed, used) = parse(&bytes).unwrap().unwrap();
                assert_eq!(used, h.len());
                assert_eq!(parsed.version, v);
                let (ps, pd) = parsed.addresses.unwrap();
                assert_eq!(ps.ip().to_canonical(), src.ip().to_canonical());
                assert_eq!((ps.port(), pd.port()), (src.port(), dst.port()));
                for n in 0..h.len() {
                    assert_eq!(parse(&h[..n]), Ok(None), "{v:?} prefix {n}");
                }
            }
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert_eq!(parse(b"GET /"), Err(ProxyHeaderError::Missing));
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n").is_err());
        assert!(parse(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n").is_err());
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n").is_err());
        let long = [b"PROXY ".as_slice(), &[b'A'; 120]].concat();
        assert!(parse(&long).is_err());
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(parse(&v2).is_err());
    }

    #[test]
    fn v1_unknown_and_the_107_byte_limit() {
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\nGET"),
            Ok(Some((
                ProxyHeader {
                    version: Version::V1,
                    addresses: None
                },
                15
            )))
        );
        // UNKNOWN may carry anything up to the line end.
        let line = |len: usize| {
            let mut l = b"PROXY UNKNOWN ".to_vec();
            l.resize(len - 2, b'x');
            l.extend_from_slice(b"\r\n");
            l
        };
        let longest = line(V1_MAX_LEN);
        assert_eq!(
            parse(&longest).map(|h| h.map(|(_, used)| used)),
            Ok(Some(V1_MAX_LEN))
        );
        assert_eq!(parse(&line(V1_MAX_LEN + 1)), Err(CRLF_LIMIT));
        // A line end without its CR is refused, even where the rest would parse.
        assert_eq!(parse(b"PROXY UNKNOWN ab\n"), Err(CRLF_LIMIT));
    }

    const CRLF_LIMIT: ProxyHeaderError =
        ProxyHeaderError::BadV1("line not ended by CRLF within 107 bytes");

    #[test]
    fn v1_ports_are_plain_decimal() {
        let with_ports = |sport: &str| {
            let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {sport} 443\r\n");
            parse(line.as_bytes()).map(|h| h.and_then(|(h, _)| h.addresses))
        };
        assert_eq!(
            with_ports("0"),
            Ok(Some((a("1.2.3.4:0"), a("5.6.7.8:443"))))
        );
        assert_eq!(
            with_ports("65535"),
            Ok(Some((a("1.2.3.4:65535"), a("5.6.7.8:443"))))
        );
        for bad in ["", "+80", "-1", "080", "00", "65536", "100000", "８０"] {
            assert_eq!(
                with_ports(bad),
                Err(ProxyHeaderError::BadV1("bad port")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn v2_local_unspec_and_extra_bytes_after_the_addresses() {
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(local.len(), 16);
        assert_eq!(
            parse(&local),
            Ok(Some((
                ProxyHeader {
                    version: Version::V2,
                    addresses: None
                },
                16
            )))
        );
        // UNSPEC: a proxied connection whose addresses the receiver takes
        // from the socket.
        let mut unspec = V2_SIGNATURE.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0, 0]);
        assert_eq!(
            parse(&unspec),
            Ok(Some((
                ProxyHeader {
                    version: Version::V2,
                    addresses: None
                },
                16
            )))
        );
        // TLVs may follow the address block: the header covers them.
        for (src, dst) in [
            (a("1.2.3.4:5"), a("6.7.8.9:443")),
            (a("[2001:db8::7]:65535"), a("[::1]:8443")),
        ] {
            let mut h = encode(Version::V2, Transport::Udp, src, dst);
            let len = u16::from_be_bytes([h[14], h[15]]) + 3;
            h[14..16].copy_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&[0xEE, 0, 0]);
            let (parsed, used) = parse(&h).unwrap().unwrap();
            assert_eq!(used, h.len());
            assert_eq!(parsed.addresses, Some((src, dst)));
        }
        let mut short6 = V2_SIGNATURE.to_vec();
        short6.extend_from_slice(&[0x21, 0x21, 0, 12]);
        short6.extend_from_slice(&[0; 12]);
        assert_eq!(
            parse(&short6),
            Err(ProxyHeaderError::BadV2("IPv6 block too short"))
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&bytes);
            let mut v2 = V2_SIGNATURE.to_vec();
            v2.extend_from_slice(&bytes);
            let _ = parse(&v2);
        }
    }
}
