//! The table of settings: one static entry per file of the reg tree.
//!
//! This table is the single source of truth for names, kinds, defaults, units, ranges and
//! meanings. Parsing ([`Settings::apply`](super::Settings::apply)), `hato reg list|get|set`,
//! validation and the documentation are all driven from it.

/// The suffix E-Post puts on every setting file (`IDLELoop` lives in `IDLELoop.1`).
pub const FILE_SUFFIX: &str = ".1";

/// What a setting file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SettingKind {
    /// A decimal `0` (off) or `1` (on).
    Flag,
    /// A decimal number of [`SettingDef::unit`] within `min..=max`.
    Number,
    /// One line of text: an IP socket address such as `127.0.0.1:1143` or `[::1]:1143`.
    SocketAddr,
    /// One line of text: a filesystem path; empty means the built-in default.
    Path,
    /// A user or group name (letters, digits, `_`, `-`, `.`); empty means none.
    Name,
    /// A list whose entries are separated by commas or line breaks; empty means none.
    List,
}

impl SettingKind {
    /// Short lowercase name, for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            SettingKind::Flag => "flag",
            SettingKind::Number => "number",
            SettingKind::SocketAddr => "address",
            SettingKind::Path => "path",
            SettingKind::Name => "name",
            SettingKind::List => "list",
        }
    }

    /// Whether the file holds a decimal number (flags and numbers).
    pub fn is_numeric(self) -> bool {
        matches!(self, SettingKind::Flag | SettingKind::Number)
    }
}

/// Identifies a setting independently of its spelling; used to map a table entry to its field
/// in [`Settings`](super::Settings).
/// The variants are in table order: `definitions()[id as usize].id == id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SettingId {
    IdleCmd,
    IdleLoop,
    IdleTimeout,
    Broadcast,
    NoopPoll,
    Workers,
    ImapListen,
    MetricsListen,
    LmtpListen,
    PasswdFile,
    MaxLineLength,
    MaxLiteralSize,
    AuthFailDelay,
    PreauthTimeout,
    IdleKeepalive,
    IdleTimeoutSeconds,
    MaxSessions,
    MaxUserIpSessions,
    UserIpEvict,
    NoopRateLimit,
    MaxBadCommands,
    MaxPipelined,
    AuthThrottleAfter,
    AuthThrottleMaxDelay,
    ShutdownGrace,
    TlsCertificate,
    TlsKey,
    ImapsListen,
    PlaintextAuth,
    RunAsUser,
    RunAsGroup,
    ProxyProtocolFrom,
    DirectorListen,
    DirectorNodes,
    QuotaStorage,
    QuotaMessages,
}

/// One setting of the reg tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDef {
    /// The name exactly as E-Post spells it, without the `.1` suffix (matched case-sensitively).
    pub name: &'static str,
    /// Which field of [`Settings`](super::Settings) this is.
    pub id: SettingId,
    /// What the file holds.
    pub kind: SettingKind,
    /// The value used when the file is missing, as it would be written in the file.
    pub default: &'static str,
    /// Unit of a number (`seconds`, `bytes`, …); empty when there is none.
    pub unit: &'static str,
    /// Smallest accepted value (flags and numbers only; 0 otherwise).
    pub min: u64,
    /// Largest accepted value (flags and numbers only; 0 otherwise).
    pub max: u64,
    /// One-line meaning.
    pub meaning: &'static str,
}

impl SettingDef {
    /// The file name in the tree: `<name>.1`.
    pub fn file_name(&self) -> String {
        format!("{}{}", self.name, FILE_SUFFIX)
    }

    /// `Some((min, max))` for flags and numbers, `None` for text settings.
    pub fn range(&self) -> Option<(u64, u64)> {
        self.kind.is_numeric().then_some((self.min, self.max))
    }

    /// Check a raw file text (surrounding whitespace tolerated) without applying it.
    /// `Err` carries a human-readable reason.
    pub fn validate(&self, raw: &str) -> Result<(), String> {
        super::Settings::default().apply(self, raw)
    }
}

const fn flag(
    name: &'static str,
    id: SettingId,
    default: &'static str,
    meaning: &'static str,
) -> SettingDef {
    SettingDef {
        name,
        id,
        kind: SettingKind::Flag,
        default,
        unit: "",
        min: 0,
        max: 1,
        meaning,
    }
}

const fn number(
    name: &'static str,
    id: SettingId,
    default: &'static str,
    unit: &'static str,
    min: u64,
    max: u64,
    meaning: &'static str,
) -> SettingDef {
    SettingDef {
        name,
        id,
        kind: SettingKind::Number,
        default,
        unit,
        min,
        max,
        meaning,
    }
}

