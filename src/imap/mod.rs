//! The IMAP protocol, free of I/O.
//!
//! Bytes go in through [`session::Session::on_input`], response bytes come out into a buffer the
//! caller owns, and anything slow (password verification) is handed back to the caller as a
//! [`session::Step`]. This keeps the protocol unit-testable without sockets and lets the driver
//! in [`crate::runtime`] change without touching it.
//!
//! * [`scanner`]: framing of complete commands (lines and literals) with limits.
//! * [`parser`]: tag, command name and lazily parsed arguments, borrowed from the buffer.
//! * [`mailbox_name`]: modified UTF-7 mailbox names to and from UTF-8.
//! * [`response`]: response encoding.
//! * [`session`]: the RFC 3501 state machine.
//! * [`selected`]: a session's view of its selected mailbox (sequence numbers, pending changes).
//! * [`condstore`]: CONDSTORE/QRESYNC (RFC 7162): enabled extensions, modifiers, VANISHED.
//! * [`harness`]: an in-memory driver of a session, for benchmarks and allocation tests.
//! * [`commands`]: one handler per command, grouped by concern.
//! * [`search`], [`sort`], [`thread`], [`base_subject`]: the SEARCH, SORT and THREAD
//!   algorithms, free of protocol glue.

pub mod base_subject;
pub mod commands;
pub mod condstore;
pub mod datetime;
pub mod fetch;
pub mod harness;
pub mod mailbox_name;
pub mod parser;
pub mod response;
pub mod scanner;
pub mod search;
pub mod selected;
pub mod sequence;
pub mod session;
pub mod sort;
pub mod thread;

use std::time::Instant;

pub use response::Status;

macro_rules! command_names {
    ($($variant:ident => $wire:literal),* $(,)?) => {
        /// Every command name hato knows, used for dispatch and as a bounded metric label.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum CommandName {
            $($variant,)*
            /// Anything else (answered with `BAD`).
            Unknown,
        }

        impl CommandName {
            /// All names, `Unknown` last; the index of a name is `name as usize`.
            pub const ALL: &'static [CommandName] = &[$(CommandName::$variant,)* CommandName::Unknown];

            /// Case-insensitive lookup of a command name as sent by the client.
            pub fn parse(name: &[u8]) -> CommandName {
                $(if name.eq_ignore_ascii_case($wire.as_bytes()) { return CommandName::$variant; })*
                CommandName::Unknown
            }

            /// The name in upper case as on the wire (`unknown` for unknown commands).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(CommandName::$variant => $wire,)*
                    CommandName::Unknown => "unknown",
                }
            }
        }
    };
}

command_names! {
    Capability => "CAPABILITY",
    Noop => "NOOP",
    Logout => "LOGOUT",
    Login => "LOGIN",
    Authenticate => "AUTHENTICATE",
    Starttls => "STARTTLS",
    Id => "ID",
    Enable => "ENABLE",
    Idle => "IDLE",
    Select => "SELECT",
    Examine => "EXAMINE",
    Create => "CREATE",
    Delete => "DELETE",
    Rename => "RENAME",
    Subscribe => "SUBSCRIBE",
    Unsubscribe => "UNSUBSCRIBE",
    List => "LIST",
    Lsub => "LSUB",
    Namespace => "NAMESPACE",
    Status => "STATUS",
    Append => "APPEND",
    Check => "CHECK",
    Close => "CLOSE",
    Unselect => "UNSELECT",
    Expunge => "EXPUNGE",
    Search => "SEARCH",
    Fetch => "FETCH",
    Store => "STORE",
    Copy => "COPY",
    Move => "MOVE",
    Uid => "UID",
    Compress => "COMPRESS",
    Getquota => "GETQUOTA",
    Getquotaroot => "GETQUOTAROOT",
    Sort => "SORT",
    Thread => "THREAD",
    // UID forms, told apart for the metrics only (dispatch sees `Uid`); never parsed from the
    // wire as one atom.
    UidFetch => "UID FETCH",
    UidStore => "UID STORE",
    UidSearch => "UID SEARCH",
    UidCopy => "UID COPY",
    UidMove => "UID MOVE",
    UidExpunge => "UID EXPUNGE",
    UidSort => "UID SORT",
    UidThread => "UID THREAD",
}

impl CommandName {
    /// The UID form named by the arguments of a `UID` command (`Uid` for anything else).
    pub fn uid_form(args: &[u8]) -> CommandName {
        let word = args
            .split(|&b| b == b' ')
            .find(|w| !w.is_empty())
            .unwrap_or(b"");
        let form = [
            (&b"FETCH"[..], CommandName::UidFetch),
            (b"STORE", CommandName::UidStore),
            (b"SEARCH", CommandName::UidSearch),
            (b"COPY", CommandName::UidCopy),
            (b"MOVE", CommandName::UidMove),
            (b"EXPUNGE", CommandName::UidExpunge),
            (b"SORT", CommandName::UidSort),
            (b"THREAD", CommandName::UidThread),
        ];
        form.iter()
            .find(|(w, _)| word.eq_ignore_ascii_case(w))
            .map_or(CommandName::Uid, |(_, name)| *name)
    }
}

