//! Datagram framing from arbitrary bytes: never panics, never over-reads.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_proto::datagram;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut taken = 0;
    while let Some(d) = datagram::decode(&mut buf) {
        taken += 2 + d.len();
    }
    assert_eq!(taken + buf.len(), data.len());
});
