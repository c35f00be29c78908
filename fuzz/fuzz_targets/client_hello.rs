//! ClientHello sniffing from arbitrary bytes: never panics; a prefix of a
//! complete hello is never an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_ingress::client_hello::{sniff, Sniff};

fuzz_target!(|data: &[u8]| {
    if let Ok(Sniff::Hello(h)) = sniff(data) {
        if let Some(name) = &h.server_name {
            assert!(!name.is_empty() && name.len() <= 253);
            assert_eq!(name, &name.to_ascii_lowercase());
        }
    }
});
