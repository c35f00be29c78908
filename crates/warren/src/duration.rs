//! Durations as operators type them on the command line.

/// A duration as operators write it: `500ms`, `30s` (or a bare `30`),
/// `2m`, `1h`. Refuses what it cannot hold rather than wrapping.
pub(crate) fn humantime_duration(s: &str) -> Result<std::time::Duration, String> {
    let refused = || format!("`{s}` is not a duration like 30s, 500ms, 2m or 1h");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| refused())?;
    let secs_per = match unit {
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(refused()),
    };
    n.checked_mul(secs_per)
        .map(std::time::Duration::from_secs)
        .ok_or_else(refused)
}

/// Now, in Unix ms.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A Unix-ms time as RFC 3339 (UTC, seconds).
pub(crate) fn unix_ms_text(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::humantime_duration;
    use std::time::Duration;

    #[test]
    fn durations_as_operators_write_them() {
        assert_eq!(humantime_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(humantime_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(humantime_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(humantime_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "1d", "-1s", "1.5s", "18446744073709551615h"] {
            let e = humantime_duration(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
    }
}