/// Receives what the session did, for metrics. The runtime implements it with pre-registered
/// metric handles (atomic increments, no lookups); tests and benchmarks use [`NoObserver`].
pub trait Observer {
    /// A command finished with `status`; `started` is when its last input line arrived.
    fn command(&mut self, name: CommandName, status: Status, started: Instant);
    /// A login attempt (LOGIN or AUTHENTICATE) finished.
    fn login(&mut self, success: bool);
    /// A NOOP with a mailbox selected was answered.
    fn noop(&mut self, outcome: NoopOutcome);
    /// A protective limit was hit.
    fn limit(&mut self, limit: Limit);
}

/// The protective limits (a bounded metric label). The session hits the protocol ones; the
/// runtime the ones about connections, logins and pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A command line over `MaxLineLength.1` (`BAD`).
    LineTooLong,
    /// A literal over `MaxLiteralSize.1` (`NO [TOOBIG]`).
    LiteralTooBig,
    /// `MaxBadCommands.1` consecutive `BAD` answers (`BYE`).
    BadCommands,
    /// More than `MaxPipelined.1` commands in one read (the rest wait a turn).
    Pipelined,
    /// NOOP/CHECK faster than `NOOPRateLimit.1` (answers delayed).
    NoopRate,
    /// No login within `PreauthTimeout.1` (`BYE`).
    PreauthTimeout,
    /// `MaxSessions.1` reached (`BYE [LIMIT]` at connect).
    Sessions,
    /// `MaxUserIpSessions.1` reached and the oldest session closed (`UserIpEvict.1`=1).
    UserIpEvicted,
    /// `MaxUserIpSessions.1` reached and the login refused (`UserIpEvict.1`=0).
    UserIpRefused,
    /// A login attempt held back because its address failed too often (`AuthThrottleAfter.1`).
    AuthThrottled,
}

impl Limit {
    /// Every limit; the index of a limit is `limit as usize`.
    pub const ALL: [Limit; 10] = [
        Limit::LineTooLong,
        Limit::LiteralTooBig,
        Limit::BadCommands,
        Limit::Pipelined,
        Limit::NoopRate,
        Limit::PreauthTimeout,
        Limit::Sessions,
        Limit::UserIpEvicted,
        Limit::UserIpRefused,
        Limit::AuthThrottled,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Limit::LineTooLong => "line_length",
            Limit::LiteralTooBig => "literal_size",
            Limit::BadCommands => "bad_commands",
            Limit::Pipelined => "pipelined",
            Limit::NoopRate => "noop_rate",
            Limit::PreauthTimeout => "preauth_timeout",
            Limit::Sessions => "sessions",
            Limit::UserIpEvicted => "user_ip_evicted",
            Limit::UserIpRefused => "user_ip_refused",
            Limit::AuthThrottled => "auth_throttled",
        }
    }
}

/// What a NOOP with a mailbox selected did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoopOutcome {
    /// Nothing changed since the client was last told: answered from two pointers.
    Unchanged,
    /// Changes were reported.
    Changed,
    /// `NOOPPoll.1` is 0: NOOP does not look at the mailbox.
    Disabled,
}

/// An observer that records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn command(&mut self, _: CommandName, _: Status, _: Instant) {}
    fn login(&mut self, _: bool) {}
    fn noop(&mut self, _: NoopOutcome) {}
    fn limit(&mut self, _: Limit) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (i, name) in CommandName::ALL.iter().enumerate() {
            assert_eq!(*name as usize, i);
            if *name != CommandName::Unknown {
                assert_eq!(
                    CommandName::parse(name.as_str().to_ascii_lowercase().as_bytes()),
                    *name
                );
            }
        }
        assert_eq!(CommandName::parse(b"XYZZY"), CommandName::Unknown);
        assert_eq!(
            CommandName::uid_form(b"fetch 1:* FLAGS"),
            CommandName::UidFetch
        );
        assert_eq!(CommandName::uid_form(b"EXPUNGE 4"), CommandName::UidExpunge);
        assert_eq!(CommandName::uid_form(b"FROB 1"), CommandName::Uid);
        assert_eq!(
            CommandName::uid_form(b"sort (DATE) UTF-8 ALL"),
            CommandName::UidSort
        );
        assert_eq!(
            CommandName::uid_form(b"THREAD REFERENCES UTF-8 ALL"),
            CommandName::UidThread
        );
    }

    #[test]
    fn limits_index_their_table() {
        for (i, limit) in Limit::ALL.iter().enumerate() {
            assert_eq!(*limit as usize, i);
        }
    }
}
