//! The per-connection IMAP state machine (RFC 3501 §3): not authenticated → authenticated →
//! logout, plus the modes in which a line is not a command (IDLE waiting for `DONE`, SASL
//! exchanges) or no input is taken (a password being verified).
//!
//! A session owns no read buffer while it is idle: bytes are scanned where the driver received
//! them (the worker's scratch buffer), and only the unfinished tail of a command is copied into
//! `pending`, which is released again as soon as it empties. That keeps an idle session at the
//! size of this struct.

use std::io::Write;
use std::mem;
use std::time::Instant;

use super::commands;
use super::condstore::Enabled;
use super::parser::{self, ParseError};
use super::response::{self, CapabilityContext, Status};
use super::scanner::{Frame, Framer, Limits, Rejection};
use super::{CommandName, Limit, Observer};
use std::sync::Arc;

use super::selected::Selected;
use crate::config::{PlaintextAuth, Settings};
use crate::store::{Mailbox, Store};

/// What the session needs from its surroundings while it handles input.
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub observer: &'a mut dyn Observer,
    /// The mail store; handlers move a clone into the [`Work`] they hand out.
    pub store: &'a Arc<Store>,
    /// Whether a TLS certificate is loaded (STARTTLS can be offered, plaintext logins may be
    /// refused).
    pub tls_available: bool,
}

/// What the driver must do after handing input to the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more input.
    NeedInput,
    /// Verify these credentials (slow: off the worker thread), then call
    /// [`Session::finish_auth`] and hand the session empty input to resume pipelined commands.
    Verify(Credentials),
    /// Run this storage work off the worker thread, then call [`Session::finish_work`] with its
    /// result and hand the session empty input to resume pipelined commands.
    Work(Work),
    /// More commands are waiting in the session's buffer, but it answered its share
    /// (`MaxPipelined.1`) for this turn: send what was written, let other sessions run, then
    /// hand the session empty input to go on.
    Yield,
    /// Send what was written (the `OK` to STARTTLS), then run the TLS handshake on the
    /// connection; input already received after the command has been discarded.
    StartTls,
    /// Send what was written (the `OK` to COMPRESS) as it is, then DEFLATE the connection
    /// both ways (RFC 4978); input already received after the command has been discarded.
    Compress,
    /// Write out what was produced, then close the connection.
    Close,
}

/// Storage work of one command, to run on a blocking thread. It owns everything it needs (the
/// mailbox handle, the messages concerned) and touches no session state. Work with a large
/// answer (FETCH) streams it into the sink it is given, which the driver connects to the
/// client's socket after sending everything the session wrote before; the rest of the answer
/// comes back in the [`Done`].
pub struct Work(Box<WorkFn>);

/// The job inside a [`Work`].
type WorkFn = dyn FnOnce(&mut dyn Write) -> Done + Send;

impl Work {
    pub(crate) fn new(job: impl FnOnce() -> Done + Send + 'static) -> Work {
        Work(Box::new(move |_: &mut dyn Write| job()))
    }

    /// Work that writes part of its answer straight to the client.
    pub(crate) fn streaming(job: impl FnOnce(&mut dyn Write) -> Done + Send + 'static) -> Work {
        Work(Box::new(job))
    }

    /// Does the work (blocking: file system access, and writes to `sink`).
    pub fn run(self, sink: &mut dyn Write) -> Done {
        (self.0)(sink)
    }
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Work")
    }
}

/// Two pieces of work are the same only if they are the same allocation.
impl PartialEq for Work {
    fn eq(&self, other: &Work) -> bool {
        std::ptr::addr_eq(&*self.0, &*other.0)
    }
}

impl Eq for Work {}

/// The result of a [`Work`]: applied on the session's own thread, it updates the session (the
/// selected mailbox view) and writes the untagged and tagged answers for `tag`.
pub struct Done(Box<DoneFn>);

/// What a [`Done`] applies: session, command tag, output buffer; returns the command's status.
type DoneFn = dyn FnOnce(&mut Session, &[u8], &mut Vec<u8>) -> Status + Send;

impl Done {
    pub(crate) fn new(
        apply: impl FnOnce(&mut Session, &[u8], &mut Vec<u8>) -> Status + Send + 'static,
    ) -> Done {
        Done(Box::new(apply))
    }
}

/// A user name and password to check.
#[derive(PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The outcome of a credential check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Accepted; the canonical user name.
    Accepted(String),
    /// Wrong user or password.
    Rejected,
    /// The user database could not be read.
    Unavailable,
    /// The credentials are right, but the user already holds `MaxUserIpSessions.1` sessions
    /// from this address and new logins are refused (`UserIpEvict.1`=0).
    Limited,
}

