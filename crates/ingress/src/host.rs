//! Which host an HTTP request is for, from its request-target's authority
//! (HTTP/2's `:authority`, or an absolute-form HTTP/1.1 target) and its
//! `Host` headers: they must agree, there must be exactly one answer, and
//! it must be a host name (no user information, no IP literal in brackets).
//! The edge then requires it to be the name the TLS connection was made
//! for, so a request cannot reach a resource its connection did not name.

/// Why a request's host is refused (the edge answers 400 with this text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// A `Host` header that is not visible ASCII text.
    #[error("the Host header is not text")]
    NotText,
    /// More than one `Host` header.
    #[error("more than one Host header")]
    Several,
    /// The request-target names another host than the `Host` header.
    #[error("the request target names another host than the Host header")]
    Disagree,
    /// Neither a `Host` header nor an authority.
    #[error("no Host header")]
    Missing,
    /// Not `host[:port]`.
    #[error("the Host header is not a host")]
    NotAHost,
    /// `user@host`.
    #[error("the Host header carries user information")]
    UserInfo,
    /// Not a DNS name (an IP literal in brackets, bad characters).
    #[error("the Host header is not a host name")]
    NotAHostName,
}

/// A request's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHost {
    /// Lower-case, no port, no trailing dot.
    pub host: String,
    /// As the client sent it (for the origin's `Host` and `Forwarded`).
    pub authority: String,
}

/// The host of a request whose target carried `uri_authority` (if any)
/// and which had the `Host` header values `host_headers`.
pub fn request_host(
    uri_authority: Option<&str>,
    host_headers: &[&[u8]],
) -> Result<RequestHost, HostError> {
    let headers = host_headers
        .iter()
        .map(|v| {
            std::str::from_utf8(v)
                .ok()
                .filter(|s| s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
                .ok_or(HostError::NotText)
        })
        .collect::<Result<Vec<&str>, _>>()?;
    if headers.len() > 1 {
        return Err(HostError::Several);
    }
    let authority = match (uri_authority, headers.first()) {
        (Some(u), Some(h)) if !u.eq_ignore_ascii_case(h) => return Err(HostError::Disagree),
        (Some(u), _) => u,
        (None, Some(h)) => *h,
        (None, None) => return Err(HostError::Missing),
    };
    if authority.contains('@') {
        return Err(HostError::UserInfo);
    }
    let host = split_port(authority)?;
    let host =
        crate::client_hello::host_name(host.as_bytes()).map_err(|_| HostError::NotAHostName)?;
    Ok(RequestHost {
        host,
        authority: authority.to_owned(),
    })
}

/// `host` of `host[:port]` (`[v6]:port` keeps its brackets, and fails
/// later as no host name).
fn split_port(authority: &str) -> Result<&str, HostError> {
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => {
                let rest = &authority[end + 1..];
                if rest.is_empty() {
                    (authority, None)
                } else {
                    (
                        &authority[..=end],
                        Some(rest.strip_prefix(':').ok_or(HostError::NotAHost)?),
                    )
                }
            }
            None => return Err(HostError::NotAHost),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(port) = port {
        let digits =
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || port.parse::<u32>().map_or(true, |p| p > 65535) {
            return Err(HostError::NotAHost);
        }
    }
    if host.is_empty() || host.bytes().any(|b| b.is_ascii_whitespace() || b == b'/') {
        return Err(HostError::NotAHost);
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(h: &str) -> Result<RequestHost, HostError> {
        request_host(None, &[h.as_bytes()])
    }

    #[test]
    fn the_host_and_its_refusals() {
        assert_eq!(header("App.Test:8443").unwrap().host, "app.test");
        assert_eq!(header("App.Test:8443").unwrap().authority, "App.Test:8443");
        assert_eq!(header("app.test.").unwrap().host, "app.test");
        assert_eq!(
            request_host(Some("app.test"), &[b"APP.test"]).unwrap().host,
            "app.test"
        );
        assert_eq!(
            request_host(Some("app.test"), &[]).unwrap().host,
            "app.test"
        );
        assert_eq!(
            request_host(Some("a.test"), &[b"b.test"]),
            Err(HostError::Disagree)
        );
        assert_eq!(request_host(None, &[]), Err(HostError::Missing));
        assert_eq!(
            request_host(None, &[b"a.test", b"a.test"]),
            Err(HostError::Several)
        );
        assert_eq!(header("a.test\u{7f}"), Err(HostError::NotText));
        assert_eq!(
            request_host(None, &[b"a.t\xffest"]),
            Err(HostError::NotText)
        );
        assert_eq!(header("user@a.test"), Err(HostError::UserInfo));
        assert_eq!(header("[::1]:443"), Err(HostError::NotAHostName));
        assert_eq!(header("a.test:"), Err(HostError::NotAHost));
        assert_eq!(header("a.test:65536"), Err(HostError::NotAHost));
        assert_eq!(header("a.test:8x"), Err(HostError::NotAHost));
        assert_eq!(header(":443"), Err(HostError::NotAHost));
        assert_eq!(header("a..test"), Err(HostError::NotAHostName));
        assert_eq!(header("a test"), Err(HostError::NotAHost));
    }

    proptest! {
        /// A host name with any port and any case is that name, lower-case.
        #[test]
        fn names_with_ports(name in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,3}",
                            port in proptest::option::of(0u16..),
                            upper in any::<bool>()) {
            let sent = if upper { name.to_ascii_uppercase() } else { name.clone() };
            let authority = match port { Some(p) => format!("{sent}:{p}"), None => sent };
            let got = request_host(None, &[authority.as_bytes()]).unwrap();
            prop_assert_eq!(got.host, name);
            prop_assert_eq!(got.authority, authority.clone());
            // The same authority in the target agrees, whatever its case.
            let again = request_host(Some(&authority.to_ascii_lowercase()), &[authority.as_bytes()]);
            prop_assert!(again.is_ok());
        }

        /// Anything at all: an answer or a refusal, never a panic, and an
        /// answer is always a valid host name.
        #[test]
        fn any_bytes(a in proptest::option::of(".{0,40}"), h in proptest::collection::vec(any::<u8>(), 0..60)) {
            if let Ok(got) = request_host(a.as_deref(), &[&h]) {
                prop_assert!(crate::client_hello::host_name(got.host.as_bytes()).is_ok());
                prop_assert!(!got.authority.contains('@'));
            }
        }
    }
}
