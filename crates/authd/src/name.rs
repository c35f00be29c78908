//! Account names, sans I/O: the name a just-in-time account gets from an
//! email, and the one check every name from outside passes first.

pub use warren_policy::valid_account;

/// Longest stem kept from an email (room left for a numeric suffix).
const MAX_STEM: usize = 28;

/// The stem of a just-in-time account name for `email`: its local part,
/// lower-cased, `.` and `+` as `_`, anything else outside a-z, 0-9, `_`
/// and `-` dropped, `u` in front when it would start with a digit or `-`,
/// at most 28 characters; `user` when nothing is left.
pub fn stem(email: &str) -> String {
    let local = email.rsplit_once('@').map_or(email, |(l, _)| l);
    let mut out = String::with_capacity(local.len().min(MAX_STEM));
    for c in local.chars() {
        let c = c.to_ascii_lowercase();
        let kept = match c {
            'a'..='z' | '0'..='9' | '_' | '-' => c,
            '.' | '+' => '_',
            _ => continue,
        };
        if out.is_empty() && (kept.is_ascii_digit() || kept == '-') {
            out.push('u');
        }
        out.push(kept);
        if out.len() >= MAX_STEM {
            break;
        }
    }
    if out.is_empty() {
        out.push_str("user");
    }
    out
}

/// The `n`th candidate name for a stem: the stem itself, then `stem2`,
/// `stem3`...
pub fn candidate(stem: &str, n: u32) -> String {
    if n <= 1 {
        stem.to_owned()
    } else {
        format!("{stem}{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_valid_account_names() {
        for (email, want) in [
            ("alice@corp.com", "alice"),
            ("Alice.Smith+ops@corp.com", "alice_smith_ops"),
            ("9lives@corp.com", "u9lives"),
            ("-x@corp.com", "u-x"),
            ("..@corp.com", "__"),
            ("élodie@corp.com", "lodie"),
            ("%$@corp.com", "user"),
            ("../../etc/passwd@corp.com", "____etcpasswd"),
            (
                "averyveryveryverylonglocalpartthatgoeson@corp.com",
                "averyveryveryverylonglocalpa",
            ),
        ] {
            let s = stem(email);
            assert_eq!(s, want, "{email}");
            assert!(valid_account(&s), "{s}");
            assert!(valid_account(&candidate(&s, 99)), "{s}99");
        }
    }

    #[test]
    fn hostile_names_are_not_accounts() {
        for bad in [
            "", "../x", "a b", "%u", "root\n", "Alice", "-x", "a/b", "x$",
        ] {
            assert!(!valid_account(bad), "{bad:?}");
        }
        assert!(valid_account("_svc"));
        assert!(!valid_account(&"a".repeat(33)));
    }
}
