//! Login throttling per client address, for the director.
//!
//! The policy is the one the IMAP workers apply (`runtime::admission`): past
//! `AuthThrottleAfter.1` failed logins from an address (forgotten after ten quiet minutes),
//! its attempts are spaced out, starting at `AuthFailDelay.1` (at least a second) and doubling
//! per failure up to `AuthThrottleMaxDelay.1`.
//!
//! What differs is how the wait is served. A worker sleeps on a timer before checking; the
//! director answers nginx at once with `Auth-Status: WAIT` and the time to wait, and nginx
//! asks again when that time is up (nginx's auth_http protocol supports exactly this). No
//! director thread is held by a throttled address, however many connections it opens. So the
//! table keeps, per address, when its next password check may run: the first request at or
//! after that time takes the slot (and sets the next one); the others are told to wait.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::Settings;

/// How long an address's failures are remembered after its last one (as in the workers).
const FAILURE_MEMORY: Duration = Duration::from_secs(600);

/// Addresses tracked before forgotten ones are swept out.
const SWEEP_AT: usize = 65_536;

struct Failures {
    count: u32,
    last: Instant,
    /// When the next password check for this address may run.
    next_check: Instant,
}

/// Failed logins by client address.
#[derive(Default)]
pub struct Throttle {
    table: Mutex<HashMap<IpAddr, Failures>>,
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle::default()
    }

    /// Whether a login from `ip` may be checked at `now`: `None` to check it (the address's
    /// check slot is taken), or how long the address must wait first.
    pub fn admit(&self, ip: IpAddr, settings: &Settings, now: Instant) -> Option<Duration> {
        if settings.auth_throttle_after == 0 {
            return None;
        }
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = table.get_mut(&ip)?;
        if now.saturating_duration_since(entry.last) >= FAILURE_MEMORY {
            table.remove(&ip);
            return None;
        }
        let count = u64::from(entry.count);
        if count < settings.auth_throttle_after {
            return None;
        }
        if now < entry.next_check {
            return Some(entry.next_check - now);
        }
        entry.next_check = now + spacing(count - settings.auth_throttle_after, settings);
        None
    }

    /// Records a failed login from `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.len() >= SWEEP_AT {
            table.retain(|_, f| now.saturating_duration_since(f.last) < FAILURE_MEMORY);
        }
        let entry = table.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            next_check: now,
        });
        if now.saturating_duration_since(entry.last) >= FAILURE_MEMORY {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }
}

/// The spacing of checks `over` failures past the free ones: the failure delay (at least a
/// second) doubled per failure, up to the maximum. The same formula as the workers'.
fn spacing(over: u64, settings: &Settings) -> Duration {
    let base = settings.auth_fail_delay.max(Duration::from_secs(1));
    let doubled = base.saturating_mul(1u32 << over.min(20));
    doubled.min(settings.auth_throttle_max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 8));

    fn settings() -> Settings {
        Settings {
            auth_throttle_after: 2,
            auth_fail_delay: Duration::from_secs(1),
            auth_throttle_max_delay: Duration::from_secs(4),
            ..Settings::default()
        }
    }

    #[test]
    fn free_failures_then_spaced_checks() {
        let s = settings();
        let t = Throttle::new();
        let t0 = Instant::now();
        assert_eq!(t.admit(IP, &s, t0), None);
        t.failed(IP, t0);
        assert_eq!(t.admit(IP, &s, t0), None);
        t.failed(IP, t0);
        // At the threshold: one check now, the next one a second later.
        assert_eq!(t.admit(IP, &s, t0), None);
        assert_eq!(t.admit(IP, &s, t0), Some(Duration::from_secs(1)));
        let half = t0 + Duration::from_millis(500);
        assert_eq!(t.admit(IP, &s, half), Some(Duration::from_millis(500)));
        // Coming back when told to works, and takes the slot.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(t.admit(IP, &s, t1), None);
        assert!(t.admit(IP, &s, t1).is_some());
        // Another address is not affected.
        assert_eq!(t.admit(OTHER, &s, t1), None);
    }

    #[test]
    fn spacing_doubles_up_to_the_maximum() {
        let s = settings();
        let t = Throttle::new();
        let t0 = Instant::now();
        for _ in 0..5 {
            t.failed(IP, t0);
        }
        assert_eq!(t.admit(IP, &s, t0), None);
        // 5 failures, 3 past the free ones: 1 s doubled three times, capped at 4 s.
        assert_eq!(t.admit(IP, &s, t0), Some(Duration::from_secs(4)));
    }

    #[test]
    fn failures_are_forgotten_and_off_means_off() {
        let s = settings();
        let t = Throttle::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            t.failed(IP, t0);
        }
        assert_eq!(t.admit(IP, &s, t0), None);
        assert!(t.admit(IP, &s, t0).is_some());
        let off = Settings {
            auth_throttle_after: 0,
            ..settings()
        };
        assert_eq!(t.admit(IP, &off, t0), None);
        let later = t0 + FAILURE_MEMORY;
        assert_eq!(t.admit(IP, &s, later), None);
        assert_eq!(t.admit(IP, &s, later), None);
    }
}
