//! Request-path normalisation.
//!
//! The edge routes on the normalised path and forwards that same path, so an
//! origin can never be handed `/public/../admin` by a route that only
//! matched `/public`. Normalising means: decode percent-escapes of unreserved
//! characters (`%2e` is `.`, `%41` is `A`), upper-case the hex of the others
//! (`%2f` stays an escaped slash, never a separator), merge repeated slashes,
//! and remove `.` and `..` segments (RFC 3986 5.2.4; `..` cannot climb above
//! the root).
//!
//! Forms that origins read differently than this router are refused rather
//! than passed on (the Traefik/Pomerium/Tomcat path-confusion family): a
//! path parameter (`;`, as in `/public/..;/admin`, which Tomcat reads as
//! `/admin`), a backslash or an escaped one (`%5C`: a separator to IIS and
//! some frameworks), and a dot segment written with escapes (`%2e%2e`).
//! An escaped slash (`%2F`) stays escaped and is reported
//! ([`has_encoded_slash`]); the edge refuses it unless the resource keeps
//! them (`encoded_slashes = "keep"`).

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
    /// A form origins read differently than the router (see the module).
    #[error("the request path contains {0}, which servers read differently; refused")]
    Ambiguous(&'static str),
}

/// Whether a normalised path holds an escaped slash (`%2F`), which some
/// origins decode into a separator.
pub fn has_encoded_slash(normalized: &str) -> bool {
    normalized.contains("%2F")
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

fn dot_segment(seg: &str) -> bool {
    seg == "." || seg == ".."
}

/// Normalises a request path (without the query).
pub fn normalize(path: &str) -> Result<String, PathError> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // 1. Escapes.
    let mut decoded = String::with_capacity(raw.len());
    let mut escaped_dot = false;
    let mut segment_start = 0;
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
            if v == b'\\' {
                return Err(PathError::Ambiguous("an escaped backslash"));
            }
            if v == b'.' {
                escaped_dot = true;
            }
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
            match b {
                b'\\' => return Err(PathError::Ambiguous("a backslash")),
                b';' => return Err(PathError::Ambiguous("a path parameter (`;`)")),
                b'/' => {
                    // A dot segment is judged per segment: an escape in
                    // another segment does not count.
                    if escaped_dot && dot_segment(&decoded[segment_start..]) {
                        return Err(PathError::Ambiguous("an escaped dot segment"));
                    }
                    escaped_dot = false;
                    segment_start = decoded.len() + 1;
                }
                _ => {}
            }
            decoded.push(char::from(b));
            i += 1;
        }
    }
    if escaped_dot && dot_segment(&decoded[segment_start..]) {
        return Err(PathError::Ambiguous("an escaped dot segment"));
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
            ("/a/%2e%2ex/b", "/a/..x/b"),
            ("//a///b", "/a/b"),
            ("/a/..", "/"),
            ("/api/..", "/"),
            ("/%41%7e", "/A~"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2f..%2fb", "/a%2F..%2Fb"),
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

    #[test]
    fn forms_origins_read_differently_are_refused() {
        use super::{has_encoded_slash, PathError};
        for raw in [
            "/public/..;/admin",
            "/public;x=1/a",
            "/public\\..\\admin",
            "/public/%5C../admin",
            "/public/%5c",
            "/a/%2e%2e/b",
            "/a/%2E%2e/%2e/b",
            "/x/%2e",
            "/x/.%2e/y",
        ] {
            assert!(
                matches!(normalize(raw), Err(PathError::Ambiguous(_))),
                "{raw}: {:?}",
                normalize(raw)
            );
        }
        // Dots that are not a dot segment are just dots.
        assert_eq!(normalize("/v1.%2e/x").unwrap(), "/v1../x");
        assert_eq!(normalize("/%2e%2e%2e").unwrap(), "/...");
        assert!(has_encoded_slash(&normalize("/a%2fb").unwrap()));
        assert!(!has_encoded_slash(&normalize("/a/b").unwrap()));
    }

    proptest::proptest! {
        #[test]
        fn normalising_is_idempotent_and_never_leaves_dot_segments(s in "/[a-z%./2eE;5cC\\\\]{0,30}") {
            if let Ok(n) = normalize(&s) {
                proptest::prop_assert!(!n.contains(';') && !n.contains('\\') && !n.contains("%5C"));
                proptest::prop_assert_eq!(normalize(&n).unwrap(), n.clone());
                proptest::prop_assert!(!n.split('/').any(|seg| seg == ".." || seg == "."));
                proptest::prop_assert!(!n.contains("//"));
            }
        }
    }
}
