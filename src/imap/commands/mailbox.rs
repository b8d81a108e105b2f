//! Commands on mailboxes as a whole: SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE,
//! UNSUBSCRIBE, LIST, LSUB, STATUS, NAMESPACE.
//!
//! Each parses its arguments on the worker thread and hands the file-system part to a [`Work`]
//! that runs on a blocking thread; the [`Done`] it returns writes the answer.

use std::sync::Arc;

use super::super::condstore;
use super::super::mailbox_name;
use super::super::parser::{Args, ParseError, Token};
use super::super::response::{self, Status};
use super::super::selected::{Selected, write_flag_fetch};
use super::super::session::{Context, Done, Outcome, Session, Work};
use crate::store::flags::SYSTEM_FLAGS;
use crate::store::{Index, MailboxInfo, SpecialUse, Store, StoreError, UserMail};

/// The hierarchy separator on the wire (Maildir++ folders are `.Parent.Child`).
pub const SEPARATOR: char = '.';

/// Reads a mailbox name argument: modified UTF-7, or UTF-8 when `utf8` (an IMAP4rev2
/// session, RFC 9051 §5.1; see [`Session::utf8_names`]).
pub(crate) fn mailbox_arg(args: &mut Args<'_>, utf8: bool) -> Result<String, ParseError> {
    let raw = args.astring()?;
    decode_name(&raw, utf8)
}

/// Decodes a wire name (see [`mailbox_arg`]); the BAD text says which form was expected.
pub(crate) fn decode_name(raw: &[u8], utf8: bool) -> Result<String, ParseError> {
    mailbox_name::from_wire(raw, utf8)
        .map(|name| name.into_owned())
        .map_err(|_| {
            if utf8 {
                ParseError::BadUtf8MailboxName
            } else {
                ParseError::BadMailboxName
            }
        })
}

/// Writes a mailbox name for the wire as an IMAP string: modified UTF-7, or UTF-8 when
/// `utf8` (an IMAP4rev2 session).
pub(crate) fn write_mailbox_name(name: &str, utf8: bool, out: &mut Vec<u8>) {
    if utf8 {
        response::utf8_string(out, name);
    } else {
        response::string(out, mailbox_name::encode(name).as_bytes());
    }
}

/// Answers a failed storage operation with the response code that fits (RFC 5530).
pub(crate) fn store_failure(error: &StoreError, tag: &[u8], out: &mut Vec<u8>) -> Status {
    let code = error.response_code();
    let text = match error {
        StoreError::Io { .. } | StoreError::Corrupt { .. } | StoreError::InvalidUser(_) => {
            tracing::warn!("storage failure: {error}");
            format!("[{code}] Internal error, see the server log")
        }
        // Response text is 7-bit (RFC 3501 §9): names go back as the client spells them, in
        // modified UTF-7.
        _ => format!(
            "[{code}] {}",
            crate::imap::mailbox_name::encode(&error.to_string())
        ),
    };
    response::tagged(out, tag, Status::No, &text);
    Status::No
}

/// Builds the work that runs `job` on the user's mail, off the worker thread.
pub(crate) fn with_mail<T: Send + 'static>(
    session: &Session,
    ctx: &Context<'_>,
    job: impl FnOnce(&UserMail) -> Result<T, StoreError> + Send + 'static,
    answer: impl FnOnce(&mut Session, T, &[u8], &mut Vec<u8>) -> Status + Send + 'static,
) -> Outcome {
    let store: Arc<Store> = ctx.store.clone();
    let user = session.user().unwrap_or_default().to_string();
    Outcome::Work(Work::new(move || {
        let result = store.user(&user).and_then(|mail| job(&mail));
        Done::new(move |session, tag, out| match result {
            Ok(value) => answer(session, value, tag, out),
            Err(error) => store_failure(&error, tag, out),
        })
    }))
}