/// A command tag kept across reads (IDLE, SASL, verification), inline for usual lengths so that
/// entering IDLE does not allocate.
#[derive(Clone)]
pub(crate) enum Tag {
    Inline { len: u8, bytes: [u8; 30] },
    Heap(Box<[u8]>),
}

impl Tag {
    pub(crate) fn new(tag: &[u8]) -> Tag {
        if tag.len() <= 30 {
            let mut bytes = [0u8; 30];
            bytes[..tag.len()].copy_from_slice(tag);
            // len <= 30 fits in a u8.
            Tag::Inline {
                len: tag.len() as u8,
                bytes,
            }
        } else {
            Tag::Heap(tag.into())
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Tag::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Tag::Heap(b) => b,
        }
    }
}

/// Where the session is in the RFC 3501 state diagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    NotAuthenticated,
    Authenticated { user: Box<str> },
    Logout,
}

/// What the next complete line means.
pub(crate) enum Mode {
    /// A command.
    Command,
    /// IDLE is running; the line should be `DONE`.
    Idle { tag: Tag },
    /// AUTHENTICATE is waiting for the client's next SASL response.
    Sasl(Box<Sasl>),
    /// A credential check is out; no input is processed until it returns.
    Verifying(Box<Pending>),
    /// Storage work is out; no input is processed until it returns.
    Working(Box<Pending>),
}

// The rare modes are boxed so that every session's slot stays small.

/// An AUTHENTICATE exchange in progress.
pub(crate) struct Sasl {
    pub(crate) tag: Tag,
    pub(crate) step: SaslStep,
}

/// A command waiting for slow work done by the driver (a credential check, storage work).
pub(crate) struct Pending {
    pub(crate) tag: Tag,
    pub(crate) command: CommandName,
    pub(crate) started: Instant,
}

/// The position in a SASL exchange.
pub(crate) enum SaslStep {
    /// PLAIN: waiting for `authzid NUL authcid NUL password`.
    Plain,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of this user.
    LoginPassword { user: String },
}

/// What a command handler decided.
pub(crate) enum Outcome {
    /// The tagged answer is written; count it with this status.
    Done(Status),
    /// The command goes on over more lines (IDLE, SASL); nothing to count yet.
    Waiting,
    /// Check these credentials; the answer is written by [`Session::finish_auth`].
    Verify(Credentials),
    /// Run this storage work; the answer is written by [`Session::finish_work`].
    Work(Work),
    /// The answer is written and the connection closes.
    Close(Status),
    /// The `OK` to STARTTLS is written; TLS starts once it is sent.
    StartTls,
    /// The `OK` to COMPRESS is written; compression starts once it is sent.
    Compress,
}

/// One client connection's protocol state.
pub struct Session {
    pub(crate) state: State,
    pub(crate) mode: Mode,
    /// The selected mailbox (selected state), boxed: most sessions have none or are idle.
    pub(crate) selected: Option<Box<Selected>>,
    framer: Framer,
    /// The unfinished tail of the input; empty (and unallocated) while the session is idle.
    pending: Vec<u8>,
    /// Consecutive commands answered with `BAD` (`MaxBadCommands.1`).
    bad_run: u16,
    /// NOOP/CHECK answered since the driver last asked ([`Session::take_polls`]).
    polls: u16,
    /// The connection is encrypted (IMAPS, or after STARTTLS).
    secure: bool,
    /// The client connects from a loopback address (`PlaintextAuth.1`=1 lets it log in in
    /// the clear).
    loopback: bool,
    /// COMPRESS=DEFLATE is on (or starts once the `OK` is sent).
    compressed: bool,
    /// CONDSTORE/QRESYNC as enabled by the client (RFC 7162), one byte: it fits in the padding
    /// after the flags above, so the slab slot does not grow.
    pub(crate) enabled: Enabled,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A session on an unencrypted loopback connection (tests, benchmarks).
    pub fn new() -> Session {
        Session::on_link(false, true)
    }

    /// A session on a connection that is encrypted (`secure`) or not, from a loopback address
    /// or not.
    pub fn on_link(secure: bool, loopback: bool) -> Session {
        Session {
            state: State::NotAuthenticated,
            mode: Mode::Command,
            selected: None,
            framer: Framer::default(),
            pending: Vec::new(),
            bad_run: 0,
            polls: 0,
            secure,
            loopback,
            compressed: false,
            enabled: Enabled::NONE,
        }
    }

