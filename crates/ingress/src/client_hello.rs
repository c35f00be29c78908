//! Reading a TLS ClientHello's server name (SNI) and ALPN list without
//! terminating TLS.
//!
//! [`sniff`] is fed the bytes received so far and answers
//! [`Sniff::NeedMore`] until the whole ClientHello handshake message has
//! arrived (it may span several TLS records). It never consumes anything:
//! the caller keeps the bytes and, for a passed-through resource, sends them
//! on untouched.

/// TLS record content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
/// The largest ClientHello accepted. Real ones are well under 2 KiB, a few
/// KiB with post-quantum key shares; anything bigger is refused rather than
/// buffered.
pub const MAX_HELLO_LEN: usize = 16 * 1024;

/// What the first bytes of a connection said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The SNI host name, lower-cased, without a trailing dot.
    pub server_name: Option<String>,
    /// The ALPN protocols offered, in the client's order.
    pub alpn: Vec<Vec<u8>>,
}

/// The outcome of looking at the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    /// The ClientHello is not complete yet; read more and call again.
    NeedMore,
    /// The complete ClientHello.
    Hello(ClientHello),
}

/// Why the bytes are not a usable ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HelloError {
    /// The first byte is not a TLS handshake record (plain HTTP on the TLS
    /// port, say).
    #[error("not TLS: the connection did not start with a handshake record")]
    NotTls,
    /// A handshake record, but not a ClientHello.
    #[error("the first handshake message is not a ClientHello")]
    NotClientHello,
    /// Bigger than [`MAX_HELLO_LEN`].
    #[error("ClientHello larger than {MAX_HELLO_LEN} bytes")]
    TooLarge,
    /// A length field points outside its container, or similar.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// The SNI is not a DNS host name.
    #[error("the server name is not a valid host name")]
    BadServerName,
}

/// Looks at the first bytes of a connection.
pub fn sniff(buf: &[u8]) -> Result<Sniff, HelloError> {
    // Gather the handshake bytes from as many records as needed.
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        if rest.is_empty() {
            return Ok(Sniff::NeedMore);
        }
        if rest[0] != HANDSHAKE {
            return Err(HelloError::NotTls);
        }
        if rest.len() >= 2 && rest[1] != 3 {
            // Every TLS record version is 3.x (SSL 3.0 .. TLS 1.3's legacy 3.1/3.3).
            return Err(HelloError::NotTls);
        }
        if rest.len() < 5 {
            return Ok(Sniff::NeedMore);
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 {
            return Err(HelloError::Malformed("empty handshake record"));
        }
        if rest.len() < 5 + len {
            // Take what there is of this record to see the message length early.
            handshake.extend_from_slice(&rest[5..]);
            check_header(&handshake)?;
            return Ok(Sniff::NeedMore);
        }
        handshake.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if let Some(total) = check_header(&handshake)? {
            if handshake.len() >= total {
                return parse_body(&handshake[4..total]).map(Sniff::Hello);
            }
        }
    }
}

/// Checks the handshake header once its 4 bytes are there; returns the whole
/// message's length.
fn check_header(handshake: &[u8]) -> Result<Option<usize>, HelloError> {
    if handshake.is_empty() {
        return Ok(None);
    }
    if handshake[0] != CLIENT_HELLO {
        return Err(HelloError::NotClientHello);
    }
    if handshake.len() < 4 {
        return Ok(None);
    }
    let len = (usize::from(handshake[1]) << 16)
        | (usize::from(handshake[2]) << 8)
        | usize::from(handshake[3]);
    if len > MAX_HELLO_LEN {
        return Err(HelloError::TooLarge);
    }
    Ok(Some(4 + len))
}

/// A cursor over a byte slice whose reads fail instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }
}

