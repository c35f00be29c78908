//! Reconnect delays: exponential backoff with full jitter, after a quick phase.
//!
//! Attempt *n* waits a uniformly random time in `[0, ceiling(n)]` (AWS's
//! "full jitter"), so a fleet of agents that lost the same edge does not come
//! back in lockstep. The ceilings double from `initial`, but stay at
//! [`QUICK_CEILING`] for the first [`QUICK_ATTEMPTS`] attempts (about five
//! seconds): an edge that restarts is back within a second, and its agents
//! should be too (1,000 agents within 2 s, `bench/scale.py`); each retry
//! meanwhile costs a refused TCP connect. Only an edge that stays away
//! longer sees the ceilings grow on to `cap`. A healthy link resets the
//! sequence.

use std::time::Duration;

/// The ceiling of the quick phase.
pub const QUICK_CEILING: Duration = Duration::from_millis(500);
/// Attempts in the quick phase (including the doubling up to its ceiling).
pub const QUICK_ATTEMPTS: u32 = 20;

/// The delay sequence. Pure: the caller supplies the randomness.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `initial`, never exceeds `cap`.
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Backoff {
            initial,
            cap,
            attempt: 0,
        }
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        let doubled = |base: Duration, n: u32| {
            let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
            base.saturating_mul(factor)
        };
        let quick = QUICK_CEILING.max(self.initial);
        if self.attempt < QUICK_ATTEMPTS {
            doubled(self.initial, self.attempt).min(quick).min(self.cap)
        } else {
            doubled(quick, self.attempt - QUICK_ATTEMPTS + 1).min(self.cap)
        }
    }

    /// The next delay, given `unit` uniformly random in `[0, 1)`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Back to the first step (after a healthy link).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_stay_at_a_second_for_a_restart_then_double_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = b.ceiling().as_millis() as u64;
                b.next_delay(0.5);
                c
            })
            .collect();
        assert_eq!(ceilings, [250, 500, 500, 500, 500, 500, 500, 500, 500, 500]);
        for _ in 0..10 {
            assert_eq!(b.ceiling(), Duration::from_millis(500));
            b.next_delay(0.5);
        }
        let later: Vec<u64> = (0..6)
            .map(|_| {
                let c = b.ceiling().as_millis() as u64;
                b.next_delay(0.5);
                c
            })
            .collect();
        assert_eq!(later, [1000, 2000, 4000, 8000, 16000, 30000]);
        for _ in 0..100 {
            b.next_delay(0.9);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(250));
    }

    #[test]
    fn delay_is_within_zero_and_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        assert_eq!(b.next_delay(0.0), Duration::ZERO);
        assert_eq!(b.next_delay(1.0), Duration::from_millis(500));
        assert_eq!(b.next_delay(7.0), Duration::from_millis(500));
    }
}
