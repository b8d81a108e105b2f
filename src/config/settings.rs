//! The typed view of every setting and the parsing of raw file text into it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::registry::{SettingDef, SettingId, SettingKind, definitions};

/// Longest raw value quoted back in a problem reason.
const QUOTE_MAX: usize = 40;

/// Typed view of every setting; plain data.
///
/// `Default` is the table's defaults. Fields are documented with the file they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `IDLECmd.1`: IDLE advertised and accepted.
    pub idle_cmd: bool,
    /// `IDLELoop.1` (seconds): interval of the per-worker check of IDLE-watched mailboxes.
    pub idle_loop: Duration,
    /// `IDLETimeout.1` (minutes): a session with no client traffic this long gets `* BYE`.
    pub idle_timeout: Duration,
    /// `Broadcast.1`: push changes to every session with the mailbox selected.
    pub broadcast: bool,
    /// `NOOPPoll.1`: NOOP reports changes (polling only when the generation moved).
    pub noop_poll: bool,
    /// `Workers.1`: worker threads; 0 = number of available cores.
    pub workers: usize,
    /// `ImapListen.1`.
    pub imap_listen: SocketAddr,
    /// `MetricsListen.1`.
    pub metrics_listen: SocketAddr,
    /// `LmtpListen.1`.
    pub lmtp_listen: SocketAddr,
    /// `PasswdFile.1`: `None` = `<spool>/passwd`; see [`Settings::passwd_path`].
    pub passwd_file: Option<PathBuf>,
    /// `MaxLineLength.1` (bytes): longest command line, literals excluded.
    pub max_line_length: usize,
    /// `MaxLiteralSize.1` (bytes): largest literal; larger ones are refused with `NO [TOOBIG]`.
    pub max_literal_size: u64,
    /// `AuthFailDelay.1` (milliseconds): delay before answering a failed login.
    pub auth_fail_delay: Duration,
    /// `PreauthTimeout.1` (seconds): time allowed to log in.
    pub preauth_timeout: Duration,
    /// `IdleKeepalive.1` (seconds): silence during IDLE before `* OK Still here`.
    pub idle_keepalive: Duration,
    /// `IdleTimeoutSeconds.1` (seconds; 0 = use `IDLETimeout.1`).
    pub idle_timeout_seconds: u64,
    /// `MaxSessions.1`: sessions held at once; 0 = as many as the open-file limit allows.
    pub max_sessions: u64,
    /// `MaxUserIpSessions.1`: logged-in sessions per user and client address; 0 = no cap.
    pub max_user_ip_sessions: u64,
    /// `UserIpEvict.1`: at the user+IP cap, close the oldest session (true) or refuse (false).
    pub user_ip_evict: bool,
    /// `NOOPRateLimit.1` (per second): NOOP/CHECK answered without delay; 0 = no limit.
    pub noop_rate_limit: u64,
    /// `MaxBadCommands.1`: consecutive `BAD` answers before `BYE`; 0 = never.
    pub max_bad_commands: u64,
    /// `MaxPipelined.1`: commands answered from one read before the session yields.
    pub max_pipelined: usize,
    /// `AuthThrottleAfter.1`: failed logins from one address before throttling; 0 = off.
    pub auth_throttle_after: u64,
    /// `AuthThrottleMaxDelay.1` (seconds): the longest spacing of a throttled address.
    pub auth_throttle_max_delay: Duration,
    /// `ShutdownGrace.1` (seconds): time sessions get to finish after the shutdown `BYE`.
    pub shutdown_grace: Duration,
    /// `TlsCertificate.1`: PEM chain; `None` = no TLS; see [`Settings::tls_paths`].
    pub tls_certificate: Option<PathBuf>,
    /// `TlsKey.1`: PEM private key; `None` = no TLS.
    pub tls_key: Option<PathBuf>,
    /// `ImapsListen.1`.
    pub imaps_listen: SocketAddr,
    /// `PlaintextAuth.1`: login without TLS while TLS is available.
    pub plaintext_auth: PlaintextAuth,
    /// `RunAsUser.1`: the user to become after binding, when started as root.
    pub run_as_user: Option<String>,
    /// `RunAsGroup.1`: its group (`None`: the user's primary group).
    pub run_as_group: Option<String>,
    /// `ProxyProtocolFrom.1`: peers whose connections must open with a PROXY protocol header
    /// (networks with their host bits cleared); empty = no peer is a proxy.
    pub proxy_protocol_from: Vec<IpNet>,
    /// `DirectorListen.1`: where `hato director` answers nginx's auth_http requests.
    pub director_listen: SocketAddr,
    /// `DirectorNodes.1`: the nodes `hato director` spreads users over, in file order.
    pub director_nodes: Vec<DirectorNode>,
    /// `QuotaStorage.1` (KiB): each user's STORAGE limit; 0 = unlimited.
    pub quota_storage: u64,
    /// `QuotaMessages.1`: each user's MESSAGE limit; 0 = unlimited.
    pub quota_messages: u64,
}

