//! Allowlist files from arbitrary text: never panic; what parses re-parses
//! from its own display to the same rules, and permits nothing by accident
//! (an entry's ports are never 0).
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_egress::Allowlist;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(list) = Allowlist::parse_file(text) {
        for rule in list.rules() {
            assert_ne!(*rule.ports.start(), 0);
            assert!(rule.ports.start() <= rule.ports.end());
            let again = Allowlist::parse([rule.to_string().as_str()]).unwrap();
            assert_eq!(again.rules(), std::slice::from_ref(rule));
        }
    }
});