    /// Where the session is, as a bounded metric label: `not_authenticated`, `authenticated`
    /// (no mailbox selected), `selected`, or `idle` (IDLE running).
    pub fn state_label(&self) -> &'static str {
        if self.is_idling() {
            "idle"
        } else if self.user().is_none() {
            "not_authenticated"
        } else if self.selected.is_some() {
            "selected"
        } else {
            "authenticated"
        }
    }

    /// The name of the selected mailbox, if any.
    pub fn selected_mailbox(&self) -> Option<&str> {
        self.selected.as_deref().map(|s| s.mailbox.name())
    }

    /// Whether COMPRESS=DEFLATE is on.
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Whether the connection is encrypted.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Whether a login may be attempted on this connection now: always over TLS and while no
    /// TLS is configured; in the clear as `PlaintextAuth.1` says.
    pub fn login_allowed(&self, ctx: &Context<'_>) -> bool {
        self.secure
            || !ctx.tls_available
            || match ctx.settings.plaintext_auth {
                PlaintextAuth::Always => true,
                PlaintextAuth::Loopback => self.loopback,
                PlaintextAuth::Never => false,
            }
    }

    /// The capabilities before login, for this connection.
    pub fn pre_auth_capabilities(&self, ctx: &Context<'_>) -> CapabilityContext {
        CapabilityContext::PreAuth {
            starttls: ctx.tls_available && !self.secure,
            login: self.login_allowed(ctx),
        }
    }

    /// Whether mailbox names go over the wire as UTF-8 (IMAP4rev2 enabled, RFC 9051 §5.1)
    /// rather than modified UTF-7.
    pub(crate) fn utf8_names(&self) -> bool {
        self.enabled.imap4rev2()
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Authenticated { user } => Some(user),
            _ => None,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// True while an IDLE command runs.
    pub fn is_idling(&self) -> bool {
        matches!(self.mode, Mode::Idle { .. })
    }

    /// The mailbox an IDLE command waits on (IDLE with a mailbox selected).
    pub fn idle_mailbox(&self) -> Option<&Arc<Mailbox>> {
        if self.is_idling() {
            self.selected.as_deref().map(|s| &s.mailbox)
        } else {
            None
        }
    }

    /// During IDLE, reports what changed in the selected mailbox (RFC 2177: expunges too).
    /// Returns when the reported change was made, if anything was reported.
    pub fn idle_push(&mut self, out: &mut Vec<u8>) -> Option<Instant> {
        if !self.is_idling() {
            return None;
        }
        let selected = self.selected.as_deref_mut()?;
        let latest = selected.mailbox.snapshot();
        if selected.is_current(&latest) {
            return None;
        }
        let published = latest.published;
        selected.catch_up(latest, true, &[], self.enabled, out);
        Some(published)
    }

    /// During IDLE, tells a quiet client the connection is alive.
    pub fn keepalive(&self, out: &mut Vec<u8>) {
        if self.is_idling() {
            out.extend_from_slice(b"* OK Still here\r\n");
        }
    }

    /// Ends a session whose client has been silent too long.
    pub fn time_out(&mut self, out: &mut Vec<u8>) {
        self.close_with("Disconnected for inactivity", out);
    }

    /// Ends the session with an untagged `BYE` carrying `text` (eviction, shutdown).
    pub fn close_with(&mut self, text: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"* BYE ");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.state = State::Logout;
    }

    /// NOOP/CHECK commands answered since the last call (for `NOOPRateLimit.1`).
    pub fn take_polls(&mut self) -> u16 {
        mem::take(&mut self.polls)
    }

    /// Bytes held for an unfinished command (0 when idle).
    pub fn buffered(&self) -> usize {
        self.pending.capacity()
    }

    /// The server greeting.
    pub fn greeting(&self, ctx: &Context<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"* OK ");
        response::capability_code(out, ctx.settings, self.pre_auth_capabilities(ctx));
        out.extend_from_slice(b"hato ready.\r\n");
    }

    /// Handles bytes received from the client, writing responses into `out`.
    pub fn on_input(&mut self, input: &[u8], ctx: &mut Context<'_>, out: &mut Vec<u8>) -> Step {
        let step = if self.pending.is_empty() {
            // Fast path: scan the bytes where they are; keep only an unfinished tail.
            let (consumed, step) = self.process(input, ctx, out);
            if consumed < input.len() && self.state != State::Logout {
                self.pending.extend_from_slice(&input[consumed..]);
            }
            step
        } else {
            self.pending.extend_from_slice(input);
            let mut buf = mem::take(&mut self.pending);
            let (consumed, step) = self.process(&buf, ctx, out);
            if consumed < buf.len() && self.state != State::Logout {
                buf.drain(..consumed);
                self.pending = buf;
            }
            // Otherwise `buf` is dropped here: an idle session keeps no buffer.
            step
        };
        if step == Step::StartTls || step == Step::Compress {
            // RFC 3501 §6.2.1 (and the STARTTLS injection fix of RFC 2595 §3.1 era servers):
            // what was pipelined in the clear after STARTTLS is not a command of the TLS
            // session. After COMPRESS the client must wait for the answer (RFC 4978 §3), so
            // anything it sent meanwhile is not compressed data either.
            self.pending = Vec::new();
            return step;
        }
        if self.pending.len() as u64 > self.command_limit(ctx.settings) {
            // One command chaining literals, each within the limit, past any sensible size:
            // its end cannot be found without reading it all, so the connection ends here.
            ctx.observer.limit(Limit::LiteralTooBig);
            self.pending = Vec::new();
            self.close_with("[TOOBIG] Command too big", out);
            return Step::Close;
        }
        step
    }

    /// Handles input as [`Session::on_input`] does, but runs any storage work on this thread
    /// and resumes pipelined commands (also past `MaxPipelined.1`), as the worker would.
    /// For tests, benchmarks and fuzzing: credentials are not checked (a `Verify` step is
    /// returned as it is).
    pub fn on_input_inline(
        &mut self,
        input: &[u8],
        ctx: &mut Context<'_>,
        out: &mut Vec<u8>,
    ) -> Step {
        let mut step = self.on_input(input, ctx, out);
        loop {
            match step {
                Step::Work(work) => {
                    // Streamed answers land after what the session already wrote, as on the
                    // socket.
                    let done = work.run(out);
                    self.finish_work(done, ctx, out);
                }
                Step::Yield => {}
                step => return step,
            }
            step = self.on_input(&[], ctx, out);
        }
    }

    /// The largest literal accepted now. Before login only LOGIN takes literals, and a user
    /// name or password never needs more than a line's worth.
    fn literal_limit(&self, settings: &Settings) -> u64 {
        let max = settings.max_literal_size;
        if self.user().is_some() {
            max
        } else {
            max.min(settings.max_line_length as u64)
        }
    }

    /// The most one unfinished command may hold buffered: one literal at the limit and a line.
    fn command_limit(&self, settings: &Settings) -> u64 {
        self.literal_limit(settings)
            .saturating_add(settings.max_line_length as u64)
    }

    /// Answers the command whose credentials the driver checked.
    pub fn finish_auth(&mut self, verdict: AuthVerdict, ctx: &mut Context<'_>, out: &mut Vec<u8>) {
        let Mode::Verifying(verifying) = mem::replace(&mut self.mode, Mode::Command) else {
            return;
        };
        let Pending {
            tag,
            command,
            started,
        } = *verifying;
        let tag = tag.as_bytes();
        let status = match verdict {
            AuthVerdict::Accepted(user) => {
                self.state = State::Authenticated { user: user.into() };
                out.extend_from_slice(tag);
                out.extend_from_slice(b" OK ");
                response::capability_code(out, ctx.settings, CapabilityContext::Authenticated);
                out.extend_from_slice(b"Logged in\r\n");
                Status::Ok
            }
            AuthVerdict::Rejected => {
                response::tagged(
                    out,
                    tag,
                    Status::No,
                    "[AUTHENTICATIONFAILED] Authentication failed.",
                );
                Status::No
            }
            AuthVerdict::Unavailable => {
                response::tagged(
                    out,
                    tag,
                    Status::No,
                    "[UNAVAILABLE] The user database is unavailable, try again later.",
                );
                Status::No
            }
            AuthVerdict::Limited => {
                response::tagged(
                    out,
                    tag,
                    Status::No,
                    "[LIMIT] Too many sessions for this user from this address.",
                );
                Status::No
            }
        };
        ctx.observer.login(status == Status::Ok);
        self.finished(command, status, started, ctx, out);
    }

    /// Applies the result of the storage work this session handed out, answering its command.
    pub fn finish_work(&mut self, done: Done, ctx: &mut Context<'_>, out: &mut Vec<u8>) {
        let Mode::Working(working) = mem::replace(&mut self.mode, Mode::Command) else {
            return;
        };
        let Pending {
            tag,
            command,
            started,
        } = *working;
        let status = (done.0)(self, tag.as_bytes(), out);
        self.finished(command, status, started, ctx, out);
    }

    /// Counts a finished command, and keeps the tallies the limits need: NOOP/CHECK for the
    /// poll rate, consecutive `BAD`s for `MaxBadCommands.1` (which ends the session).
    fn finished(
        &mut self,
        name: CommandName,
        status: Status,
        started: Instant,
        ctx: &mut Context<'_>,
        out: &mut Vec<u8>,
    ) {
        ctx.observer.command(name, status, started);
        if matches!(name, CommandName::Noop | CommandName::Check) {
            self.polls = self.polls.saturating_add(1);
        }
        if status != Status::Bad {
            self.bad_run = 0;
            return;
        }
        self.bad_run = self.bad_run.saturating_add(1);
        let max = ctx.settings.max_bad_commands;
        if max > 0 && u64::from(self.bad_run) >= max && self.state != State::Logout {
            ctx.observer.limit(Limit::BadCommands);
            self.close_with("Too many invalid commands", out);
        }
    }

    /// Frames and handles as many commands as `buf` holds. Returns how many bytes were used.
    fn process(&mut self, buf: &[u8], ctx: &mut Context<'_>, out: &mut Vec<u8>) -> (usize, Step) {
        let limits = Limits {
            max_line: ctx.settings.max_line_length,
            max_literal: self.literal_limit(ctx.settings),
        };
        let mut pos = 0;
        let mut answered = 0;
        loop {
            if self.state == State::Logout {
                return (pos, Step::Close);
            }
            if matches!(self.mode, Mode::Verifying(_) | Mode::Working(_)) {
                return (pos, Step::NeedInput);
            }
            if answered >= ctx.settings.max_pipelined && pos < buf.len() {
                ctx.observer.limit(Limit::Pipelined);
                return (pos, Step::Yield);
            }
            match self.framer.next_frame(&buf[pos..], &limits) {
                Frame::Incomplete => return (pos, Step::NeedInput),
                Frame::Continue => response::continuation(out, "Ready for literal data"),
                // Nothing left to skip in this input: wait for more (never loop in place).
                Frame::Rejected { consumed: 0, .. } => return (pos, Step::NeedInput),
                Frame::Rejected { consumed, reason } => {
                    self.reject(&buf[pos..pos + consumed], reason, &limits, ctx, out);
                    pos += consumed;
                    answered += 1;
                }
                Frame::Command { len } => {
                    let frame = &buf[pos..pos + len];
                    pos += len;
                    answered += 1;
                    match self.line(frame, ctx, out) {
                        Step::NeedInput => {}
                        step => return (pos, step),
                    }
                }
            }
        }
    }

    /// Handles one complete line (with its literals) according to the mode.
    fn line(&mut self, frame: &[u8], ctx: &mut Context<'_>, out: &mut Vec<u8>) -> Step {
        let started = Instant::now();
        match mem::replace(&mut self.mode, Mode::Command) {
            Mode::Command => self.command(frame, started, ctx, out),
            Mode::Idle { tag } => {
                let status = commands::idle::done(strip_line_end(frame), tag.as_bytes(), out);
                self.finished(CommandName::Idle, status, started, ctx, out);
                Step::NeedInput
            }
            Mode::Sasl(sasl) => {
                let Sasl { tag, step } = *sasl;
                let outcome = commands::auth::sasl_response(
                    self,
                    tag,
                    step,
                    strip_line_end(frame),
                    started,
                    out,
                );
                self.settle(CommandName::Authenticate, None, outcome, started, ctx, out)
            }
            verifying @ (Mode::Verifying(_) | Mode::Working(_)) => {
                // Not reached: process() stops feeding lines while slow work is out.
                self.mode = verifying;
                Step::NeedInput
            }
        }
    }

    fn command(
        &mut self,
        frame: &[u8],
        started: Instant,
        ctx: &mut Context<'_>,
        out: &mut Vec<u8>,
    ) -> Step {
        let command = match parser::parse_command(frame) {
            Ok(command) => command,
            Err((tag, error)) => {
                bad(out, tag, error);
                self.finished(CommandName::Unknown, Status::Bad, started, ctx, out);
                return Step::NeedInput;
            }
        };
        let name = CommandName::parse(command.name);
        // Counted as `UID FETCH` and so on: most of a modern client's traffic is UID commands.
        let counted_as = match name {
            CommandName::Uid => CommandName::uid_form(command.args.rest()),
            other => other,
        };
        let tag = command.tag;
        let outcome = match commands::dispatch(self, name, command, started, ctx, out) {
            Ok(outcome) => outcome,
            Err(error) => {
                bad(out, Some(tag), error);
                Outcome::Done(Status::Bad)
            }
        };
        self.settle(counted_as, Some(tag), outcome, started, ctx, out)
    }

    /// Turns a handler's outcome into the driver's next step, counting finished commands.
    fn settle(
        &mut self,
        name: CommandName,
        tag: Option<&[u8]>,
        outcome: Outcome,
        started: Instant,
        ctx: &mut Context<'_>,
        out: &mut Vec<u8>,
    ) -> Step {
        match outcome {
            Outcome::Done(status) => {
                self.finished(name, status, started, ctx, out);
                Step::NeedInput
            }
            Outcome::Waiting => Step::NeedInput,
            Outcome::Verify(credentials) => Step::Verify(credentials),
            Outcome::Work(work) => {
                // Handlers that hand out work run from `command`, which has the tag.
                let tag = tag.map(Tag::new).unwrap_or_else(|| Tag::new(b"*"));
                self.mode = Mode::Working(Box::new(Pending {
                    tag,
                    command: name,
                    started,
                }));
                Step::Work(work)
            }
            Outcome::Close(status) => {
                ctx.observer.command(name, status, started);
                self.state = State::Logout;
                Step::Close
            }
            Outcome::StartTls => {
                self.finished(name, Status::Ok, started, ctx, out);
                self.secure = true;
                Step::StartTls
            }
            Outcome::Compress => {
                self.finished(name, Status::Ok, started, ctx, out);
                self.compressed = true;
                Step::Compress
            }
        }
    }

    /// Answers input that the framer refused because of a limit.
    fn reject(
        &mut self,
        dropped: &[u8],
        reason: Rejection,
        limits: &Limits,
        ctx: &mut Context<'_>,
        out: &mut Vec<u8>,
    ) {
        let (text, limit) = match reason {
            Rejection::Discarded => return,
            Rejection::LineTooLong => ("Line too long", Limit::LineTooLong),
            Rejection::LiteralTooBig => ("[TOOBIG] Literal too big", Limit::LiteralTooBig),
        };
        ctx.observer.limit(limit);
        // A refused line also ends IDLE or a SASL exchange, whose tag is the one owed.
        let owed = match mem::replace(&mut self.mode, Mode::Command) {
            Mode::Idle { tag } => Some(tag),
            Mode::Sasl(sasl) => Some(sasl.tag),
            _ => None,
        };
        let tag = owed
            .as_ref()
            .map(Tag::as_bytes)
            .or_else(|| parser::recover_tag(dropped));
        let status = if reason == Rejection::LiteralTooBig {
            Status::No
        } else {
            Status::Bad
        };
        match tag {
            Some(tag) => {
                out.extend_from_slice(tag);
                out.push(b' ');
                out.extend_from_slice(status.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(text.as_bytes());
                if reason == Rejection::LineTooLong {
                    out.extend_from_slice(b" (limit ");
                    out.extend_from_slice(limits.max_line.to_string().as_bytes());
                    out.extend_from_slice(b" bytes)");
                }
                out.extend_from_slice(b"\r\n");
            }
            None => response::untagged(out, &format!("BAD {text}")),
        }
        self.finished(CommandName::Unknown, status, Instant::now(), ctx, out);
    }
}