/// One entry of `DirectorNodes.1`: `[name ]ip:port[ down]`.
///
/// The name is what users are hashed against, so a node keeps its users when its address
/// changes; without a name the address text is the name (and a new address moves its users).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorNode {
    /// The explicit name, if the entry has one.
    pub name: Option<String>,
    /// The node's IMAP address, as nginx must reach it (an IP address: nginx does not resolve
    /// names given by auth_http).
    pub addr: SocketAddr,
    /// Marked `down`: its users are told to come back later instead of being moved.
    pub down: bool,
}

impl DirectorNode {
    /// The identity users are hashed against: the name, else the address in canonical text.
    pub fn id(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.addr.to_string(),
        }
    }
}

impl std::fmt::Display for DirectorNode {
    /// The entry in file notation (what [`Settings::apply`] reads back to the same node).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name} ")?;
        }
        write!(f, "{}", self.addr)?;
        if self.down {
            write!(f, " down")?;
        }
        Ok(())
    }
}

/// When a login may be sent in clear text while TLS is available (`PlaintextAuth.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaintextAuth {
    /// 0: never.
    Never,
    /// 1: from a loopback address only (a local webmail, tests).
    Loopback,
    /// 2: always.
    Always,
}

impl Settings {
    /// The time without client traffic after which a session is closed: `IdleTimeoutSeconds.1`
    /// when set, else `IDLETimeout.1`.
    pub fn session_timeout(&self) -> Duration {
        if self.idle_timeout_seconds > 0 {
            Duration::from_secs(self.idle_timeout_seconds)
        } else {
            self.idle_timeout
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            idle_cmd: true,
            idle_loop: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30 * 60),
            broadcast: true,
            noop_poll: true,
            workers: 0,
            imap_listen: SocketAddr::from(([127, 0, 0, 1], 1143)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9143)),
            lmtp_listen: SocketAddr::from(([127, 0, 0, 1], 2424)),
            passwd_file: None,
            max_line_length: 65_536,
            max_literal_size: 52_428_800,
            auth_fail_delay: Duration::from_millis(2000),
            preauth_timeout: Duration::from_secs(60),
            idle_keepalive: Duration::from_secs(120),
            idle_timeout_seconds: 0,
            max_sessions: 0,
            max_user_ip_sessions: 10,
            user_ip_evict: true,
            noop_rate_limit: 20,
            max_bad_commands: 20,
            max_pipelined: 64,
            auth_throttle_after: 5,
            auth_throttle_max_delay: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            tls_certificate: None,
            tls_key: None,
            imaps_listen: SocketAddr::from(([127, 0, 0, 1], 1993)),
            plaintext_auth: PlaintextAuth::Loopback,
            run_as_user: None,
            run_as_group: None,
            proxy_protocol_from: Vec::new(),
            director_listen: SocketAddr::from(([127, 0, 0, 1], 8143)),
            director_nodes: Vec::new(),
            quota_storage: 0,
            quota_messages: 0,
        }
    }
}