const fn text(
    name: &'static str,
    id: SettingId,
    kind: SettingKind,
    default: &'static str,
    meaning: &'static str,
) -> SettingDef {
    SettingDef {
        name,
        id,
        kind,
        default,
        unit: "",
        min: 0,
        max: 0,
        meaning,
    }
}

static DEFINITIONS: [SettingDef; 36] = [
    flag(
        "IDLECmd",
        SettingId::IdleCmd,
        "1",
        "0: IDLE is not advertised and is refused; 1: IDLE works",
    ),
    number(
        "IDLELoop",
        SettingId::IdleLoop,
        "5",
        "seconds",
        1,
        3600,
        "how often a worker checks IDLE-watched mailboxes for changes that were not pushed",
    ),
    number(
        "IDLETimeout",
        SettingId::IdleTimeout,
        "30",
        "minutes",
        1,
        1440,
        "a session with no client traffic this long is closed with BYE",
    ),
    flag(
        "Broadcast",
        SettingId::Broadcast,
        "1",
        "1: changes are pushed to every session with the mailbox selected; 0: no push",
    ),
    flag(
        "NOOPPoll",
        SettingId::NoopPoll,
        "1",
        "1: NOOP reports changes (polls only when the generation moved); 0: NOOP never polls",
    ),
    number(
        "Workers",
        SettingId::Workers,
        "0",
        "threads",
        0,
        1024,
        "worker threads, one per core; 0 = number of available cores",
    ),
    text(
        "ImapListen",
        SettingId::ImapListen,
        SettingKind::SocketAddr,
        "127.0.0.1:1143",
        "IMAP listen address (each worker binds it with SO_REUSEPORT)",
    ),
    text(
        "MetricsListen",
        SettingId::MetricsListen,
        SettingKind::SocketAddr,
        "127.0.0.1:9143",
        "Prometheus /metrics listener address",
    ),
    text(
        "LmtpListen",
        SettingId::LmtpListen,
        SettingKind::SocketAddr,
        "127.0.0.1:2424",
        "LMTP listener address",
    ),
    text(
        "PasswdFile",
        SettingId::PasswdFile,
        SettingKind::Path,
        "",
        "Dovecot-format passwd-file (empty = <spool>/passwd; relative = under the spool)",
    ),
    number(
        "MaxLineLength",
        SettingId::MaxLineLength,
        "65536",
        "bytes",
        1024,
        16_777_216,
        "longest command line accepted (literals excluded)",
    ),
    number(
        "MaxLiteralSize",
        SettingId::MaxLiteralSize,
        "52428800",
        "bytes",
        1,
        4_294_967_295,
        "largest literal accepted; a larger one gets NO [TOOBIG]",
    ),
    number(
        "AuthFailDelay",
        SettingId::AuthFailDelay,
        "2000",
        "milliseconds",
        0,
        60_000,
        "delay before answering a failed login",
    ),
    number(
        "PreauthTimeout",
        SettingId::PreauthTimeout,
        "60",
        "seconds",
        1,
        3600,
        "a connection that has not logged in within this time is closed",
    ),
    number(
        "IdleKeepalive",
        SettingId::IdleKeepalive,
        "120",
        "seconds",
        1,
        3600,
        "during IDLE, `* OK Still here` after this much silence, so NAT boxes keep the connection",
    ),
    number(
        "IdleTimeoutSeconds",
        SettingId::IdleTimeoutSeconds,
        "0",
        "seconds",
        0,
        86_400,
        "if not 0, replaces IDLETimeout.1 with a time in seconds (for tests and fine tuning)",
    ),
    number(
        "MaxSessions",
        SettingId::MaxSessions,
        "0",
        "sessions",
        0,
        100_000_000,
        "sessions the process accepts at once (more get `* BYE [LIMIT]`); 0 = the open-file limit",
    ),
    number(
        "MaxUserIpSessions",
        SettingId::MaxUserIpSessions,
        "10",
        "sessions",
        0,
        1_000_000,
        "logged-in sessions one user may hold from one IP address; 0 = no cap",
    ),
    flag(
        "UserIpEvict",
        SettingId::UserIpEvict,
        "1",
        "at the user+IP cap, 1: the user+IP's oldest session is closed so the new login works; 0: the new login gets NO [LIMIT]",
    ),
    number(
        "NOOPRateLimit",
        SettingId::NoopRateLimit,
        "20",
        "per second",
        0,
        1_000_000,
        "NOOP/CHECK per second one session is answered at without delay; faster pollers are slowed to this rate; 0 = off",
    ),
    number(
        "MaxBadCommands",
        SettingId::MaxBadCommands,
        "20",
        "commands",
        0,
        1_000_000,
        "consecutive BAD answers after which the session is closed with BYE; 0 = never",
    ),
    number(
        "MaxPipelined",
        SettingId::MaxPipelined,
        "64",
        "commands",
        1,
        1_000_000,
        "commands answered from one read before the answers are sent and other sessions get a turn",
    ),
    number(
        "AuthThrottleAfter",
        SettingId::AuthThrottleAfter,
        "5",
        "failures",
        0,
        1_000_000,
        "failed logins from one IP address (forgotten after 10 quiet minutes) before its login attempts are spaced out; 0 = off",
    ),
    number(
        "AuthThrottleMaxDelay",
        SettingId::AuthThrottleMaxDelay,
        "30",
        "seconds",
        1,
        3600,
        "longest spacing between login attempts from a throttled IP address (it doubles per failure up to this)",
    ),
    number(
        "ShutdownGrace",
        SettingId::ShutdownGrace,
        "10",
        "seconds",
        0,
        3600,
        "on SIGTERM/SIGINT, how long sessions may finish the command in progress after `* BYE`",
    ),
    text(
        "TlsCertificate",
        SettingId::TlsCertificate,
        SettingKind::Path,
        "",
        "PEM certificate chain for IMAPS and STARTTLS (empty = no TLS; relative = under the spool)",
    ),
    text(
        "TlsKey",
        SettingId::TlsKey,
        SettingKind::Path,
        "",
        "PEM private key of TlsCertificate.1 (empty = no TLS; relative = under the spool)",
    ),
    text(
        "ImapsListen",
        SettingId::ImapsListen,
        SettingKind::SocketAddr,
        "127.0.0.1:1993",
        "IMAPS (implicit TLS) listen address; bound only when a certificate is configured",
    ),
    number(
        "PlaintextAuth",
        SettingId::PlaintextAuth,
        "1",
        "mode",
        0,
        2,
        "login without TLS while TLS is available, 0: never; 1: from loopback only; 2: always",
    ),
    text(
        "RunAsUser",
        SettingId::RunAsUser,
        SettingKind::Name,
        "",
        "started as root: the user hato becomes once its ports are bound (empty = stay as started)",
    ),
    text(
        "RunAsGroup",
        SettingId::RunAsGroup,
        SettingKind::Name,
        "",
        "with RunAsUser.1: the group (empty = the user's primary group)",
    ),
    text(
        "ProxyProtocolFrom",
        SettingId::ProxyProtocolFrom,
        SettingKind::List,
        "",
        "proxies (IPs or CIDR networks, comma-separated) whose connections must start with a PROXY protocol v1/v2 header; the client address in it counts instead of theirs (empty = none)",
    ),
    text(
        "DirectorListen",
        SettingId::DirectorListen,
        SettingKind::SocketAddr,
        "127.0.0.1:8143",
        "hato director: the address nginx's auth_http requests are answered on",
    ),
    text(
        "DirectorNodes",
        SettingId::DirectorNodes,
        SettingKind::List,
        "",
        "hato director: the IMAP nodes users are spread over, comma-separated `[name ]ip:port[ down]`; each user is owned by one (rendezvous hashing on the name)",
    ),
    number(
        "QuotaStorage",
        SettingId::QuotaStorage,
        "0",
        "KiB",
        0,
        1 << 40,
        "STORAGE quota of each user over all folders, in KiB (1024 bytes, the unit IMAP QUOTA reports); a write over it gets NO [OVERQUOTA] / LMTP 552; 0 = unlimited; a passwd-file quota_rule overrides it per user",
    ),
    number(
        "QuotaMessages",
        SettingId::QuotaMessages,
        "0",
        "messages",
        0,
        4_294_967_295,
        "MESSAGE quota of each user: messages over all folders; 0 = unlimited; a passwd-file quota_rule overrides it per user",
    ),
];

/// Every known setting, in table order (the order of `hato reg list`).
pub fn definitions() -> &'static [SettingDef] {
    &DEFINITIONS
}

/// Find a setting by its exact (case-sensitive) name, with or without the `.1` suffix:
/// `find("IDLELoop")` and `find("IDLELoop.1")` are the same entry; `find("idleloop")` is `None`.
pub fn find(name: &str) -> Option<&'static SettingDef> {
    let bare = name.strip_suffix(FILE_SUFFIX).unwrap_or(name);
    DEFINITIONS.iter().find(|d| d.name == bare)
}

/// The table entry for an id.
pub fn def_of(id: SettingId) -> &'static SettingDef {
    // The table is in `SettingId` declaration order (checked by a test).
    &DEFINITIONS[id as usize]
}

/// For a name that is not known: the known name it probably meant (case-insensitive match,
/// or a missing/extra `.1`), spelled as a file name.
pub fn suggest(name: &str) -> Option<String> {
    let bare = name.strip_suffix(FILE_SUFFIX).unwrap_or(name);
    DEFINITIONS
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(bare))
        .map(SettingDef::file_name)
}
