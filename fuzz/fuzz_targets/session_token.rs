//! The session and hand-off token checker on arbitrary text: never panics,
//! never accepts what it did not sign; and whatever it signs checks back to
//! the same claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_identity::token::{Claims, Kind, Signer};

fuzz_target!(|data: (&str, &str, i64, bool)| {
    let (text, host, now, handoff) = data;
    // A token expiring after `now` must exist: `now` below the largest time.
    let now = now.min(i64::MAX - 1);
    let signer = Signer::new(&[42; 32]);
    let kind = match (handoff, now.rem_euclid(3)) {
        (true, _) => Kind::Handoff,
        (false, 0) => Kind::Session,
        (false, 1) => Kind::Pending,
        (false, _) => Kind::Sso,
    };
    // Arbitrary text is refused (a forgery would need the key).
    if let Ok(claims) = signer.check(kind, text, now, host) {
        panic!("accepted a token it never signed: {claims:?}");
    }
    // What it signs, it accepts, with the same claims.
    let claims = Claims {
        sid: text.chars().take(64).collect(),
        uid: host.chars().take(64).collect(),
        host: "app.example.com".into(),
        iat: now,
        exp: now.saturating_add(1),
        to: Some(text.chars().take(128).collect()),
        nonce: None,
        totp: None,
        state: None,
        pkce: None,
    };
    let token = signer.sign(kind, &claims);
    if token.len() <= warren_identity::token::MAX_TOKEN {
        assert_eq!(signer.check(kind, &token, now, "app.example.com"), Ok(claims));
    }
});