/// SELECT and EXAMINE, with the RFC 7162 parameters: `(CONDSTORE)` (§3.1.8) and
/// `(QRESYNC (uidvalidity modseq [known-uids] [seq-match-data]))` (§3.2.5), which needs
/// `ENABLE QRESYNC` first (§3.2.3: else BAD).
pub(crate) fn select(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
    read_only: bool,
) -> Result<Outcome, ParseError> {
    let name = mailbox_arg(args, session.utf8_names())?;
    let params = condstore::parse_select_params(args)?;
    args.finish()?;
    if params.qresync.is_some() && !session.enabled.qresync() {
        response::tagged(out, tag, Status::Bad, "QRESYNC needs ENABLE QRESYNC first");
        return Ok(Outcome::Done(Status::Bad));
    }
    // Both parameters are CONDSTORE enabling commands (§3.1).
    if params.condstore || params.qresync.is_some() {
        session.enabled.enable_condstore();
    }
    // RFC 3501: SELECT and EXAMINE leave the current mailbox even when they fail. RFC 7162
    // §3.2.11: a server offering CONDSTORE/QRESYNC marks that with [CLOSED], whatever the
    // client enabled, so that the client knows which mailbox later responses are about.
    if session.selected.take().is_some() {
        out.extend_from_slice(b"* OK [CLOSED] Previous mailbox closed\r\n");
    }
    let qresync = params.qresync;
    Ok(with_mail(
        session,
        ctx,
        move |mail| {
            let mailbox = mail.open(&name)?;
            let sync = mailbox.sync()?;
            Ok((mailbox, sync))
        },
        move |session, (mailbox, sync), tag, out| {
            let index = sync.index;
            let keywords = mailbox.keywords();
            let rev2 = session.enabled.imap4rev2();
            // RFC 9051 Appendix E: no `\Recent` in IMAP4rev2. The messages this sync moved out
            // of new/ are then not \Recent for anyone, as with Dovecot.
            let recent = if rev2 { Vec::new() } else { sync.recent };
            let view = Selected::new(mailbox, read_only, index.clone(), recent);
            out.extend_from_slice(b"* FLAGS (");
            write_flag_names(&keywords, out);
            out.extend_from_slice(b")\r\n* OK [PERMANENTFLAGS (");
            if !read_only {
                write_flag_names(&keywords, out);
                out.extend_from_slice(b" \\*");
            }
            out.extend_from_slice(b")] Flags permitted\r\n");
            out.extend_from_slice(format!("* {} EXISTS\r\n", view.exists()).as_bytes());
            if rev2 {
                // RFC 9051 §6.3.2: a LIST response with the mailbox name (in UTF-8), which
                // replaces the RECENT and UNSEEN responses of RFC 3501. No attributes: they are
                // optional here, and an empty list never contradicts a later LIST.
                out.extend_from_slice(b"* LIST () \".\" ");
                write_mailbox_name(view.mailbox.name(), true, out);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(format!("* {} RECENT\r\n", view.recent_count()).as_bytes());
            }
            if let Some(first) = index
                .messages
                .iter()
                .position(|m| !m.flags.has(crate::store::flags::SEEN))
                .filter(|_| !rev2)
            {
                out.extend_from_slice(
                    format!("* OK [UNSEEN {}] First unseen\r\n", first + 1).as_bytes(),
                );
            }
            out.extend_from_slice(
                format!(
                    "* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] Predicted next UID\r\n",
                    index.uid_validity, index.uid_next
                )
                .as_bytes(),
            );
            // RFC 7162 §3.1.2.1: once CONDSTORE is enabled (this command may have done it).
            if session.enabled.condstore() {
                out.extend_from_slice(
                    format!(
                        "* OK [HIGHESTMODSEQ {}] Highest mailbox mod-sequence\r\n",
                        index.highest_modseq
                    )
                    .as_bytes(),
                );
            }
            // §3.2.5.1: a UIDVALIDITY that does not match makes it a plain SELECT.
            if let Some(q) = qresync.filter(|q| q.uid_validity == index.uid_validity) {
                write_resync(&view, &index, &q, &keywords, out);
            }
            let (code, verb) = if read_only {
                ("[READ-ONLY]", "EXAMINE")
            } else {
                ("[READ-WRITE]", "SELECT")
            };
            response::tagged(out, tag, Status::Ok, &format!("{code} {verb} completed"));
            session.selected = Some(Box::new(view));
            Status::Ok
        },
    ))
}

