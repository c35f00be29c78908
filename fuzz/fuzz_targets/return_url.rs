//! The return-URL check on arbitrary text: never panics; whatever it
//! accepts is this edge's host over https, and the URL it builds parses
//! back to that same host and a path that stays on it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_identity::return_url::{parse, safe_path};

fuzz_target!(|rd: &str| {
    let serves = |h: &str| h == "app.example.com" || h.ends_with(".example.com");
    if let Ok(r) = parse(rd, 8443, serves) {
        assert!(serves(&r.host), "{r:?}");
        assert!(safe_path(&r.path), "{r:?}");
        let url = url::Url::parse(&r.url(8443)).expect("the built URL parses");
        assert_eq!(url.scheme(), "https");
        assert_eq!(url.host_str(), Some(r.host.as_str()), "{rd:?} -> {url}");
        assert_eq!(url.port(), Some(8443));
    }
    let _ = safe_path(rd);
});
