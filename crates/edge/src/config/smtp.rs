//! The `[notify.email] smtp` URL, parsed when the configuration is read.
//!
//! It says how to reach the relay:
//! * `smtps://[user:pass@]host[:465]`: TLS from the first byte;
//! * `smtp://[user:pass@]host[:587]`: STARTTLS, required, so credentials
//!   and notices never cross the network in clear;
//! * `smtp://host:25?tls=none`: no TLS, for a relay on loopback only.
//!

use warren_proto::Secret;

/// How the relay is reached, parsed from the `smtp` URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SmtpUrl {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) mode: TlsMode,
    /// User and password.
    pub(crate) credentials: Option<(String, Secret)>,
}

/// When TLS starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// `smtps://`.
    Implicit,
    /// `smtp://`: STARTTLS, required.
    StartTls,
    /// `smtp://...?tls=none`.
    None,
}

/// Parses an `smtp` URL (see the module docs).
pub(crate) fn parse_smtp_url(url: &str) -> Result<SmtpUrl, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let tls_none = match parsed.query() {
        None => false,
        Some("tls=none") => true,
        Some(q) => return Err(format!("unknown query `{q}` (only `tls=none` is known)")),
    };
    let (mode, default_port) = match (parsed.scheme(), tls_none) {
        ("smtps", false) => (TlsMode::Implicit, 465),
        ("smtp", false) => (TlsMode::StartTls, 587),
        ("smtp", true) => (TlsMode::None, 25),
        ("smtps", true) => return Err("`smtps://` with `tls=none` contradicts itself".into()),
        (other, _) => return Err(format!("scheme `{other}`: expected smtp:// or smtps://")),
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("no host in the URL")?
        .to_owned();
    let credentials = match (parsed.username(), parsed.password()) {
        ("", None) => None,
        (user, Some(pass)) if !user.is_empty() => {
            Some((percent_decode(user), Secret::new(percent_decode(pass))))
        }
        _ => return Err("credentials need both user and password (smtp://user:pass@host)".into()),
    };
    Ok(SmtpUrl {
        host,
        port: parsed.port().unwrap_or(default_port),
        mode,
        credentials,
    })
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_choose_tls_by_default() {
        let u = parse_smtp_url("smtp://relay.example.com").unwrap();
        assert_eq!((u.mode, u.port), (TlsMode::StartTls, 587));
        let u = parse_smtp_url("smtps://bob:p%40ss@relay.example.com").unwrap();
        assert_eq!((u.mode, u.port), (TlsMode::Implicit, 465));
        assert_eq!(u.credentials, Some(("bob".into(), "p@ss".into())));
        assert!(!format!("{u:?}").contains("p@ss"), "{u:?}");
        let u = parse_smtp_url("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!(
            (u.mode, u.port, u.host.as_str()),
            (TlsMode::None, 2525, "127.0.0.1")
        );
        for bad in [
            "http://x",
            "smtp://",
            "smtps://x?tls=none",
            "smtp://x?tls=maybe",
            "smtp://bob@x",
            "not a url",
        ] {
            assert!(parse_smtp_url(bad).is_err(), "{bad}");
        }
    }
}
