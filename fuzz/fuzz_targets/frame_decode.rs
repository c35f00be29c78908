//! Frame decoding from arbitrary bytes: never panics, and every frame that
//! decodes re-encodes to bytes that decode to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_proto::Frame;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = Frame::decode(&mut buf) {
        let mut again = BytesMut::new();
        frame.encode(&mut again);
        let round = Frame::decode(&mut again).expect("re-encoded frame decodes").expect("whole frame");
        assert_eq!(round, frame);
        assert!(again.is_empty());
    }
});
