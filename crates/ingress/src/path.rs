//! Request-path normalisation.
//!
//! The edge routes on the normalised path and forwards that same path, so an
//! origin can never be handed `/public/../admin` by a route that only
//! matched `/public`. Normalising means: decode percent-escapes of unreserved
//! characters (`%2e` is `.`, `%41` is `A`), upper-case the hex of the others
//! (`%2f` stays an escaped slash, never a separator), merge repeated slashes,
//! and remove `.` and `..` segments (RFC 3986 5.2.4; `..` cannot climb above
//! the root).

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Not origin-form (`/...`).
    #[error("the request path must start with `/`")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("invalid percent-escape in the request path")]
    BadEscape,
    /// A byte that is not visible ASCII (it must be percent-escaped).
    #[error("the request path contains a byte that must be percent-escaped")]
    BadByte,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalises a request path (without the query).
pub fn normalize(path: &str) -> Result<String, PathError> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // 1. Escapes.
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (h, l) = match (
                raw.get(i + 1).and_then(|&c| hex(c)),
                raw.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(PathError::BadEscape),
            };
            let v = h << 4 | l;
            if is_unreserved(v) {
                decoded.push(char::from(v));
            } else {
                decoded.push('%');
                decoded.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                decoded.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
            }
            i += 3;
        } else {
            if !b.is_ascii_graphic() {
                return Err(PathError::BadByte);
            }
            decoded.push(char::from(b));
            i += 1;
        }
    }
    // 2. Segments: merge slashes, drop `.`, pop on `..`.
    let trailing_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if result.is_empty() || trailing_slash {
        result.push('/');
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn dot_segments_escapes_and_slashes() {
        for (raw, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/./b/", "/a/b/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E%2e/%2e/b", "/b"),
            ("//a///b", "/a/b"),
            ("/a/..", "/"),
            ("/api/..", "/"),
            ("/%41%7e", "/A~"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2f..%2fb", "/a%2F..%2Fb"),
            ("/x/%2e", "/x/"),
        ] {
            assert_eq!(normalize(raw).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn bad_paths_are_refused() {
        assert!(normalize("a/b").is_err());
        assert!(normalize("").is_err());
        assert!(normalize("/%zz").is_err());
        assert!(normalize("/%4").is_err());
        assert!(normalize("/caf\u{e9}").is_err());
        assert!(normalize("/a b").is_err());
    }

    proptest::proptest! {
        #[test]
        fn normalising_is_idempotent_and_never_leaves_dot_segments(s in "/[a-z%./2eE]{0,30}") {
            if let Ok(n) = normalize(&s) {
                proptest::prop_assert_eq!(normalize(&n).unwrap(), n.clone());
                proptest::prop_assert!(!n.split('/').any(|seg| seg == ".." || seg == "."));
                proptest::prop_assert!(!n.contains("//"));
            }
        }
    }
}
