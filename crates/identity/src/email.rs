//! Emails as single sign-on hands them over, sans I/O: one address, lower
//! case, checked against a domain allowlist by exact domain, never by
//! suffix or substring (`alice@example.com.evil.net` is not in
//! `example.com`, nor `"alice@example.com"@evil.net`).

/// The longest email taken (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;

/// Why an email was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Not `local@domain` with one `@`, or with characters no address
    /// needs (quotes, spaces, controls, a second `@`).
    #[error("not a plain email address")]
    Malformed,
    /// Its domain is not one of those allowed.
    #[error("the domain `{0}` is not allowed")]
    DomainNotAllowed(String),
}

/// `email` in lower case if it is a plain address whose domain is exactly
/// one of `allowed` (lower case; any domain when empty).
pub fn check(email: &str, allowed: &[String]) -> Result<String, EmailError> {
    if email.is_empty() || email.len() > MAX_EMAIL {
        return Err(EmailError::Malformed);
    }
    let email = email.to_ascii_lowercase();
    let (local, domain) = email.split_once('@').ok_or(EmailError::Malformed)?;
    let plain_local = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b);
    let plain_domain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    if local.is_empty()
        || domain.is_empty()
        || !local.bytes().all(plain_local)
        || !domain.bytes().all(plain_domain)
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err(EmailError::Malformed);
    }
    if !allowed.is_empty() && !allowed.iter().any(|d| d == domain) {
        return Err(EmailError::DomainNotAllowed(domain.to_owned()));
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_exact_allowed_domain_passes() {
        let allowed = vec!["example.com".to_owned()];
        assert_eq!(
            check("Alice@Example.COM", &allowed),
            Ok("alice@example.com".into())
        );
        for lookalike in [
            "alice@example.com.evil.net",
            "alice@evilexample.com",
            "alice@sub.example.com",
            "example.com@evil.net",
        ] {
            assert!(
                matches!(
                    check(lookalike, &allowed),
                    Err(EmailError::DomainNotAllowed(_))
                ),
                "{lookalike}"
            );
        }
        for malformed in [
            "alice@evil.net@example.com",
            "\"alice@example.com\"@evil.net",
            "alice@example.com ",
            "alice@example.com\n",
            "alice@example.com.",
            "alice",
            "@example.com",
            "alice@",
            "",
        ] {
            assert_eq!(
                check(malformed, &allowed),
                Err(EmailError::Malformed),
                "{malformed:?}"
            );
        }
        assert_eq!(
            check("bob@anywhere.org", &[]),
            Ok("bob@anywhere.org".into())
        );
    }
}
