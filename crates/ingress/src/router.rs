//! Host and path-prefix routing for terminated HTTP and passed-through TLS.
//!
//! Hosts match case-insensitively, exactly, or by a one-label wildcard
//! (`*.example.com` matches `a.example.com`, not `a.b.example.com` nor
//! `example.com`); an exact host wins over a wildcard. Within a host the
//! longest path prefix wins, matched on whole segments: `/api` matches
//! `/api` and `/api/v1`, never `/apix`.

use std::collections::HashMap;

/// Why a route could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The same host and prefix twice.
    #[error("host `{host}` with path `{prefix}` is routed twice")]
    Duplicate {
        /// The host.
        host: String,
        /// The prefix.
        prefix: String,
    },
    /// The prefix is not a normalised absolute path.
    #[error(
        "path prefix `{0}` must start with `/` and contain no `.`/`..` segments, `//`, `?` or `#`"
    )]
    BadPrefix(String),
}

/// The outcome of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a, T> {
    /// The value of the longest matching prefix.
    Found(&'a T),
    /// No route has this host.
    UnknownHost,
    /// The host is known but none of its prefixes matches.
    NoPath,
}

/// A routing table.
#[derive(Debug, Clone)]
pub struct Router<T> {
    exact: HashMap<String, Vec<(String, T)>>,
    wildcard: HashMap<String, Vec<(String, T)>>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

/// `/api/` and `/api` are the same prefix; `/` stays `/`.
fn canonical_prefix(prefix: &str) -> Result<String, RouteError> {
    let valid = prefix.starts_with('/')
        && !prefix.contains("//")
        && !prefix.contains(['?', '#'])
        && !prefix.split('/').any(|s| s == "." || s == "..");
    if !valid {
        return Err(RouteError::BadPrefix(prefix.to_owned()));
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    })
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

impl<T> Router<T> {
    /// Adds a route. `host` may be `*.domain`; `prefix` defaults to `/`.
    pub fn insert(&mut self, host: &str, prefix: Option<&str>, value: T) -> Result<(), RouteError> {
        let prefix = canonical_prefix(prefix.unwrap_or("/"))?;
        let host = host.to_ascii_lowercase();
        let (table, key) = match host.strip_prefix("*.") {
            Some(domain) => (&mut self.wildcard, domain.to_owned()),
            None => (&mut self.exact, host.clone()),
        };
        let routes = table.entry(key).or_default();
        if routes.iter().any(|(p, _)| *p == prefix) {
            return Err(RouteError::Duplicate { host, prefix });
        }
        routes.push((prefix, value));
        // Longest first, so the first match is the most specific.
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        Ok(())
    }

    fn routes_for(&self, host: &str) -> Option<&Vec<(String, T)>> {
        let host = host.to_ascii_lowercase();
        self.exact.get(&host).or_else(|| {
            let (_, domain) = host.split_once('.')?;
            self.wildcard.get(domain)
        })
    }

    /// Whether any route has this host.
    pub fn has_host(&self, host: &str) -> bool {
        self.routes_for(host).is_some()
    }

    /// Looks a normalised path up under `host` (no port).
    pub fn route(&self, host: &str, path: &str) -> Route<'_, T> {
        match self.routes_for(host) {
            None => Route::UnknownHost,
            Some(routes) => routes
                .iter()
                .find(|(p, _)| prefix_matches(p, path))
                .map_or(Route::NoPath, |(_, v)| Route::Found(v)),
        }
    }

    /// Every value, for status pages.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .flatten()
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let mut r = Router::default();
        r.insert("Blog.example.com", None, "root").unwrap();
        r.insert("blog.example.com", Some("/api/"), "api").unwrap();
        r.insert("blog.example.com", Some("/api/v2"), "v2").unwrap();
        assert_eq!(r.route("blog.EXAMPLE.com", "/"), Route::Found(&"root"));
        assert_eq!(r.route("blog.example.com", "/api"), Route::Found(&"api"));
        assert_eq!(r.route("blog.example.com", "/api/x"), Route::Found(&"api"));
        assert_eq!(r.route("blog.example.com", "/apix"), Route::Found(&"root"));
        assert_eq!(
            r.route("blog.example.com", "/api/v2/y"),
            Route::Found(&"v2")
        );
        assert_eq!(r.route("other.example.com", "/"), Route::UnknownHost);
        assert!(matches!(
            r.insert("blog.example.com", Some("/api"), "again"),
            Err(RouteError::Duplicate { .. })
        ));
    }

    #[test]
    fn a_host_without_a_matching_prefix_is_not_unknown() {
        let mut r = Router::default();
        r.insert("a.example", Some("/only"), 1).unwrap();
        assert_eq!(r.route("a.example", "/other"), Route::NoPath);
    }

    #[test]
    fn wildcards_match_one_label_and_lose_to_exact_hosts() {
        let mut r = Router::default();
        r.insert("*.example.com", None, "any").unwrap();
        r.insert("www.example.com", None, "www").unwrap();
        assert_eq!(r.route("a.example.com", "/"), Route::Found(&"any"));
        assert_eq!(r.route("www.example.com", "/"), Route::Found(&"www"));
        assert_eq!(r.route("a.b.example.com", "/"), Route::UnknownHost);
        assert_eq!(r.route("example.com", "/"), Route::UnknownHost);
    }

    #[test]
    fn known_hosts_and_every_value() {
        let mut r = Router::default();
        r.insert("a.example", None, 1).unwrap();
        r.insert("a.example", Some("/x"), 2).unwrap();
        r.insert("*.wild.example", None, 3).unwrap();
        assert!(r.has_host("A.example"));
        assert!(r.has_host("any.wild.example"));
        assert!(!r.has_host("b.example"));
        assert!(!r.has_host("wild.example"));
        let mut values: Vec<i32> = r.values().copied().collect();
        values.sort();
        assert_eq!(values, [1, 2, 3]);
        assert_eq!(Router::<i32>::default().values().count(), 0);
    }

    #[test]
    fn bad_prefixes_are_refused() {
        let mut r = Router::default();
        for p in ["api", "/a/../b", "/a//b", "/a?b"] {
            assert!(r.insert("h", Some(p), ()).is_err(), "{p}");
        }
    }
}