/// The resynchronisation part of a SELECT/EXAMINE (QRESYNC ...) answer (RFC 7162 §3.2.5.1),
/// as if the client had sent `UID FETCH <known-uids> (FLAGS) (CHANGEDSINCE <modseq>
/// VANISHED)`: `* VANISHED (EARLIER)` with the known UIDs expunged since `modseq`, then
/// `* n FETCH (UID u FLAGS (...) MODSEQ (m))` for the known messages changed since (added ones
/// too: they changed after `modseq`). `view` is fresh from `index`.
///
/// A mod-sequence above HIGHESTMODSEQ comes from another history (a folder migrated from
/// another server): then every known message is sent and VANISHED lists every known UID that is
/// not in the folder (see [`condstore`] for this and for seq-match-data).
fn write_resync(
    view: &Selected,
    index: &Index,
    q: &condstore::Qresync,
    keywords: &[String],
    out: &mut Vec<u8>,
) {
    // UIDs from UIDNEXT on were never given out: the client cannot know them.
    let last_uid = index.uid_next.saturating_sub(1);
    let within: Vec<(u32, u32)> = match &q.known_uids {
        Some(set) => condstore::uid_ranges(set, last_uid),
        None if last_uid == 0 => Vec::new(),
        None => vec![(1, last_uid)],
    };
    let floor = q.seq_match.as_ref().map_or(0, |(seqs, uids)| {
        condstore::seq_match_floor(index, seqs, uids)
    });
    let vanished = condstore::vanished_earlier(index, q.modseq, &within, floor);
    condstore::write_vanished_ranges(true, &vanished, out);
    let since = if q.modseq > index.highest_modseq {
        0
    } else {
        q.modseq
    };
    for m in index.changed_since(since) {
        if q.known_uids.is_some() && !condstore::in_ranges(&within, m.uid) {
            continue;
        }
        let Some(msn) = view.msn_of(m.uid) else {
            continue;
        };
        write_flag_fetch(
            out,
            msn as usize,
            m.uid,
            Some((m.flags, keywords, view.is_recent(m.uid))),
            Some(m.modseq),
        );
    }
}

/// `\Answered \Flagged \Deleted \Seen \Draft` and the mailbox's keywords.
fn write_flag_names(keywords: &[String], out: &mut Vec<u8>) {
    let mut first = true;
    for (_, name, _) in SYSTEM_FLAGS {
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(name.as_bytes());
    }
    for keyword in keywords {
        out.push(b' ');
        out.extend_from_slice(keyword.as_bytes());
    }
}

/// DELETE, SUBSCRIBE, UNSUBSCRIBE: one name, a plain OK.
pub(crate) fn simple(
    session: &Session,
    args: &mut Args<'_>,
    ctx: &Context<'_>,
    verb: &'static str,
    op: fn(&UserMail, &str) -> Result<(), StoreError>,
) -> Result<Outcome, ParseError> {
    let name = mailbox_arg(args, session.utf8_names())?;
    args.finish()?;
    Ok(with_mail(
        session,
        ctx,
        move |mail| op(mail, &name),
        move |_, (), tag, out| {
            response::tagged(out, tag, Status::Ok, &format!("{verb} completed"));
            Status::Ok
        },
    ))
}

/// The special use named by a CREATE `USE` attribute, if this server keeps it (RFC 6154 §2
/// lists `\All` and `\Flagged` too: virtual mailboxes, which a Maildir cannot be).
fn special_use_named(attribute: &[u8]) -> Option<SpecialUse> {
    SpecialUse::ALL
        .into_iter()
        .find(|s| s.attribute().as_bytes().eq_ignore_ascii_case(attribute))
}

/// Reads CREATE's optional `SP "(" create-param *(SP create-param) ")"` (RFC 4466 §2.2), of
/// which this server knows `USE (use-attr ...)` (RFC 6154 §3). Returns the USE attributes as
/// given; an unknown parameter is a syntax error.
fn create_params(args: &mut Args<'_>) -> Result<Vec<Vec<u8>>, ParseError> {
    let mut uses = Vec::new();
    if args.at_end() {
        return Ok(uses);
    }
    if args.token()? != Some(Token::ListOpen) {
        return Err(ParseError::ExpectedList);
    }
    let mut seen_use = false;
    loop {
        match args.token()? {
            Some(Token::ListClose) => break,
            Some(Token::Atom(word)) if word.eq_ignore_ascii_case(b"USE") && !seen_use => {
                seen_use = true;
                if args.token()? != Some(Token::ListOpen) {
                    return Err(ParseError::ExpectedList);
                }
                loop {
                    match args.token()? {
                        Some(Token::ListClose) => break,
                        Some(Token::Atom(attr)) if attr.first() == Some(&b'\\') => {
                            uses.push(attr.to_vec());
                        }
                        _ => return Err(ParseError::BadAtom),
                    }
                }
            }
            _ => return Err(ParseError::BadAtom),
        }
    }
    args.finish()?;
    Ok(uses)
}

