//! Admission: who may hold a session, process-wide (one user's sessions from one address land
//! on any worker, so these counts cannot live in a worker).
//!
//! * **Sessions.** The count of open sessions against `MaxSessions.1` (0 = what the open-file
//!   limit allows); a connection over it gets `* BYE [LIMIT]` instead of a session.
//! * **User+IP cap.** The logged-in sessions of each (user, client address), in login order,
//!   against `MaxUserIpSessions.1`. At the cap, with `UserIpEvict.1`=1 (the default) the oldest
//!   of them is closed and the new login works; with 0 the new login gets `NO [LIMIT]`.
//!   Outlook's "stuck synchronizing" came from its new sessions failing while its old ones sat
//!   forgotten, so by default the old one goes.
//! * **Login throttling.** Failed logins per client address ([`LoginFailures`]). Past
//!   `AuthThrottleAfter.1` failures (forgotten after ten quiet minutes), each login attempt from the
//!   address is given a start time spaced after the previous attempt's, doubling per failure
//!   up to `AuthThrottleMaxDelay.1`. Parallel connections from one address queue behind each
//!   other, so opening more connections does not buy more guesses. The wait is a timer on the
//!   worker, never a blocked thread.
//!
//! The locks here are taken at connect, login and close only, never per command.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::auth::throttle::LoginFailures;
use crate::config::Settings;

/// One logged-in session, as the worker that holds it knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) worker: usize,
    /// The session's slab key on its worker.
    pub(crate) key: usize,
    /// Tells the session apart from a later one that reuses the slab key.
    pub(crate) serial: u64,
}

/// The outcome of a login against the user+IP cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Under the cap.
    Admitted,
    /// At the cap: admitted, and this (oldest) session must be closed.
    Evict(Member),
    /// At the cap: refused.
    Refused,
}

/// Logged-in sessions by (user, client address), in login order.
type UserIpTable = HashMap<(Box<str>, IpAddr), Vec<Member>>;

pub(crate) struct Admission {
    /// Sessions the open-file limit allows (used when `MaxSessions.1` is 0).
    capacity: u64,
    open: AtomicU64,
    serials: AtomicU64,
    logged_in: Mutex<UserIpTable>,
    failures: LoginFailures,
}

impl Admission {
    pub(crate) fn new(capacity: u64) -> Admission {
        Admission {
            capacity,
            open: AtomicU64::new(0),
            serials: AtomicU64::new(1),
            logged_in: Mutex::new(HashMap::new()),
            failures: LoginFailures::new(),
        }
    }

    /// The session cap in force: `MaxSessions.1`, or what the open-file limit allows.
    pub(crate) fn cap(&self, settings: &Settings) -> u64 {
        match settings.max_sessions {
            0 => self.capacity,
            n => n,
        }
    }

    /// Takes a session place if one is free; returns the new session's serial.
    pub(crate) fn open(&self, settings: &Settings) -> Option<u64> {
        let max = self.cap(settings);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .ok()?;
        Some(self.serials.fetch_add(1, Ordering::Relaxed))
    }