/// Writes a `BAD` for a parse error, tagged when the tag is known.
fn bad(out: &mut Vec<u8>, tag: Option<&[u8]>, error: ParseError) {
    let text = error.to_string();
    match tag {
        Some(tag) => response::tagged(out, tag, Status::Bad, &text),
        None => response::untagged(out, &format!("BAD {text}")),
    }
}

/// The line without its CRLF (or bare LF).
pub(crate) fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::NoObserver;

    /// A store on a directory that is never written: these tests select no mailbox.
    fn store() -> Arc<Store> {
        Arc::new(Store::new(std::path::Path::new(
            "/nonexistent/hato-test-spool",
        )))
    }

    fn feed(session: &mut Session, settings: &Settings, input: &[u8]) -> (Vec<u8>, Step) {
        feed_with(session, settings, input, false)
    }

    /// Like `feed`, on a server with a TLS certificate loaded.
    fn feed_tls(session: &mut Session, settings: &Settings, input: &[u8]) -> (Vec<u8>, Step) {
        feed_with(session, settings, input, true)
    }

    fn feed_with(
        session: &mut Session,
        settings: &Settings,
        input: &[u8],
        tls_available: bool,
    ) -> (Vec<u8>, Step) {
        let mut observer = NoObserver;
        let store = store();
        let mut ctx = Context {
            settings,
            observer: &mut observer,
            store: &store,
            tls_available,
        };
        let mut out = Vec::new();
        let step = session.on_input(input, &mut ctx, &mut out);
        (out, step)
    }

    #[test]
    fn plaintext_login_from_afar_is_refused_while_tls_is_available() {
        let settings = Settings::default();
        let mut remote = Session::on_link(false, false);
        let (out, _) = feed_tls(&mut remote, &settings, b"c CAPABILITY\r\n");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(" STARTTLS LOGINDISABLED"), "{text}");
        assert!(!text.contains("AUTH="), "{text}");
        let (out, step) = feed_tls(&mut remote, &settings, b"l LOGIN joe pw\r\n");
        assert_eq!(step, Step::NeedInput);
        assert!(out.starts_with(b"l NO [PRIVACYREQUIRED]"));
        let (out, _) = feed_tls(&mut remote, &settings, b"a AUTHENTICATE PLAIN\r\n");
        assert!(out.starts_with(b"a NO [PRIVACYREQUIRED]"));
        // Loopback may (PlaintextAuth.1=1), and so may anyone without TLS configured.
        let mut local = Session::on_link(false, true);
        let (_, step) = feed_tls(&mut local, &settings, b"l LOGIN joe pw\r\n");
        assert!(matches!(step, Step::Verify(_)));
        let (_, step) = feed(
            &mut Session::on_link(false, false),
            &settings,
            b"l LOGIN joe pw\r\n",
        );
        assert!(matches!(step, Step::Verify(_)));
        // Over TLS, always; and no STARTTLS offered again.
        let mut secure = Session::on_link(true, false);
        let (out, _) = feed_tls(&mut secure, &settings, b"c CAPABILITY\r\n");
        let text = String::from_utf8_lossy(&out);
        assert!(
            !text.contains("STARTTLS") && text.contains("AUTH=PLAIN"),
            "{text}"
        );
        let (_, step) = feed_tls(&mut secure, &settings, b"l LOGIN joe pw\r\n");
        assert!(matches!(step, Step::Verify(_)));
    }

    #[test]
    fn starttls_discards_what_was_pipelined_behind_it() {
        let settings = Settings::default();
        let mut s = Session::on_link(false, false);
        let (out, step) = feed_tls(&mut s, &settings, b"a STARTTLS\r\nb LOGIN joe pw\r\nc NO");
        assert_eq!(step, Step::StartTls);
        assert_eq!(out, b"a OK Begin TLS negotiation now\r\n");
        assert_eq!(s.buffered(), 0, "the pipelined commands are gone");
        assert!(s.is_secure());
        let (out, _) = feed_tls(&mut s, &settings, b"d STARTTLS\r\n");
        assert_eq!(out, b"d BAD TLS is already active\r\n");
        let (out, _) = feed(&mut Session::new(), &settings, b"e STARTTLS\r\n");
        assert!(out.starts_with(b"e NO [UNAVAILABLE]"));
    }

    fn logged_in(settings: &Settings) -> Session {
        let mut s = Session::new();
        let (_, step) = feed(&mut s, settings, b"a LOGIN joe pw\r\n");
        assert!(matches!(step, Step::Verify(_)));
        let mut observer = NoObserver;
        let store = store();
        let mut ctx = Context {
            settings,
            observer: &mut observer,
            store: &store,
            tls_available: false,
        };
        s.finish_auth(
            AuthVerdict::Accepted("joe".into()),
            &mut ctx,
            &mut Vec::new(),
        );
        s
    }

    #[test]
    fn login_hands_credentials_to_the_driver() {
        let settings = Settings::default();
        let mut s = Session::new();
        let (out, step) = feed(&mut s, &settings, b"a LOGIN \"joe\" {2+}\r\npw\r\n");
        assert!(out.is_empty());
        assert_eq!(
            step,
            Step::Verify(Credentials {
                user: "joe".into(),
                password: b"pw".to_vec()
            })
        );
    }

    #[test]
    fn pipelined_commands_wait_for_the_login() {
        let settings = Settings::default();
        let mut s = Session::new();
        let (_, step) = feed(&mut s, &settings, b"a LOGIN joe pw\r\nb NOOP\r\n");
        assert!(matches!(step, Step::Verify(_)));
        assert!(s.buffered() > 0, "the NOOP waits in pending");
        let mut observer = NoObserver;
        let store = store();
        let mut ctx = Context {
            settings: &settings,
            observer: &mut observer,
            store: &store,
            tls_available: false,
        };
        let mut out = Vec::new();
        s.finish_auth(AuthVerdict::Rejected, &mut ctx, &mut out);
        let step = s.on_input(&[], &mut ctx, &mut out);
        assert_eq!(step, Step::NeedInput);
        assert_eq!(
            out,
            b"a NO [AUTHENTICATIONFAILED] Authentication failed.\r\nb OK NOOP completed\r\n"
        );
        assert_eq!(s.buffered(), 0, "no buffer once idle");
    }

    /// Feeds `chunks` in order, answering every credential check with `Rejected`, and
    /// returns everything the session wrote.
    fn drive(settings: &Settings, chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = Session::new();
        let mut observer = NoObserver;
        let store = store();
        let mut ctx = Context {
            settings,
            observer: &mut observer,
            store: &store,
            tls_available: false,
        };
        let mut out = Vec::new();
        for chunk in chunks {
            let mut step = s.on_input(chunk, &mut ctx, &mut out);
            while let Step::Verify(_) = step {
                s.finish_auth(AuthVerdict::Rejected, &mut ctx, &mut out);
                step = s.on_input(&[], &mut ctx, &mut out);
            }
        }
        assert_eq!(s.buffered(), 0, "nothing left over");
        out
    }

    #[test]
    fn byte_by_byte_input_gives_the_same_answers() {
        let settings = Settings::default();
        let script: &[u8] = b"a CAPABILITY\r\nb ID NIL\r\nc LOGIN {3}\r\nbad pw\r\nd NOOP\r\n\
            e LOGIN x {2+}\r\nyz\r\nf IDLE\r\n";
        let whole = drive(&settings, &[script]);
        let bytes: Vec<&[u8]> = script.chunks(1).collect();
        assert_eq!(drive(&settings, &bytes), whole);
        let text = String::from_utf8_lossy(&whole);
        assert!(text.contains("+ Ready for literal data\r\n"), "{text}");
        assert!(text.contains("c NO [AUTHENTICATIONFAILED]"), "{text}");
        assert!(text.contains("d OK NOOP completed"), "{text}");
        assert!(text.contains("e NO [AUTHENTICATIONFAILED]"), "{text}");
        assert!(text.ends_with("f BAD Log in first\r\n"), "{text}");
    }

    #[test]
    fn idle_and_done_in_the_authenticated_state() {
        let settings = Settings::default();
        let mut s = logged_in(&settings);
        let (out, _) = feed(&mut s, &settings, b"i IDLE\r\n");
        assert_eq!(out, b"+ idling\r\n");
        assert!(s.is_idling());
        let (out, _) = feed(&mut s, &settings, b"DO");
        assert!(out.is_empty());
        let (out, _) = feed(&mut s, &settings, b"NE\r\n");
        assert_eq!(out, b"i OK IDLE terminated\r\n");
        assert!(!s.is_idling());
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn idle_refused_when_idlecmd_is_0() {
        let settings = Settings {
            idle_cmd: false,
            ..Settings::default()
        };
        let mut s = logged_in(&settings);
        let (out, _) = feed(&mut s, &settings, b"i IDLE\r\n");
        assert_eq!(out, b"i BAD IDLE is disabled on this server\r\n");
        let (out, _) = feed(&mut s, &settings, b"c CAPABILITY\r\n");
        assert!(!out.windows(4).any(|w| w == b"IDLE"));
    }

    #[test]
    fn logout_closes_and_drops_the_rest() {
        let settings = Settings::default();
        let mut s = Session::new();
        let (out, step) = feed(&mut s, &settings, b"z LOGOUT\r\ny NOOP\r\n");
        assert_eq!(step, Step::Close);
        assert_eq!(out, b"* BYE Logging out\r\nz OK LOGOUT completed\r\n");
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn chained_literals_past_the_command_limit_are_refused() {
        let settings = Settings {
            max_literal_size: 100,
            max_line_length: 1024,
            ..Settings::default()
        };
        let mut s = logged_in(&settings);
        let (_, step) = feed(&mut s, &settings, b"a APPEND INBOX {100+}\r\n");
        assert_eq!(step, Step::NeedInput);
        let chunk = [b'x'; 100];
        let mut answers = Vec::new();
        // Ends with a literal's bytes, so the line end below ends the command.
        for input in [&chunk[..], b" {100+}\r\n"].iter().cycle().take(39) {
            let (out, step) = feed(&mut s, &settings, input);
            assert_eq!(step, Step::NeedInput, "the session goes on");
            answers.extend_from_slice(&out);
            assert!(
                s.buffered() as u64 <= 2 * (100 + 1024),
                "the command grew without bound"
            );
        }
        // Refused once the whole command passes one literal plus a line (a MULTIAPPEND that
        // big, RFC 3502); the rest of it is swallowed, and the next command is served.
        assert_eq!(answers, b"a NO [TOOBIG] Literal too big\r\n");
        let (out, _) = feed(&mut s, &settings, b"\r\nb NOOP\r\n");
        assert_eq!(out, b"b OK NOOP completed\r\n");
    }

    #[test]
    fn literals_before_login_are_limited_to_a_line() {
        let settings = Settings::default();
        let mut s = Session::new();
        let (out, step) = feed(&mut s, &settings, b"a LOGIN {65537}\r\n");
        assert_eq!(step, Step::NeedInput);
        assert_eq!(out, b"a NO [TOOBIG] Literal too big\r\n");
        let (out, _) = feed(&mut s, &settings, b"b LOGIN {5}\r\n");
        assert_eq!(out, b"+ Ready for literal data\r\n");
    }

    #[test]
    fn tag_kept_inline_or_on_the_heap() {
        assert_eq!(Tag::new(b"a1").as_bytes(), b"a1");
        let long = [b'x'; 64];
        assert_eq!(Tag::new(&long).as_bytes(), &long[..]);
        assert!(matches!(Tag::new(&[b'y'; 30]), Tag::Inline { .. }));
    }
}
