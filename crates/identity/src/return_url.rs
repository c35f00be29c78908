//! Where a visitor goes after signing in: only back to a resource this edge
//! serves, over https, on this edge's https port. Pure; fuzzed.

/// A checked place to return to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Return {
    /// Lower-case host name (no port).
    pub host: String,
    /// Path and query on that host (starts with one `/`).
    pub path: String,
}

impl Return {
    /// The URL to send the browser to, on https `port`.
    pub fn url(&self, port: u16) -> String {
        if port == 443 {
            format!("https://{}{}", self.host, self.path)
        } else {
            format!("https://{}:{port}{}", self.host, self.path)
        }
    }
}

/// The longest return URL accepted.
pub const MAX_RETURN: usize = 2048;

/// Checks `rd` (an absolute URL): https, no user info, a host `serves`
/// says is a resource of this edge, no port or `https_port`; the path and
/// query kept, the fragment dropped.
pub fn parse(
    rd: &str,
    https_port: u16,
    serves: impl Fn(&str) -> bool,
) -> Result<Return, &'static str> {
    if rd.len() > MAX_RETURN {
        return Err("too long");
    }
    let url = url::Url::parse(rd).map_err(|_| "not an absolute URL")?;
    if url.scheme() != "https" {
        return Err("not https");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("user info");
    }
    let Some(url::Host::Domain(host)) = url.host() else {
        return Err("not a host name");
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if url.port().is_some_and(|p| p != https_port) {
        return Err("another port");
    }
    if !serves(&host) {
        return Err("not a resource of this edge");
    }
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    if !safe_path(&path) {
        return Err("path");
    }
    Ok(Return { host, path })
}

/// A path the browser resolves on the same origin: one leading `/`, no
/// `//` or `/\` start, no backslash or control character anywhere.
pub fn safe_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serves(h: &str) -> bool {
        h == "app.example.com"
    }

    #[test]
    fn only_this_edges_resources_over_https_on_its_port() {
        let ok = parse("https://APP.example.com./a/b?c=d#frag", 443, serves).unwrap();
        assert_eq!(
            ok,
            Return {
                host: "app.example.com".into(),
                path: "/a/b?c=d".into()
            }
        );
        assert_eq!(ok.url(443), "https://app.example.com/a/b?c=d");
        assert_eq!(ok.url(8443), "https://app.example.com:8443/a/b?c=d");
        assert!(parse("https://app.example.com:8443/", 8443, serves).is_ok());
        for bad in [
            "http://app.example.com/",
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "https://user:pw@app.example.com/",
            "https://app.example.com:444/",
            "https://[::1]/",
            "https://127.0.0.1/",
            "//app.example.com/",
            "/relative",
            "javascript:alert(1)",
        ] {
            assert!(parse(bad, 443, serves).is_err(), "{bad} was accepted");
        }
        assert!(parse(
            &format!("https://app.example.com/{}", "a".repeat(MAX_RETURN)),
            443,
            serves
        )
        .is_err());
    }

    #[test]
    fn a_landing_path_stays_on_its_origin() {
        for good in ["/", "/a?b=c", "/a/b/"] {
            assert!(safe_path(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "//evil.example/",
            "/\\evil.example",
            "/a\nb",
            "https://x/",
        ] {
            assert!(!safe_path(bad), "{bad:?}");
        }
    }
}