/// CREATE, with CREATE-SPECIAL-USE (RFC 6154 §3): `CREATE name (USE (\Archive))` creates the
/// folder with that use, kept across restarts (see `crate::store::special_use`). A use this
/// server cannot give (`\All`, `\Flagged`, an unknown one, or two different uses for one
/// folder: each folder has at most one here) is refused with `NO [USEATTR]` and nothing is
/// created, as §3 requires.
pub(crate) fn create(
    session: &Session,
    args: &mut Args<'_>,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    let name = mailbox_arg(args, session.utf8_names())?;
    let attributes = create_params(args)?;
    let mut special: Option<SpecialUse> = None;
    for attribute in &attributes {
        let refusal = match special_use_named(attribute) {
            None => Some(format!(
                "[USEATTR] {} is not a special use this server supports",
                String::from_utf8_lossy(attribute)
            )),
            Some(s) if special.is_some_and(|already| already != s) => {
                Some("[USEATTR] A mailbox can have only one special use here".to_string())
            }
            Some(s) => {
                special = Some(s);
                None
            }
        };
        if let Some(text) = refusal {
            response::tagged(out, tag, Status::No, &text);
            return Ok(Outcome::Done(Status::No));
        }
    }
    Ok(with_mail(
        session,
        ctx,
        move |mail| match special {
            Some(special) => mail.create_special_use(&name, special),
            None => mail.create(&name),
        },
        |_, (), tag, out| {
            response::tagged(out, tag, Status::Ok, "CREATE completed");
            Status::Ok
        },
    ))
}

pub(crate) fn rename(
    session: &Session,
    args: &mut Args<'_>,
    ctx: &Context<'_>,
) -> Result<Outcome, ParseError> {
    let from = mailbox_arg(args, session.utf8_names())?;
    let to = mailbox_arg(args, session.utf8_names())?;
    args.finish()?;
    Ok(with_mail(
        session,
        ctx,
        move |mail| mail.rename(&from, &to),
        |_, (), tag, out| {
            response::tagged(out, tag, Status::Ok, "RENAME completed");
            Status::Ok
        },
    ))
}

pub(crate) fn namespace(
    args: &Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    args.finish()?;
    out.extend_from_slice(b"* NAMESPACE ((\"\" \".\")) NIL NIL\r\n");
    response::tagged(out, tag, Status::Ok, "NAMESPACE completed");
    Ok(Outcome::Done(Status::Ok))
}

/// LIST and LSUB (RFC 3501 §6.3.8-9, with the CHILDREN and SPECIAL-USE attributes; LSUB
/// carries the special-use attributes too, which Outlook 2013 relies on).
pub(crate) fn list(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
    lsub: bool,
) -> Result<Outcome, ParseError> {
    let (reference, pattern) = if lsub {
        let reference = mailbox_arg(args, session.utf8_names())?;
        let pattern = mailbox_arg(args, session.utf8_names())?;
        args.finish()?;
        (reference, pattern)
    } else {
        match super::list::parse(args, session.utf8_names()) {
            Err(error) => return Ok(super::list::refuse(error, tag, out)),
            Ok(command) if command.options.extended => {
                return Ok(super::list::extended(session, command, tag, ctx, out));
            }
            // The RFC 3501 form: exactly one pattern.
            Ok(mut command) => (command.reference, command.patterns.remove(0)),
        }
    };
    let verb = if lsub { "LSUB" } else { "LIST" };
    if pattern.is_empty() && !lsub {
        // The hierarchy delimiter and root of the reference.
        out.extend_from_slice(b"* LIST (\\Noselect) \".\" \"\"\r\n");
        response::tagged(out, tag, Status::Ok, "LIST completed");
        return Ok(Outcome::Done(Status::Ok));
    }
    let full = if reference.is_empty() || reference.ends_with(SEPARATOR) {
        format!("{reference}{pattern}")
    } else {
        format!("{reference}{SEPARATOR}{pattern}")
    };
    Ok(with_mail(
        session,
        ctx,
        move |mail| mail.list(),
        move |session, infos: Vec<MailboxInfo>, tag, out| {
            let utf8 = session.utf8_names();
            for info in &infos {
                let listed = if lsub {
                    info.subscribed
                } else {
                    info.exists || info.has_children
                };
                if !listed || !pattern_matches(&full, &info.name) {
                    continue;
                }
                out.extend_from_slice(b"* ");
                out.extend_from_slice(verb.as_bytes());
                out.extend_from_slice(b" (");
                let mut attributes: Vec<&str> = Vec::new();
                if !info.exists {
                    // RFC 9051 §7.3.1 (from RFC 5258 §3): a name that is only a parent is
                    // `\NonExistent` in IMAP4rev2, which implies `\Noselect` of RFC 3501.
                    attributes.push(if utf8 && !lsub {
                        "\\NonExistent"
                    } else {
                        "\\Noselect"
                    });
                }
                if info.has_children {
                    attributes.push("\\HasChildren");
                } else {
                    attributes.push("\\HasNoChildren");
                }
                if let Some(special) = info.special_use {
                    attributes.push(special.attribute());
                }
                out.extend_from_slice(attributes.join(" ").as_bytes());
                out.extend_from_slice(b") \".\" ");
                write_mailbox_name(&info.name, utf8, out);
                out.extend_from_slice(b"\r\n");
            }
            response::tagged(out, tag, Status::Ok, &format!("{verb} completed"));
            Status::Ok
        },
    ))
}