/// One setting whose value differs between two snapshots (for logging a reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub def: &'static SettingDef,
    /// The old value, in file notation.
    pub old: String,
    /// The new value, in file notation.
    pub new: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {:?} -> {:?}",
            self.def.file_name(),
            self.old,
            self.new
        )
    }
}

impl Settings {
    /// The certificate and key files, when both are set (relative paths are under the spool).
    pub fn tls_paths(&self, spool: &Path) -> Option<(PathBuf, PathBuf)> {
        match (&self.tls_certificate, &self.tls_key) {
            (Some(cert), Some(key)) => Some((spool.join(cert), spool.join(key))),
            _ => None,
        }
    }

    /// The passwd-file to use: `<spool>/passwd` when `PasswdFile.1` is unset or empty;
    /// a relative `PasswdFile.1` is taken relative to the spool, an absolute one as is.
    pub fn passwd_path(&self, spool: &Path) -> PathBuf {
        match &self.passwd_file {
            Some(p) => spool.join(p),
            None => spool.join("passwd"),
        }
    }

    /// Parse `raw` (the file text; surrounding whitespace, newlines and a UTF-8 BOM tolerated)
    /// as the setting `def` and store it in the matching field. On `Err` (a human-readable
    /// reason) `self` is unchanged.
    pub fn apply(&mut self, def: &SettingDef, raw: &str) -> Result<(), String> {
        let text = trim_value(raw);
        match def.id {
            SettingId::IdleCmd => self.idle_cmd = number(def, text)? == 1,
            SettingId::IdleLoop => self.idle_loop = Duration::from_secs(number(def, text)?),
            SettingId::IdleTimeout => {
                self.idle_timeout = Duration::from_secs(number(def, text)?.saturating_mul(60))
            }
            SettingId::Broadcast => self.broadcast = number(def, text)? == 1,
            SettingId::NoopPoll => self.noop_poll = number(def, text)? == 1,
            SettingId::Workers => self.workers = to_usize(number(def, text)?)?,
            SettingId::ImapListen => self.imap_listen = address(text)?,
            SettingId::MetricsListen => self.metrics_listen = address(text)?,
            SettingId::LmtpListen => self.lmtp_listen = address(text)?,
            SettingId::PasswdFile => self.passwd_file = path(text)?,
            SettingId::MaxLineLength => self.max_line_length = to_usize(number(def, text)?)?,
            SettingId::MaxLiteralSize => self.max_literal_size = number(def, text)?,
            SettingId::AuthFailDelay => {
                self.auth_fail_delay = Duration::from_millis(number(def, text)?)
            }
            SettingId::PreauthTimeout => {
                self.preauth_timeout = Duration::from_secs(number(def, text)?)
            }
            SettingId::IdleKeepalive => {
                self.idle_keepalive = Duration::from_secs(number(def, text)?)
            }
            SettingId::IdleTimeoutSeconds => self.idle_timeout_seconds = number(def, text)?,
            SettingId::MaxSessions => self.max_sessions = number(def, text)?,
            SettingId::MaxUserIpSessions => self.max_user_ip_sessions = number(def, text)?,
            SettingId::UserIpEvict => self.user_ip_evict = number(def, text)? == 1,
            SettingId::NoopRateLimit => self.noop_rate_limit = number(def, text)?,
            SettingId::MaxBadCommands => self.max_bad_commands = number(def, text)?,
            SettingId::MaxPipelined => self.max_pipelined = to_usize(number(def, text)?)?,
            SettingId::AuthThrottleAfter => self.auth_throttle_after = number(def, text)?,
            SettingId::AuthThrottleMaxDelay => {
                self.auth_throttle_max_delay = Duration::from_secs(number(def, text)?)
            }
            SettingId::ShutdownGrace => {
                self.shutdown_grace = Duration::from_secs(number(def, text)?)
            }
            SettingId::TlsCertificate => self.tls_certificate = path(text)?,
            SettingId::TlsKey => self.tls_key = path(text)?,
            SettingId::ImapsListen => self.imaps_listen = address(text)?,
            SettingId::RunAsUser => self.run_as_user = name(text)?,
            SettingId::RunAsGroup => self.run_as_group = name(text)?,
            SettingId::PlaintextAuth => {
                self.plaintext_auth = match number(def, text)? {
                    0 => PlaintextAuth::Never,
                    1 => PlaintextAuth::Loopback,
                    _ => PlaintextAuth::Always,
                }
            }
            SettingId::ProxyProtocolFrom => self.proxy_protocol_from = networks(text)?,
            SettingId::DirectorListen => self.director_listen = address(text)?,
            SettingId::DirectorNodes => self.director_nodes = nodes(text)?,
            SettingId::QuotaStorage => self.quota_storage = number(def, text)?,
            SettingId::QuotaMessages => self.quota_messages = number(def, text)?,
        }
        Ok(())
    }

