//! What a hostile device sends, one packet after another into one stack:
//! never panics, and the tables stay within their bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use warren_netstack::{Inbound, Limits, Stack};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let limits = Limits {
        pending_per_device: 4,
        pending: 8,
        flows_per_device: 2,
        flows: 4,
        ..Limits::default()
    };
    let mut stack = Stack::new(Ipv4Addr::new(100, 96, 0, 1), 16, limits, now);
    // Packets are length-prefixed (one byte) in the input.
    let mut rest = data;
    let mut step = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;
        step += 1;
        let at = now + Duration::from_millis(step * 100);
        match stack.receive(packet, at) {
            // Accept every other one, refuse the rest.
            Inbound::NewTcp(key) if step % 2 == 0 => {
                let _ = stack.accept(key, at);
            }
            Inbound::NewTcp(key) => stack.refuse(key, at),
            Inbound::Echo(_) => {
                let reply = warren_netstack::echo_reply(packet).expect("a ping has a reply");
                assert!(reply.len() <= packet.len(), "a reply larger than its ping");
            }
            _ => {}
        }
        stack.poll(at);
        while stack.transmit().is_some() {}
        stack.reap();
        assert!(stack.flow_count() <= 4);
        assert!(stack.pending_count() <= 8);
    }
});