/// LIST wildcard matching: `*` matches anything, `%` anything but the separator. INBOX is
/// matched case-insensitively.
pub(crate) fn pattern_matches(pattern: &str, name: &str) -> bool {
    let pattern = canonical_inbox(pattern);
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob(&p, &n)
}

fn canonical_inbox(name: &str) -> std::borrow::Cow<'_, str> {
    let head = name.get(..5);
    let rest = name.get(5..).unwrap_or("");
    match head {
        Some(h)
            if h.eq_ignore_ascii_case("INBOX")
                && h != "INBOX"
                && (rest.is_empty() || rest.starts_with(SEPARATOR)) =>
        {
            std::borrow::Cow::Owned(format!("INBOX{rest}"))
        }
        _ => std::borrow::Cow::Borrowed(name),
    }
}

fn glob(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| glob(&p[1..], &n[i..])),
        Some('%') => {
            let limit = n.iter().position(|&c| c == SEPARATOR).unwrap_or(n.len());
            (0..=limit).any(|i| glob(&p[1..], &n[i..]))
        }
        Some(&c) => n.first() == Some(&c) && glob(&p[1..], &n[1..]),
    }
}

/// The STATUS items a client may ask for (in STATUS, and in LIST's `RETURN (STATUS (...))`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Size,
    /// RFC 7162 §3.1.7.
    HighestModseq,
    /// Messages with `\Deleted` (RFC 9051 §6.3.11, new in IMAP4rev2; answered to any client).
    Deleted,
}

/// Reads a space then `(item *(SP item))` of STATUS items (RFC 3501 §6.3.10; SIZE of RFC 8438,
/// HIGHESTMODSEQ of RFC 7162). An empty list is a syntax error.
pub(crate) fn status_items(args: &mut Args<'_>) -> Result<Vec<StatusItem>, ParseError> {
    let mut items = Vec::new();
    if args.token()? != Some(Token::ListOpen) {
        return Err(ParseError::ExpectedList);
    }
    loop {
        match args.token()? {
            Some(Token::ListClose) => break,
            Some(Token::Atom(atom)) => items.push(match atom.to_ascii_uppercase().as_slice() {
                b"MESSAGES" => StatusItem::Messages,
                b"RECENT" => StatusItem::Recent,
                b"UIDNEXT" => StatusItem::UidNext,
                b"UIDVALIDITY" => StatusItem::UidValidity,
                b"UNSEEN" => StatusItem::Unseen,
                b"SIZE" => StatusItem::Size,
                b"HIGHESTMODSEQ" => StatusItem::HighestModseq,
                b"DELETED" => StatusItem::Deleted,
                _ => return Err(ParseError::BadAtom),
            }),
            _ => return Err(ParseError::Unbalanced),
        }
    }
    if items.is_empty() {
        return Err(ParseError::MissingArgument);
    }
    Ok(items)
}

/// The numbers a STATUS response can carry, for one mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StatusValues {
    pub messages: usize,
    pub recent: usize,
    pub uid_next: u32,
    pub uid_validity: u32,
    pub unseen: usize,
    pub size: u64,
    pub highest_modseq: u64,
    pub deleted: usize,
}