    /// Copy the field of setting `id` from `from`.
    pub fn copy_field(&mut self, from: &Settings, id: SettingId) {
        match id {
            SettingId::IdleCmd => self.idle_cmd = from.idle_cmd,
            SettingId::IdleLoop => self.idle_loop = from.idle_loop,
            SettingId::IdleTimeout => self.idle_timeout = from.idle_timeout,
            SettingId::Broadcast => self.broadcast = from.broadcast,
            SettingId::NoopPoll => self.noop_poll = from.noop_poll,
            SettingId::Workers => self.workers = from.workers,
            SettingId::ImapListen => self.imap_listen = from.imap_listen,
            SettingId::MetricsListen => self.metrics_listen = from.metrics_listen,
            SettingId::LmtpListen => self.lmtp_listen = from.lmtp_listen,
            SettingId::PasswdFile => self.passwd_file.clone_from(&from.passwd_file),
            SettingId::MaxLineLength => self.max_line_length = from.max_line_length,
            SettingId::MaxLiteralSize => self.max_literal_size = from.max_literal_size,
            SettingId::AuthFailDelay => self.auth_fail_delay = from.auth_fail_delay,
            SettingId::PreauthTimeout => self.preauth_timeout = from.preauth_timeout,
            SettingId::IdleKeepalive => self.idle_keepalive = from.idle_keepalive,
            SettingId::IdleTimeoutSeconds => self.idle_timeout_seconds = from.idle_timeout_seconds,
            SettingId::MaxSessions => self.max_sessions = from.max_sessions,
            SettingId::MaxUserIpSessions => self.max_user_ip_sessions = from.max_user_ip_sessions,
            SettingId::UserIpEvict => self.user_ip_evict = from.user_ip_evict,
            SettingId::NoopRateLimit => self.noop_rate_limit = from.noop_rate_limit,
            SettingId::MaxBadCommands => self.max_bad_commands = from.max_bad_commands,
            SettingId::MaxPipelined => self.max_pipelined = from.max_pipelined,
            SettingId::AuthThrottleAfter => self.auth_throttle_after = from.auth_throttle_after,
            SettingId::AuthThrottleMaxDelay => {
                self.auth_throttle_max_delay = from.auth_throttle_max_delay
            }
            SettingId::ShutdownGrace => self.shutdown_grace = from.shutdown_grace,
            SettingId::TlsCertificate => self.tls_certificate.clone_from(&from.tls_certificate),
            SettingId::TlsKey => self.tls_key.clone_from(&from.tls_key),
            SettingId::ImapsListen => self.imaps_listen = from.imaps_listen,
            SettingId::PlaintextAuth => self.plaintext_auth = from.plaintext_auth,
            SettingId::RunAsUser => self.run_as_user.clone_from(&from.run_as_user),
            SettingId::RunAsGroup => self.run_as_group.clone_from(&from.run_as_group),
            SettingId::ProxyProtocolFrom => self
                .proxy_protocol_from
                .clone_from(&from.proxy_protocol_from),
            SettingId::DirectorListen => self.director_listen = from.director_listen,
            SettingId::DirectorNodes => self.director_nodes.clone_from(&from.director_nodes),
            SettingId::QuotaStorage => self.quota_storage = from.quota_storage,
            SettingId::QuotaMessages => self.quota_messages = from.quota_messages,
        }
    }

