//! Open request and reply payloads from arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_proto::{OpenReply, OpenRequest};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = OpenRequest::decode(data) {
        assert_eq!(OpenRequest::decode(&req.encode().unwrap()).unwrap(), req);
    }
    if let Ok(reply) = OpenReply::decode(data) {
        assert_eq!(OpenReply::decode(&reply.encode()).unwrap(), reply);
    }
});