    /// Gives back the place of a closed session.
    pub(crate) fn close(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Records `member` as logged in as `user` from `ip`, applying the user+IP cap.
    pub(crate) fn login(
        &self,
        user: &str,
        ip: IpAddr,
        member: Member,
        settings: &Settings,
    ) -> Admit {
        let mut table = self.logged_in.lock().unwrap_or_else(|e| e.into_inner());
        let sessions = table.entry((user.into(), ip)).or_default();
        let cap = usize::try_from(settings.max_user_ip_sessions).unwrap_or(usize::MAX);
        if cap == 0 || sessions.len() < cap {
            sessions.push(member);
            return Admit::Admitted;
        }
        if !settings.user_ip_evict {
            return Admit::Refused;
        }
        // Login order: the first is the oldest.
        let oldest = sessions.remove(0);
        sessions.push(member);
        Admit::Evict(oldest)
    }

    /// Forgets a logged-in session (closed, or evicted and closing).
    pub(crate) fn logout(&self, user: &str, ip: IpAddr, member: Member) {
        let mut table = self.logged_in.lock().unwrap_or_else(|e| e.into_inner());
        let key = (Box::<str>::from(user), ip);
        if let Some(sessions) = table.get_mut(&key) {
            sessions.retain(|m| *m != member);
            if sessions.is_empty() {
                table.remove(&key);
            }
        }
    }

    /// How long a login attempt from `ip` must wait before it is checked (zero unless the
    /// address is throttled). Reserves the attempt's start time, so concurrent attempts from
    /// one address are spaced out one after the other.
    pub(crate) fn attempt_delay(&self, ip: IpAddr, settings: &Settings) -> Duration {
        self.failures.queue_attempt(ip, settings, Instant::now())
    }

    /// Records a failed login from `ip`.
    pub(crate) fn failed(&self, ip: IpAddr) {
        self.failures.failed(ip, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(key: usize) -> Member {
        Member {
            worker: 0,
            key,
            serial: key as u64,
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const OTHER_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn sessions_are_capped() {
        let settings = Settings {
            max_sessions: 2,
            ..Settings::default()
        };
        let admission = Admission::new(1000);
        let a = admission.open(&settings).expect("first");
        let b = admission.open(&settings).expect("second");
        assert_ne!(a, b);
        assert_eq!(admission.open(&settings), None);
        admission.close();
        assert!(admission.open(&settings).is_some());
        assert_eq!(admission.open(&settings), None);
    }

    #[test]
    fn user_ip_cap_evicts_the_oldest_or_refuses() {
        let mut settings = Settings {
            max_user_ip_sessions: 2,
            ..Settings::default()
        };
        let admission = Admission::new(0);
        assert_eq!(
            admission.login("joe", IP, member(1), &settings),
            Admit::Admitted
        );
        assert_eq!(
            admission.login("joe", IP, member(2), &settings),
            Admit::Admitted
        );
        // Other users and other addresses have their own counts.
        assert_eq!(
            admission.login("ann", IP, member(3), &settings),
            Admit::Admitted
        );
        assert_eq!(
            admission.login("joe", OTHER_IP, member(4), &settings),
            Admit::Admitted
        );
        assert_eq!(
            admission.login("joe", IP, member(5), &settings),
            Admit::Evict(member(1))
        );
        settings.user_ip_evict = false;
        assert_eq!(
            admission.login("joe", IP, member(6), &settings),
            Admit::Refused
        );
        admission.logout("joe", IP, member(2));
        assert_eq!(
            admission.login("joe", IP, member(6), &settings),
            Admit::Admitted
        );
        settings.max_user_ip_sessions = 0;
        assert_eq!(
            admission.login("joe", IP, member(7), &settings),
            Admit::Admitted
        );
    }

    #[test]
    fn failing_addresses_are_spaced_out() {
        let settings = Settings {
            auth_throttle_after: 2,
            auth_fail_delay: Duration::from_secs(1),
            auth_throttle_max_delay: Duration::from_secs(3),
            ..Settings::default()
        };
        let admission = Admission::new(0);
        assert_eq!(admission.attempt_delay(IP, &settings), Duration::ZERO);
        admission.failed(IP);
        admission.failed(IP);
        // At the threshold: the first attempt goes at once, the next ones queue behind it,
        // each spaced by the doubled delay (capped).
        assert_eq!(admission.attempt_delay(IP, &settings), Duration::ZERO);
        let second = admission.attempt_delay(IP, &settings);
        assert!(second > Duration::from_millis(900), "{second:?}");
        admission.failed(IP);
        let third = admission.attempt_delay(IP, &settings);
        assert!(third > second, "{third:?} after {second:?}");
        assert!(third <= Duration::from_secs(1 + 3), "{third:?}");
        // Another address is not affected.
        assert_eq!(admission.attempt_delay(OTHER_IP, &settings), Duration::ZERO);
        // Off.
        let off = Settings {
            auth_throttle_after: 0,
            ..settings
        };
        assert_eq!(admission.attempt_delay(IP, &off), Duration::ZERO);
    }
}
