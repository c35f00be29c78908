//! Brute-force limits on sign-in, per source and per account, in memory
//! and bounded.
//!
//! * A source (an IPv4 address, an IPv6 /64) may try [`PER_SOURCE`] times
//!   per [`WINDOW`]; beyond, refused without checking anything.
//! * An account that failed [`FREE_FAILURES`] times in a row is locked for
//!   [`FIRST_LOCK`], doubling with each further failure up to [`MAX_LOCK`];
//!   a success clears it. The lock is per account, whatever the source, so
//!   many sources cannot guess one password faster.
//! * Each table holds at most [`MAX_ENTRIES`]. Sources: when full, stale
//!   entries go first, and if none is stale a new source is refused (sign-in
//!   slows for everyone rather than the edge growing without bound).
//!   Accounts: callers count failures only for accounts that exist (so made-up
//!   emails cannot fill the table and switch the lockout off), and when full
//!   the longest-idle unlocked entry makes room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);
pub const PER_SOURCE: u32 = 30;
pub const FREE_FAILURES: u32 = 5;
pub const FIRST_LOCK: Duration = Duration::from_secs(60);
pub const MAX_LOCK: Duration = Duration::from_secs(3600);
pub const MAX_ENTRIES: usize = 10_000;

/// Why an attempt was refused before any check.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// This source tried too often; retry after this long.
    Source(Duration),
    /// This account is locked; retry after this long.
    Account(Duration),
}

struct Window {
    start: Instant,
    count: u32,
}

struct Failures {
    count: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

/// The two tables.
#[derive(Default)]
pub struct Limits {
    sources: Mutex<HashMap<IpAddr, Window>>,
    accounts: Mutex<HashMap<String, Failures>>,
}

/// The key of a source: an IPv4 address, or an IPv6 address's /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Limits {
    /// Counts an attempt from `ip` on `account`; refused if either is over
    /// its limit at `now`.
    pub fn attempt(&self, ip: IpAddr, account: &str, now: Instant) -> Result<(), Refused> {
        {
            let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = accounts.get(account) {
                if let Some(until) = f.locked_until.filter(|u| *u > now) {
                    return Err(Refused::Account(until - now));
                }
            }
        }
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let key = source_key(ip);
        if !sources.contains_key(&key) && sources.len() >= MAX_ENTRIES {
            sources.retain(|_, w| now.duration_since(w.start) < WINDOW);
            if sources.len() >= MAX_ENTRIES {
                return Err(Refused::Source(WINDOW));
            }
        }
        let w = sources.entry(key).or_insert(Window {
            start: now,
            count: 0,
        });
        if now.duration_since(w.start) >= WINDOW {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        if w.count >= PER_SOURCE {
            return Err(Refused::Source(
                WINDOW.saturating_sub(now.duration_since(w.start)),
            ));
        }
        w.count += 1;
        Ok(())
    }

    /// A wrong password for `account` (one that exists: see the module docs).
    pub fn failed(&self, account: &str, now: Instant) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if !accounts.contains_key(account) && accounts.len() >= MAX_ENTRIES {
            accounts.retain(|_, f| {
                f.locked_until.is_some_and(|u| u > now) || now.duration_since(f.last) < MAX_LOCK
            });
            if accounts.len() >= MAX_ENTRIES {
                let idle = accounts
                    .iter()
                    .filter(|(_, f)| f.locked_until.is_none_or(|u| u <= now))
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone());
                match idle {
                    Some(k) => {
                        accounts.remove(&k);
                    }
                    None => return,
                }
            }
        }
        let f = accounts.entry(account.to_owned()).or_insert(Failures {
            count: 0,
            locked_until: None,
            last: now,
        });
        f.count += 1;
        f.last = now;
        if f.count >= FREE_FAILURES {
            let doublings = (f.count - FREE_FAILURES).min(6);
            let lock = (FIRST_LOCK * 2u32.pow(doublings)).min(MAX_LOCK);
            f.locked_until = Some(now + lock);
        }
    }

    /// A right password for `account`: its failures are forgotten.
    pub fn succeeded(&self, account: &str) {
        self.accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_quota_per_window() {
        let l = Limits::default();
        let t = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..PER_SOURCE {
            assert!(l.attempt(ip, &format!("a{i}"), t).is_ok());
        }
        assert!(matches!(l.attempt(ip, "b", t), Err(Refused::Source(_))));
        // Another address of the same /64 is the same source.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2".parse().unwrap();
        for _ in 0..PER_SOURCE {
            l.attempt(v6a, "c", t).unwrap();
        }
        assert!(l.attempt(v6b, "c", t).is_err());
        assert!(l.attempt(ip, "b", t + WINDOW).is_ok(), "a new window");
    }

    #[test]
    fn a_full_account_table_makes_room_and_keeps_counting() {
        let l = Limits::default();
        let t = Instant::now();
        for i in 0..MAX_ENTRIES {
            l.failed(&format!("u{i}@corp.com"), t);
        }
        // A real account's failures still count, and lock it.
        for _ in 0..FREE_FAILURES {
            l.failed("alice@corp.com", t + Duration::from_secs(1));
        }
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(matches!(
            l.attempt(ip, "alice@corp.com", t + Duration::from_secs(1)),
            Err(Refused::Account(_))
        ));
        assert!(l.accounts.lock().unwrap().len() <= MAX_ENTRIES);
    }

    #[test]
    fn an_account_locks_after_its_free_failures_from_any_source() {
        let l = Limits::default();
        let t = Instant::now();
        for i in 0..FREE_FAILURES {
            let ip = IpAddr::from([192, 0, 2, i as u8]);
            l.attempt(ip, "alice@corp.com", t).unwrap();
            l.failed("alice@corp.com", t);
        }
        let other: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(
            l.attempt(other, "alice@corp.com", t),
            Err(Refused::Account(FIRST_LOCK))
        );
        assert!(l.attempt(other, "alice@corp.com", t + FIRST_LOCK).is_ok());
        l.failed("alice@corp.com", t + FIRST_LOCK);
        assert_eq!(
            l.attempt(other, "alice@corp.com", t + FIRST_LOCK),
            Err(Refused::Account(FIRST_LOCK * 2)),
            "doubling"
        );
        l.succeeded("alice@corp.com");
        assert!(l.attempt(other, "alice@corp.com", t + FIRST_LOCK).is_ok());
    }
}