impl StatusValues {
    /// From a fresh snapshot of a mailbox that this session has not selected. `\Recent`
    /// counts the messages still in `new/`: no session has been told of them yet.
    pub(crate) fn of_index(index: &Index) -> StatusValues {
        StatusValues {
            messages: index.messages.len(),
            recent: index.messages.iter().filter(|m| m.in_new).count(),
            uid_next: index.uid_next,
            uid_validity: index.uid_validity,
            unseen: index.unseen(),
            size: index.total_size(),
            highest_modseq: index.highest_modseq,
            deleted: index
                .messages
                .iter()
                .filter(|m| m.flags.has(crate::store::flags::DELETED))
                .count(),
        }
    }

    /// From the session's own view of its selected mailbox: what it was last told (EXISTS,
    /// its `\Recent` messages, the snapshot it was brought up to date with), so a STATUS
    /// returned by LIST-STATUS never contradicts the untagged responses the client has seen
    /// (RFC 5819 §2; RFC 3501 §6.3.10 warns against fresher numbers for the selected mailbox).
    pub(crate) fn of_view(view: &Selected) -> StatusValues {
        let known = view.known();
        let in_view = |uid: u32| view.uids().binary_search(&uid).is_ok();
        let viewed = known.messages.iter().filter(|m| in_view(m.uid));
        let (mut unseen, mut size, mut deleted) = (0, 0u64, 0);
        for m in viewed {
            if !m.flags.has(crate::store::flags::SEEN) {
                unseen += 1;
            }
            if m.flags.has(crate::store::flags::DELETED) {
                deleted += 1;
            }
            size = size.saturating_add(m.size);
        }
        StatusValues {
            messages: view.uids().len(),
            recent: view.recent_count(),
            uid_next: known.uid_next,
            uid_validity: known.uid_validity,
            unseen,
            size,
            highest_modseq: known.highest_modseq,
            deleted,
        }
    }
}

/// Writes `* STATUS <name> (<item> <value> ...)`.
pub(crate) fn write_status(
    name: &str,
    items: &[StatusItem],
    values: &StatusValues,
    utf8: bool,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"* STATUS ");
    write_mailbox_name(name, utf8, out);
    out.extend_from_slice(b" (");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let text = match item {
            StatusItem::Messages => format!("MESSAGES {}", values.messages),
            StatusItem::Recent => format!("RECENT {}", values.recent),
            StatusItem::UidNext => format!("UIDNEXT {}", values.uid_next),
            StatusItem::UidValidity => format!("UIDVALIDITY {}", values.uid_validity),
            StatusItem::Unseen => format!("UNSEEN {}", values.unseen),
            StatusItem::Size => format!("SIZE {}", values.size),
            StatusItem::HighestModseq => format!("HIGHESTMODSEQ {}", values.highest_modseq),
            StatusItem::Deleted => format!("DELETED {}", values.deleted),
        };
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(b")\r\n");
}

/// STATUS, with SIZE (RFC 8438) and HIGHESTMODSEQ (RFC 7162 §3.1.7, a CONDSTORE enabling
/// command).
pub(crate) fn status(
    session: &mut Session,
    args: &mut Args<'_>,
    ctx: &Context<'_>,
) -> Result<Outcome, ParseError> {
    let name = mailbox_arg(args, session.utf8_names())?;
    let items = status_items(args)?;
    args.finish()?;
    if session.enabled.imap4rev2() && items.contains(&StatusItem::Recent) {
        return Err(ParseError::Rev2Removed);
    }
    if items.contains(&StatusItem::HighestModseq) {
        session.enabled.enable_condstore();
    }
    Ok(with_mail(
        session,
        ctx,
        // No sync here: a sync hands the messages waiting in new/ to its caller as \Recent,
        // which belongs to the session that selects the mailbox. Opening reads the folder.
        move |mail| Ok((name.clone(), mail.open(&name)?.snapshot())),
        move |session, (name, index), tag, out| {
            let values = StatusValues::of_index(&index);
            write_status(&name, &items, &values, session.utf8_names(), out);
            response::tagged(out, tag, Status::Ok, "STATUS completed");
            Status::Ok
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_patterns() {
        assert!(pattern_matches("*", "INBOX"));
        assert!(pattern_matches("*", "Work.Projects"));
        assert!(pattern_matches("%", "Work"));
        assert!(!pattern_matches("%", "Work.Projects"));
        assert!(pattern_matches("Work.%", "Work.Projects"));
        assert!(pattern_matches("inbox", "INBOX"));
        assert!(pattern_matches("Inbox.%", "INBOX.Sub"));
        assert!(!pattern_matches("Inboxes", "INBOX"));
        assert!(pattern_matches("S*t", "Sent"));
        assert!(!pattern_matches("Sent", "Sent.Old"));
    }
}
