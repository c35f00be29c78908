//! What the edge reads to issue an SSH certificate, on arbitrary input: a
//! `warren ssh` / `warren sign-key` request body, and the site's answer
//! and the edge's question on an `ssh-user` stream. Nothing panics; what
//! is accepted is within its bounds (a resource name of the allowed
//! alphabet, at most MAX_ACCOUNTS accounts), and an accepted message
//! encodes back to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_identity::ssh_cert::{parse_sign_request, MAX_SIGN_REQUEST};
use warren_proto::ssh_user::{SshUserReply, SshUserRequest, MAX_ACCOUNTS};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_sign_request(data) {
        assert!(data.len() <= MAX_SIGN_REQUEST);
        assert!(!req.resource.is_empty() && req.resource.len() <= 64);
        assert!(req
            .resource
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert!(req.key.to_openssh().is_ok());
    }
    if let Ok(req) = SshUserRequest::decode(data) {
        assert!(req.accounts.len() <= MAX_ACCOUNTS);
        let bytes = req.encode().expect("a decoded request encodes");
        assert_eq!(&bytes[2..], data, "round trip");
    }
    if let Ok(reply) = SshUserReply::decode(data) {
        if let SshUserReply::Granted { accounts, .. } = &reply {
            assert!(accounts.len() <= MAX_ACCOUNTS);
        }
        reply.encode().expect("a decoded reply encodes");
    }
});
