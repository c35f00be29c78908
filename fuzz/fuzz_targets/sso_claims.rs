//! What single sign-on reads from a provider's verified ID token, on
//! arbitrary input: the email check never panics, and what it accepts is
//! one plain lower-case address whose domain is exactly an allowed one;
//! the claims-to-groups mapping never panics and gives at most MAX_GROUPS
//! well-formed `group:` names, sorted and without repeats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_identity::{claims, email};

fuzz_target!(|data: (&str, &[u8])| {
    let (address, json) = data;
    let allowed = vec!["example.com".to_owned()];
    if let Ok(e) = email::check(address, &allowed) {
        assert_eq!(e, e.to_ascii_lowercase());
        assert_eq!(e.matches('@').count(), 1, "{e}");
        assert!(e.ends_with("@example.com"), "{address:?} -> {e}");
    }
    let _ = email::check(address, &[]);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) {
        let groups = claims::groups(&value, Some("groups"), [("role", "admin", "admins")]);
        assert!(groups.len() <= claims::MAX_GROUPS);
        assert!(groups.windows(2).all(|w| w[0] < w[1]), "{groups:?}");
        for g in &groups {
            assert!(claims::group_name(g).as_deref() == Some(g.as_str()), "{g}");
        }
    }
});