    /// The value of one setting in file notation (what `apply` would accept to reproduce it).
    pub fn value_text(&self, id: SettingId) -> String {
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        match id {
            SettingId::IdleCmd => flag(self.idle_cmd),
            SettingId::IdleLoop => self.idle_loop.as_secs().to_string(),
            SettingId::IdleTimeout => (self.idle_timeout.as_secs() / 60).to_string(),
            SettingId::Broadcast => flag(self.broadcast),
            SettingId::NoopPoll => flag(self.noop_poll),
            SettingId::Workers => self.workers.to_string(),
            SettingId::ImapListen => self.imap_listen.to_string(),
            SettingId::MetricsListen => self.metrics_listen.to_string(),
            SettingId::LmtpListen => self.lmtp_listen.to_string(),
            SettingId::PasswdFile => path_text(self.passwd_file.as_deref()),
            SettingId::MaxLineLength => self.max_line_length.to_string(),
            SettingId::MaxLiteralSize => self.max_literal_size.to_string(),
            SettingId::AuthFailDelay => self.auth_fail_delay.as_millis().to_string(),
            SettingId::PreauthTimeout => self.preauth_timeout.as_secs().to_string(),
            SettingId::IdleKeepalive => self.idle_keepalive.as_secs().to_string(),
            SettingId::IdleTimeoutSeconds => self.idle_timeout_seconds.to_string(),
            SettingId::MaxSessions => self.max_sessions.to_string(),
            SettingId::MaxUserIpSessions => self.max_user_ip_sessions.to_string(),
            SettingId::UserIpEvict => flag(self.user_ip_evict),
            SettingId::NoopRateLimit => self.noop_rate_limit.to_string(),
            SettingId::MaxBadCommands => self.max_bad_commands.to_string(),
            SettingId::MaxPipelined => self.max_pipelined.to_string(),
            SettingId::AuthThrottleAfter => self.auth_throttle_after.to_string(),
            SettingId::AuthThrottleMaxDelay => self.auth_throttle_max_delay.as_secs().to_string(),
            SettingId::ShutdownGrace => self.shutdown_grace.as_secs().to_string(),
            SettingId::TlsCertificate => path_text(self.tls_certificate.as_deref()),
            SettingId::TlsKey => path_text(self.tls_key.as_deref()),
            SettingId::ImapsListen => self.imaps_listen.to_string(),
            SettingId::RunAsUser => self.run_as_user.clone().unwrap_or_default(),
            SettingId::RunAsGroup => self.run_as_group.clone().unwrap_or_default(),
            SettingId::PlaintextAuth => match self.plaintext_auth {
                PlaintextAuth::Never => "0",
                PlaintextAuth::Loopback => "1",
                PlaintextAuth::Always => "2",
            }
            .to_string(),
            SettingId::ProxyProtocolFrom => list_text(&self.proxy_protocol_from),
            SettingId::DirectorListen => self.director_listen.to_string(),
            SettingId::DirectorNodes => list_text(&self.director_nodes),
            SettingId::QuotaStorage => self.quota_storage.to_string(),
            SettingId::QuotaMessages => self.quota_messages.to_string(),
        }
    }

    /// The settings whose value differs in `new`, in table order.
    pub fn changes(&self, new: &Settings) -> Vec<Change> {
        definitions()
            .iter()
            .filter_map(|def| {
                let old = self.value_text(def.id);
                let new = new.value_text(def.id);
                (old != new).then_some(Change { def, old, new })
            })
            .collect()
    }
}

