//! A request's host from arbitrary authority and Host bytes: never panics,
//! and whatever it accepts is a valid host name with no user information.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_ingress::client_hello::host_name;
use warren_ingress::host::request_host;

fuzz_target!(|input: (Option<String>, Vec<Vec<u8>>)| {
    let (authority, headers) = input;
    let headers: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
    if let Ok(got) = request_host(authority.as_deref(), &headers) {
        assert!(host_name(got.host.as_bytes()).is_ok(), "{got:?}");
        assert!(!got.authority.contains('@'), "{got:?}");
        assert!(headers.len() <= 1);
        if let (Some(a), Some(h)) = (&authority, headers.first()) {
            assert!(a.as_bytes().eq_ignore_ascii_case(h));
        }
    }
});
