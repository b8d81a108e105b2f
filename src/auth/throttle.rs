//! Failed logins per client address, and the spacing of attempts they earn: past
//! `AuthThrottleAfter.1` failures (forgotten after [`FAILURE_MEMORY`] without one), attempts
//! from the address are spaced out, starting at `AuthFailDelay.1` (at least a second) and
//! doubling per failure up to `AuthThrottleMaxDelay.1`.
//!
//! One policy, served two ways:
//! * the IMAP workers *queue* attempts ([`LoginFailures::queue_attempt`]): each attempt gets a
//!   start time after the previous one's and waits on a timer, so parallel connections from an
//!   address line up behind each other and more connections buy no more guesses;
//! * `hato director` answers nginx at once ([`LoginFailures::try_attempt`]): the attempt that
//!   finds the address's slot free takes it, the others are told how long to wait
//!   (`Auth-Status: WAIT`), and nginx asks again then; no thread waits for them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::Settings;

/// How long an address's failed logins are remembered after its last failure.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(600);

/// Addresses tracked before forgotten ones are swept out.
const SWEEP_AT: usize = 65_536;

/// Failed logins from one address.
struct Failures {
    count: u32,
    last: Instant,
    /// When the next attempt from the address may start.
    next: Instant,
}

/// Failed logins by client address (process-wide; locked only at login).
#[derive(Default)]
pub struct LoginFailures {
    table: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginFailures {
    pub fn new() -> LoginFailures {
        LoginFailures::default()
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
            next: now,
        });
        if now.saturating_duration_since(entry.last) >= FAILURE_MEMORY {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// How long an attempt from `ip` must wait before it is checked (zero unless the address
    /// is throttled). Reserves the attempt's start time, so concurrent attempts from one
    /// address are spaced out one after the other.
    pub fn queue_attempt(&self, ip: IpAddr, settings: &Settings, now: Instant) -> Duration {
        self.throttled(ip, settings, now, |entry, spacing| {
            let start = entry.next.max(now);
            entry.next = start + spacing;
            start - now
        })
        .unwrap_or(Duration::ZERO)
    }

    /// Whether an attempt from `ip` may be checked at `now`: `None` to check it (the address's
    /// slot is taken until the next one is due), or how long the address must wait first.
    pub fn try_attempt(&self, ip: IpAddr, settings: &Settings, now: Instant) -> Option<Duration> {
        self.throttled(ip, settings, now, |entry, spacing| {
            if now < entry.next {
                return Some(entry.next - now);
            }
            entry.next = now + spacing;
            None
        })
        .flatten()
    }

    /// Runs `decide` on the entry of `ip` with the spacing its failures earn, if the address
    /// is throttled at all; forgets the entry when its failures are old.
    fn throttled<R>(
        &self,
        ip: IpAddr,
        settings: &Settings,
        now: Instant,
        decide: impl FnOnce(&mut Failures, Duration) -> R,
    ) -> Option<R> {
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
        Some(decide(
            entry,
            spacing(count - settings.auth_throttle_after, settings),
        ))
    }
}

/// The spacing of attempts `over` failures past the free ones: the failure delay (at least a
/// second) doubled per failure, up to the maximum.
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
    fn queued_attempts_line_up() {
        let s = settings();
        let t = LoginFailures::new();
        let t0 = Instant::now();
        assert_eq!(t.queue_attempt(IP, &s, t0), Duration::ZERO);
        t.failed(IP, t0);
        t.failed(IP, t0);
        // At the threshold: the first attempt starts now, the next two queue behind it.
        assert_eq!(t.queue_attempt(IP, &s, t0), Duration::ZERO);
        assert_eq!(t.queue_attempt(IP, &s, t0), Duration::from_secs(1));
        assert_eq!(t.queue_attempt(IP, &s, t0), Duration::from_secs(2));
        assert_eq!(t.queue_attempt(OTHER, &s, t0), Duration::ZERO);
    }

    #[test]
    fn free_failures_then_spaced_checks() {
        let s = settings();
        let t = LoginFailures::new();
        let t0 = Instant::now();
        assert_eq!(t.try_attempt(IP, &s, t0), None);
        t.failed(IP, t0);
        assert_eq!(t.try_attempt(IP, &s, t0), None);
        t.failed(IP, t0);
        // At the threshold: one check now, the next one a second later.
        assert_eq!(t.try_attempt(IP, &s, t0), None);
        assert_eq!(t.try_attempt(IP, &s, t0), Some(Duration::from_secs(1)));
        let half = t0 + Duration::from_millis(500);
        assert_eq!(
            t.try_attempt(IP, &s, half),
            Some(Duration::from_millis(500))
        );
        // Coming back when told to works, and takes the slot.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(t.try_attempt(IP, &s, t1), None);
        assert!(t.try_attempt(IP, &s, t1).is_some());
        // Another address is not affected.
        assert_eq!(t.try_attempt(OTHER, &s, t1), None);
    }

    #[test]
    fn spacing_doubles_up_to_the_maximum() {
        let s = settings();
        let t = LoginFailures::new();
        let t0 = Instant::now();
        for _ in 0..5 {
            t.failed(IP, t0);
        }
        assert_eq!(t.try_attempt(IP, &s, t0), None);
        // 5 failures, 3 past the free ones: 1 s doubled three times, capped at 4 s.
        assert_eq!(t.try_attempt(IP, &s, t0), Some(Duration::from_secs(4)));
    }

    #[test]
    fn failures_are_forgotten_and_off_means_off() {
        let s = settings();
        let t = LoginFailures::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            t.failed(IP, t0);
        }
        assert_eq!(t.try_attempt(IP, &s, t0), None);
        assert!(t.try_attempt(IP, &s, t0).is_some());
        let off = Settings {
            auth_throttle_after: 0,
            ..settings()
        };
        assert_eq!(t.try_attempt(IP, &off, t0), None);
        assert_eq!(t.queue_attempt(IP, &off, t0), Duration::ZERO);
        let later = t0 + FAILURE_MEMORY;
        assert_eq!(t.try_attempt(IP, &s, later), None);
        assert_eq!(t.try_attempt(IP, &s, later), None);
    }
}
