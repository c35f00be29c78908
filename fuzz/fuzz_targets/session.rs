//! A hostile peer driving the mux state machine: arbitrary frames, with the
//! local side opening, reading and writing in between. The session must never
//! panic, never grant credit it does not have, and stop at the first error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use warren_proto::{Frame, OpenRequest, Role, Session, SessionConfig, TargetProtocol};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let role = if first & 1 == 0 { Role::Edge } else { Role::Agent };
    let config = SessionConfig { initial_window: 1024, max_window: 8192, max_streams: 8, ..SessionConfig::default() };
    let mut now = Instant::now();
    let mut s = Session::new(role, config, now);
    let mut buf = BytesMut::from(rest);
    let mut step = 0u32;
    let mut opened_locally = 0usize;
    loop {
        step += 1;
        if role == Role::Edge && step % 3 == 0 {
            if s
                .open(OpenRequest {
                    protocol: TargetProtocol::Tcp,
                    target: "127.0.0.1:1".into(),
                    resource: String::new(),
                    client: String::new(),
                })
                .is_ok()
            {
                opened_locally += 1;
            }
        }
        let frame = match Frame::decode(&mut buf) {
            Ok(Some(f)) => f,
            _ => break,
        };
        let stream = frame.stream();
        now += Duration::from_millis(u64::from(first >> 1));
        if s.handle(frame, now).is_err() {
            break;
        }
        if stream != 0 {
            let credit = s.take_credit(stream, 4096);
            assert!(credit <= 1 << 31);
            s.consumed(stream, credit, now);
            if step % 5 == 0 {
                let _ = s.finish(stream);
            }
        }
        // `max_streams` bounds what the peer opens; our own opens are ours.
        assert!(s.stream_count() <= 8 + opened_locally);
        while s.poll_transmit().is_some() {}
        if s.tick(now).is_err() {
            break;
        }
    }
});
