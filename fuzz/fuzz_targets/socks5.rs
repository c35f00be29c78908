//! What a local client sends `warren connect --socks`: read or refused,
//! never past the input or the protocol's bounds, and a request read from
//! a longer input reads the same from exactly its own bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_ingress::socks5::{greeting, request, MAX_GREETING, MAX_REQUEST};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(n)) = greeting(data) {
        assert!(n <= data.len() && n <= MAX_GREETING);
        assert_eq!(greeting(&data[..n]), Ok(Some(n)));
        if n > 0 {
            assert_eq!(greeting(&data[..n - 1]), Ok(None));
        }
    }
    if let Ok(Some((n, connect))) = request(data) {
        assert!(n <= data.len() && n <= MAX_REQUEST);
        assert_eq!(request(&data[..n]), Ok(Some((n, connect.clone()))));
        assert_eq!(request(&data[..n - 1]), Ok(None));
        let text = connect.to_string();
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b)));
    }
});
