//! `nft -j` output read back as Warren's table, from arbitrary bytes: an
//! error or a table, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_egress::kernel::KernelTable;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = KernelTable::parse(text);
    }
});
