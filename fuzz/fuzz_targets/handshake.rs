//! Handshake decoding (both directions) from arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_proto::handshake::{decode_hello, decode_reply, encode_hello, encode_reply, PROTOCOL_VERSION};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((hello, used))) = decode_hello(data) {
        assert!(used <= data.len());
        let again = encode_hello(&hello, PROTOCOL_VERSION);
        assert_eq!(decode_hello(&again).unwrap().unwrap().0, hello);
    }
    if let Ok(Some((reply, used))) = decode_reply(data) {
        assert!(used <= data.len());
        let again = encode_reply(&reply, PROTOCOL_VERSION);
        assert_eq!(decode_reply(&again).unwrap().unwrap().0, reply);
    }
});
