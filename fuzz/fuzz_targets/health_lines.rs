//! The health stream's line framing (both sides): arbitrary bytes, cut at
//! arbitrary points, give the same lines as uncut, never hold more than the
//! limit plus one push, and a line over the limit always fails.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_proto::health::Lines;

const MAX: usize = 64;

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, cuts) = input;
    let whole = lines_of(&data, &[]);
    let cut = lines_of(&data, &cuts);
    assert_eq!(whole, cut);
    // The model: a line (the bytes between newlines) longer than MAX fails.
    let too_long = data.split(|&b| b == b'\n').any(|l| l.len() > MAX);
    assert_eq!(whole.is_err(), too_long);
});

fn lines_of(data: &[u8], cuts: &[u8]) -> Result<Vec<Vec<u8>>, ()> {
    let mut l = Lines::new(MAX);
    let mut out = Vec::new();
    let mut rest = data;
    let mut cuts = cuts.iter().map(|&c| usize::from(c).max(1));
    while !rest.is_empty() {
        let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
        l.push(&rest[..n]).map_err(|_| ())?;
        assert!(l.held() <= MAX + 1 + n, "held {}", l.held());
        out.extend(std::iter::from_fn(|| l.next_line()));
        rest = &rest[n..];
    }
    Ok(out)
}
