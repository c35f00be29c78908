//! PROXY header parsing from arbitrary bytes: never panics, never claims
//! more bytes than it was given, and what it parses re-encodes to a header
//! that parses to the same addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_ingress::proxy_header::{encode, parse, Transport};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((h, used))) = parse(data) {
        assert!(used <= data.len());
        if let Some((src, dst)) = h.addresses {
            let again = encode(h.version, Transport::Tcp, src, dst);
            let (h2, _) = parse(&again).unwrap().unwrap();
            let (s2, d2) = h2.addresses.unwrap();
            assert_eq!((s2.port(), d2.port()), (src.port(), dst.port()));
        }
    }
});
