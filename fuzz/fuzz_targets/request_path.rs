//! Path normalisation from arbitrary strings: never panics, idempotent, and
//! never leaves a dot segment, an empty segment, a path parameter or a
//! backslash (plain or escaped) for an origin to resolve.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_ingress::path::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = normalize(s) {
        assert_eq!(normalize(&n).as_deref(), Ok(n.as_str()));
        assert!(!n.split('/').any(|seg| seg == "." || seg == ".."));
        assert!(!n.contains("//"));
        // Nothing an origin could read as another separator or segment.
        assert!(!n.contains(';') && !n.contains('\\') && !n.contains("%5C"));
    }
});