fn parse_body(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut r = Reader(body);
    r.take(2, "client version")?;
    r.take(32, "random")?;
    r.vec8("session id")?;
    r.vec16("cipher suites")?;
    r.vec8("compression methods")?;
    let mut hello = ClientHello {
        server_name: None,
        alpn: Vec::new(),
    };
    if r.0.is_empty() {
        // No extensions at all (very old clients).
        return Ok(hello);
    }
    let mut exts = Reader(r.vec16("extensions")?);
    let mut seen_sni = false;
    while !exts.0.is_empty() {
        let kind = exts.u16("extension type")?;
        let data = exts.vec16("extension data")?;
        match kind {
            EXT_SERVER_NAME => {
                if seen_sni {
                    return Err(HelloError::Malformed("two server_name extensions"));
                }
                seen_sni = true;
                hello.server_name = parse_server_name(data)?;
            }
            EXT_ALPN => {
                let mut list = Reader(Reader(data).vec16("ALPN list")?);
                while !list.0.is_empty() {
                    let proto = list.vec8("ALPN protocol")?;
                    if proto.is_empty() {
                        return Err(HelloError::Malformed("empty ALPN protocol"));
                    }
                    hello.alpn.push(proto.to_vec());
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

fn parse_server_name(data: &[u8]) -> Result<Option<String>, HelloError> {
    let mut list = Reader(Reader(data).vec16("server name list")?);
    let mut name = None;
    while !list.0.is_empty() {
        let kind = list.u8("server name type")?;
        let value = list.vec16("server name")?;
        // Type 0 is host_name, the only one defined; a second one is invalid (RFC 6066 3).
        if kind == 0 {
            if name.is_some() {
                return Err(HelloError::Malformed("two host names in server_name"));
            }
            name = Some(host_name(value)?);
        }
    }
    Ok(name)
}

/// Validates and canonicalises a DNS host name: ASCII letters, digits, `-`,
/// `_` and dots, 1..=253 bytes, lower-cased, one trailing dot dropped.
pub fn host_name(raw: &[u8]) -> Result<String, HelloError> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    let valid = !raw.is_empty()
        && raw.len() <= 253
        && raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !raw.starts_with(b".")
        && !raw.windows(2).any(|w| w == b"..");
    if !valid {
        return Err(HelloError::BadServerName);
    }
    Ok(String::from_utf8_lossy(raw).to_ascii_lowercase())
}

/// Builds a minimal ClientHello record, for tests and fuzz seeds.
pub fn build_for_tests(server_name: Option<&str>, alpn: &[&[u8]]) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = server_name {
        let name = name.as_bytes();
        let mut list = vec![0u8];
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name);
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        exts.extend_from_slice(&EXT_SERVER_NAME.to_be_bytes());
        exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
        exts.extend_from_slice(&data);
    }
    if !alpn.is_empty() {
        let mut list = Vec::new();
        for p in alpn {
            list.push(p.len() as u8);
            list.extend_from_slice(p);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        exts.extend_from_slice(&EXT_ALPN.to_be_bytes());
        exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
        exts.extend_from_slice(&data);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![CLIENT_HELLO];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![HANDSHAKE, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sni_and_alpn() {
        let rec = build_for_tests(Some("Blog.Example.COM."), &[b"h2", b"http/1.1"]);
        let Sniff::Hello(h) = sniff(&rec).unwrap() else {
            panic!()
        };
        assert_eq!(h.server_name.as_deref(), Some("blog.example.com"));
        assert_eq!(h.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn every_prefix_asks_for_more_and_never_errs() {
        let rec = build_for_tests(Some("a.example"), &[b"h2"]);
        for n in 0..rec.len() {
            assert_eq!(sniff(&rec[..n]), Ok(Sniff::NeedMore), "prefix {n}");
        }
    }

    #[test]
    fn a_hello_split_over_two_records_is_read() {
        let rec = build_for_tests(Some("split.example"), &[]);
        let hs = &rec[5..];
        let (a, b) = hs.split_at(10);
        let mut two = vec![HANDSHAKE, 3, 1];
        two.extend_from_slice(&(a.len() as u16).to_be_bytes());
        two.extend_from_slice(a);
        two.extend_from_slice(&[HANDSHAKE, 3, 1]);
        two.extend_from_slice(&(b.len() as u16).to_be_bytes());
        two.extend_from_slice(b);
        let Sniff::Hello(h) = sniff(&two).unwrap() else {
            panic!()
        };
        assert_eq!(h.server_name.as_deref(), Some("split.example"));
    }

    #[test]
    fn plain_http_and_garbage_are_refused() {
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Err(HelloError::NotTls));
        assert_eq!(sniff(&[22, 9, 9]), Err(HelloError::NotTls));
        assert_eq!(
            sniff(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
            Err(HelloError::NotClientHello)
        );
        assert_eq!(
            sniff(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
            Err(HelloError::TooLarge)
        );
    }

    /// A one-record ClientHello whose body (the handshake message after its
    /// 4-byte header) is exactly `body_len` bytes, padded with ALPN protocols.
    fn hello_of_body_len(body_len: usize) -> Vec<u8> {
        let base = build_for_tests(Some("big.example"), &[]).len() - 5 - 4;
        // The ALPN extension adds type, length and list length (6 bytes),
        // then a length byte per protocol.
        let mut left = body_len - base - 6;
        let mut protos = Vec::new();
        while left > 0 {
            let take = left.clamp(2, 256);
            let take = if left - take == 1 { take - 1 } else { take };
            protos.push(vec![b'p'; take - 1]);
            left -= take;
        }
        let protos: Vec<&[u8]> = protos.iter().map(Vec::as_slice).collect();
        let rec = build_for_tests(Some("big.example"), &protos);
        assert_eq!(rec.len(), 5 + 4 + body_len);
        rec
    }

    #[test]
    fn a_hello_of_exactly_the_limit_is_read_and_one_byte_more_is_refused() {
        let rec = hello_of_body_len(MAX_HELLO_LEN);
        let Ok(Sniff::Hello(h)) = sniff(&rec) else {
            panic!("{:?}", sniff(&rec))
        };
        assert_eq!(h.server_name.as_deref(), Some("big.example"));
        assert!(h.alpn.len() > 60);
        assert_eq!(
            sniff(&hello_of_body_len(MAX_HELLO_LEN + 1)),
            Err(HelloError::TooLarge)
        );
        // The length is refused from the handshake header alone, whatever
        // byte carries it.
        for len in [[0, 0x40, 0x01], [0, 0xff, 0], [1, 0, 0], [0x80, 0, 0]] {
            let mut head = vec![HANDSHAKE, 3, 1, 0, 4, CLIENT_HELLO];
            head.extend_from_slice(&len);
            assert_eq!(sniff(&head), Err(HelloError::TooLarge), "{len:?}");
        }
    }

    #[test]
    fn an_empty_record_is_malformed_not_incomplete() {
        assert_eq!(
            sniff(&[HANDSHAKE, 3, 1, 0, 0]),
            Err(HelloError::Malformed("empty handshake record"))
        );
    }

    #[test]
    fn hostile_server_names_are_refused() {
        for bad in ["", "a..b", ".a", "a b", "a/b", "ünï.example"] {
            let rec = build_for_tests(Some(bad), &[]);
            assert!(
                matches!(sniff(&rec), Err(HelloError::BadServerName)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn no_sni_is_not_an_error() {
        let rec = build_for_tests(None, &[]);
        assert_eq!(
            sniff(&rec),
            Ok(Sniff::Hello(ClientHello {
                server_name: None,
                alpn: vec![]
            }))
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = sniff(&bytes);
            let mut rec = build_for_tests(Some("x.example"), &[b"h2"]);
            let n = bytes.len().min(rec.len());
            rec[..n].copy_from_slice(&bytes[..n]);
            let _ = sniff(&rec);
        }
    }
}