/// Strip a leading UTF-8 BOM and surrounding whitespace (including `\r\n`).
pub(crate) fn trim_value(raw: &str) -> &str {
    let t = raw.trim();
    t.strip_prefix('\u{feff}').unwrap_or(t).trim()
}

/// `text` quoted for a reason, shortened when long.
pub(crate) fn quote(text: &str) -> String {
    if text.chars().count() > QUOTE_MAX {
        let short: String = text.chars().take(QUOTE_MAX).collect();
        format!("{short:?}…")
    } else {
        format!("{text:?}")
    }
}

/// A trimmed decimal number within the def's range.
fn number(def: &SettingDef, text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err("empty; expected a decimal number".to_string());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{} is not a decimal number (digits only, no sign)",
            quote(text)
        ));
    }
    let n: u64 = text
        .parse()
        .map_err(|_| format!("{} is too large", quote(text)))?;
    if n < def.min || n > def.max {
        let what = if def.kind == SettingKind::Flag {
            "expected 0 or 1".to_string()
        } else {
            format!("expected {}..={}", def.min, def.max)
        };
        return Err(format!("{n} is out of range; {what}"));
    }
    Ok(n)
}

fn to_usize(n: u64) -> Result<usize, String> {
    usize::try_from(n).map_err(|_| format!("{n} does not fit this platform"))
}

/// Reject what would make a one-line text value ambiguous.
fn one_line(text: &str) -> Result<(), String> {
    if text.chars().any(char::is_control) {
        return Err(format!(
            "{} contains a line break or control character; expected one line",
            quote(text)
        ));
    }
    Ok(())
}

fn address(text: &str) -> Result<SocketAddr, String> {
    if text.is_empty() {
        return Err("empty; expected an address such as 127.0.0.1:1143 or [::1]:1143".to_string());
    }
    one_line(text)?;
    text.parse().map_err(|_| {
        format!(
            "{} is not a socket address (expected e.g. 127.0.0.1:1143 or [::1]:1143)",
            quote(text)
        )
    })
}

fn name(text: &str) -> Result<Option<String>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let valid = text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return Err(format!(
            "{} is not a user or group name (letters, digits, _ - .)",
            quote(text)
        ));
    }
    Ok(Some(text.to_string()))
}

fn path(text: &str) -> Result<Option<PathBuf>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    one_line(text)?;
    Ok(Some(PathBuf::from(text)))
}

/// The non-empty entries of a list setting: separated by commas or line breaks, each trimmed.
fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// A list setting in file notation.
fn list_text<T: std::fmt::Display>(items: &[T]) -> String {
    let texts: Vec<String> = items.iter().map(T::to_string).collect();
    texts.join(", ")
}

/// `ProxyProtocolFrom.1`: IP addresses (a single host) and CIDR networks. Host bits of a
/// network are cleared, so `10.1.2.3/8` reads as `10.0.0.0/8`.
fn networks(text: &str) -> Result<Vec<IpNet>, String> {
    let mut out: Vec<IpNet> = Vec::new();
    for entry in entries(text) {
        let net = match entry.parse::<IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => match entry.parse::<std::net::IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    return Err(format!(
                        "{} is not an IP address or network (expected e.g. 10.0.0.5, 10.0.0.0/24 or fd00::/64)",
                        quote(entry)
                    ));
                }
            },
        };
        if !out.contains(&net) {
            out.push(net);
        }
    }
    Ok(out)
}

/// `DirectorNodes.1`: entries `[name ]ip:port[ down]`; names and addresses must be unique
/// (two entries for one node would give it a double share, two nodes of one name would
/// fight over the same users).
fn nodes(text: &str) -> Result<Vec<DirectorNode>, String> {
    const SYNTAX: &str = "expected `[name ]ip:port[ down]`, e.g. `imap1 10.0.0.11:143`";
    let mut out: Vec<DirectorNode> = Vec::new();
    for entry in entries(text) {
        one_line(entry)?;
        let mut fields: Vec<&str> = entry.split_whitespace().collect();
        let down = fields.last() == Some(&"down");
        if down {
            fields.pop();
        }
        let (name, addr) = match fields.as_slice() {
            [addr] => (None, *addr),
            [name, addr] => (Some(*name), *addr),
            _ => return Err(format!("{}: {SYNTAX}", quote(entry))),
        };
        let addr: SocketAddr = addr.parse().map_err(|_| {
            format!(
                "{}: {} is not an IP address and port; {SYNTAX}",
                quote(entry),
                quote(addr)
            )
        })?;
        if addr.port() == 0 {
            return Err(format!("{}: port 0; {SYNTAX}", quote(entry)));
        }
        if let Some(n) = name {
            let valid = n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(format!(
                    "{}: {} is not a node name (at most 64 letters, digits, _ - .); {SYNTAX}",
                    quote(entry),
                    quote(n)
                ));
            }
        }
        let name = name.map(str::to_string);
        let node = DirectorNode { name, addr, down };
        if let Some(twin) = out
            .iter()
            .find(|o| o.id() == node.id() || o.addr == node.addr)
        {
            return Err(format!(
                "{} and {} name the same node or address; each node once",
                quote(&twin.to_string()),
                quote(entry)
            ));
        }
        out.push(node);
    }
    Ok(out)
}

/// A path setting in file notation (empty when unset).
fn path_text(path: Option<&Path>) -> String {
    path.map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::find;

    fn def(name: &str) -> &'static SettingDef {
        match find(name) {
            Some(d) => d,
            None => panic!("no setting {name}"),
        }
    }

    #[test]
    fn default_matches_table_defaults() {
        let mut s = Settings::default();
        for d in definitions() {
            assert_eq!(s.apply(d, d.default), Ok(()), "{}", d.name);
            assert_eq!(s.value_text(d.id), d.default, "{}", d.name);
        }
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn units_are_converted() {
        let mut s = Settings::default();
        s.apply(def("IDLETimeout"), "2").unwrap();
        assert_eq!(s.idle_timeout, Duration::from_secs(120));
        s.apply(def("IDLELoop"), "7").unwrap();
        assert_eq!(s.idle_loop, Duration::from_secs(7));
        s.apply(def("AuthFailDelay"), "250").unwrap();
        assert_eq!(s.auth_fail_delay, Duration::from_millis(250));
        s.apply(def("PreauthTimeout"), "9").unwrap();
        assert_eq!(s.preauth_timeout, Duration::from_secs(9));
        s.apply(def("MaxLiteralSize"), "4294967295").unwrap();
        assert_eq!(s.max_literal_size, 4_294_967_295);
        s.apply(def("IDLECmd"), "0").unwrap();
        assert!(!s.idle_cmd);
    }

    #[test]
    fn address_parse() {
        let mut s = Settings::default();
        let d = def("ImapListen");
        s.apply(d, " 0.0.0.0:143\r\n").unwrap();
        assert_eq!(s.imap_listen, "0.0.0.0:143".parse().unwrap());
        s.apply(d, "[::1]:993\n").unwrap();
        assert_eq!(s.imap_listen, "[::1]:993".parse().unwrap());
        for bad in [
            "",
            "localhost:143",
            "127.0.0.1",
            "127.0.0.1:99999",
            "::1:143",
            "1.2.3.4:1\n5.6.7.8:2",
        ] {
            let before = s.clone();
            assert!(s.apply(d, bad).is_err(), "{bad:?} accepted");
            assert_eq!(s, before);
        }
    }

    #[test]
    fn passwd_path_rules() {
        let spool = Path::new("/var/spool/hato");
        let mut s = Settings::default();
        assert_eq!(s.passwd_path(spool), spool.join("passwd"));
        s.apply(def("PasswdFile"), "/etc/dovecot/users\n").unwrap();
        assert_eq!(s.passwd_path(spool), PathBuf::from("/etc/dovecot/users"));
        s.apply(def("PasswdFile"), "conf/users").unwrap();
        assert_eq!(s.passwd_path(spool), spool.join("conf/users"));
        s.apply(def("PasswdFile"), "  \n").unwrap();
        assert_eq!(s.passwd_file, None);
        assert!(s.apply(def("PasswdFile"), "a\nb").is_err());
    }

    #[test]
    fn changes_lists_differences() {
        let a = Settings::default();
        let b = Settings {
            broadcast: false,
            idle_loop: Duration::from_secs(10),
            ..Settings::default()
        };
        let c = a.changes(&b);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].def.name, "IDLELoop");
        assert_eq!((c[0].old.as_str(), c[0].new.as_str()), ("5", "10"));
        assert_eq!(c[1].def.name, "Broadcast");
        assert_eq!(c[1].to_string(), "Broadcast.1: \"1\" -> \"0\"");
        assert!(a.changes(&a).is_empty());
    }

    #[test]
    fn proxy_networks_parse() {
        let d = def("ProxyProtocolFrom");
        let mut s = Settings::default();
        s.apply(d, " 127.0.0.1, 10.1.2.3/8\nfd00::/64 ,, ::1\n")
            .unwrap();
        let want: Vec<IpNet> = ["127.0.0.1/32", "10.0.0.0/8", "fd00::/64", "::1/128"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(s.proxy_protocol_from, want);
        assert_eq!(
            s.value_text(SettingId::ProxyProtocolFrom),
            "127.0.0.1/32, 10.0.0.0/8, fd00::/64, ::1/128"
        );
        // The file notation reads back to the same value.
        let mut again = Settings::default();
        again
            .apply(d, &s.value_text(SettingId::ProxyProtocolFrom))
            .unwrap();
        assert_eq!(again, s);
        s.apply(d, "").unwrap();
        assert!(s.proxy_protocol_from.is_empty());
        for bad in [
            "nginx.example",
            "10.0.0.0/33",
            "10.0.0.1 10.0.0.2",
            "127.0.0.1:143",
        ] {
            let before = s.clone();
            assert!(s.apply(d, bad).is_err(), "{bad:?} accepted");
            assert_eq!(s, before);
        }
    }

    #[test]
    fn director_nodes_parse() {
        let d = def("DirectorNodes");
        let mut s = Settings::default();
        s.apply(
            d,
            "imap1 10.0.0.11:143, 10.0.0.12:1143\nimap-3 [fd00::13]:143 down\n",
        )
        .unwrap();
        let nodes = &s.director_nodes;
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].name.as_deref(), Some("imap1"));
        assert_eq!(nodes[0].id(), "imap1");
        assert_eq!(nodes[1].name, None);
        assert_eq!(nodes[1].id(), "10.0.0.12:1143");
        assert!(!nodes[1].down);
        assert_eq!(nodes[2].addr, "[fd00::13]:143".parse().unwrap());
        assert!(nodes[2].down);
        let text = s.value_text(SettingId::DirectorNodes);
        assert_eq!(
            text,
            "imap1 10.0.0.11:143, 10.0.0.12:1143, imap-3 [fd00::13]:143 down"
        );
        let mut again = Settings::default();
        again.apply(d, &text).unwrap();
        assert_eq!(again, s);
        for bad in [
            "imap1 mail.example:143",
            "imap1 10.0.0.1",
            "imap1 10.0.0.1:0",
            "im:ap 10.0.0.1:143",
            "a b 10.0.0.1:143",
            "down",
            "n1 10.0.0.1:143, n1 10.0.0.2:143",
            "n1 10.0.0.1:143, n2 10.0.0.1:143",
            "10.0.0.1:143, 10.0.0.1:143 down",
        ] {
            let before = s.clone();
            assert!(s.apply(d, bad).is_err(), "{bad:?} accepted");
            assert_eq!(s, before);
        }
    }

    #[test]
    fn long_values_are_shortened_in_reasons() {
        let long = "x".repeat(1000);
        let err = Settings::default()
            .apply(def("IDLELoop"), &long)
            .unwrap_err();
        assert!(err.len() < 200, "{err}");
    }
}
