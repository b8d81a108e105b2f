//! Commands on messages of the selected mailbox: FETCH, STORE, SEARCH, COPY, MOVE, their UID
//! forms, UID EXPUNGE, and APPEND.
//!
//! The worker thread parses and resolves sequence numbers against the session's view; reading
//! message files and changing them happens in a [`Work`] on a blocking thread; the [`Done`]
//! writes the answers and brings the view up to date.

use std::io::Write;
use std::sync::Arc;

use super::super::datetime;
use super::super::fetch::{self, FetchAttr};
use super::super::parser::{Args, ParseError, Token};
use super::super::response::{self, Status};
use super::super::search::{self, Candidate, SearchError};
use super::super::selected::write_flags;
use super::super::sequence::{SequenceSet, write_compact};
use super::super::session::{Context, Done, Outcome, Session, Work};
use super::mailbox::{mailbox_arg, store_failure};
use super::selected::{expunge, no_mailbox};
use crate::imap::CommandName;
use crate::store::flags::{self, Flags};
use crate::store::{FlagMode, Index, Mailbox, StoreError};

/// `UID <command> ...`: routes to the command in UID mode.
pub(crate) fn uid(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    let name = args.atom()?;
    match CommandName::parse(name) {
        CommandName::Fetch => fetch_command(session, args, tag, out, true),
        CommandName::Store => store(session, args, tag, out, true),
        CommandName::Search => search_command(session, args, tag, out, true),
        CommandName::Copy => copy(session, args, tag, ctx, out, true, false),
        CommandName::Move => copy(session, args, tag, ctx, out, true, true),
        CommandName::Expunge => {
            let set = sequence_arg(args)?;
            args.finish()?;
            let Some(selected) = session.selected.as_deref() else {
                return Ok(no_mailbox(tag, out));
            };
            let uids = selected
                .resolve(&set, true)
                .into_iter()
                .map(|(_, uid)| uid)
                .collect();
            expunge(session, Some(uids), tag, out)
        }
        _ => {
            response::tagged(out, tag, Status::Bad, "Unknown UID command");
            Ok(Outcome::Done(Status::Bad))
        }
    }
}

/// FETCH, STORE, SEARCH, COPY, MOVE with sequence numbers.
pub(crate) fn plain(
    session: &mut Session,
    name: CommandName,
    args: &mut Args<'_>,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    match name {
        CommandName::Fetch => fetch_command(session, args, tag, out, false),
        CommandName::Store => store(session, args, tag, out, false),
        CommandName::Search => search_command(session, args, tag, out, false),
        CommandName::Copy => copy(session, args, tag, ctx, out, false, false),
        _ => copy(session, args, tag, ctx, out, false, true),
    }
}

fn sequence_arg(args: &mut Args<'_>) -> Result<SequenceSet, ParseError> {
    SequenceSet::parse(args.atom()?)
}

/// The (MSN, UID) pairs a command's set names, or a BAD for sequence numbers past the end.
fn targets(
    session: &Session,
    set: &SequenceSet,
    uid_mode: bool,
    tag: &[u8],
    out: &mut Vec<u8>,
) -> Result<Vec<(u32, u32)>, Outcome> {
    let Some(selected) = session.selected.as_deref() else {
        return Err(no_mailbox(tag, out));
    };
    if !uid_mode && !selected.msn_set_valid(set) {
        response::tagged(out, tag, Status::Bad, "Invalid message sequence number");
        return Err(Outcome::Done(Status::Bad));
    }
    Ok(selected.resolve(set, uid_mode))
}

/// Writes `{n}\r\n` and the bytes.
fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'{');
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.extend_from_slice(b"}\r\n");
    out.extend_from_slice(bytes);
}

/// Whether answering `attrs` needs the message file.
fn needs_content(attrs: &[FetchAttr]) -> bool {
    attrs.iter().any(|a| {
        !matches!(
            a,
            FetchAttr::Uid | FetchAttr::Flags | FetchAttr::InternalDate | FetchAttr::Rfc822Size
        )
    })
}

fn fetch_command(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
    uid_mode: bool,
) -> Result<Outcome, ParseError> {
    let set = sequence_arg(args)?;
    let mut attrs = fetch::parse_attrs(args)?;
    args.finish()?;
    if uid_mode && !attrs.contains(&FetchAttr::Uid) {
        attrs.insert(0, FetchAttr::Uid);
    }
    let targets = match targets(session, &set, uid_mode, tag, out) {
        Ok(t) => t,
        Err(outcome) => return Ok(outcome),
    };
    let Some(selected) = session.selected.as_deref() else {
        return Ok(no_mailbox(tag, out));
    };
    let mailbox = selected.mailbox.clone();
    let set_seen = fetch::sets_seen(&attrs) && !selected.read_only;
    let recent: Vec<bool> = targets
        .iter()
        .map(|&(_, uid)| selected.is_recent(uid))
        .collect();
    Ok(Outcome::Work(Work::streaming(move |sink| {
        let result = fetch_work(&mailbox, &targets, &recent, &attrs, set_seen, sink);
        let latest = mailbox.snapshot();
        Done::new(move |session, tag, out| {
            if let Some(selected) = session.selected.as_deref_mut() {
                // Flags this FETCH set (\Seen) or others changed; no EXPUNGE during FETCH.
                selected.catch_up(latest, false, &[], out);
            }
            match result {
                Ok(FetchEnd {
                    undecodable: Some(e),
                    ..
                }) => {
                    let code = match e {
                        fetch::FetchError::UnknownCte => "UNKNOWN-CTE",
                        fetch::FetchError::InvalidEncoding => "PARSE",
                    };
                    response::tagged(out, tag, Status::No, &format!("[{code}] {e}"));
                    Status::No
                }
                Ok(FetchEnd { missing: false, .. }) => {
                    response::tagged(out, tag, Status::Ok, "FETCH completed");
                    Status::Ok
                }
                Ok(FetchEnd { missing: true, .. }) => {
                    response::tagged(
                        out,
                        tag,
                        Status::No,
                        "Some messages could not be read (expunged or unreadable)",
                    );
                    Status::No
                }
                Err(FetchFailure::Store(e)) => store_failure(&e, tag, out),
                Err(FetchFailure::Client(e)) => {
                    // The connection is gone or stuck; this answer will not arrive either.
                    tracing::debug!("FETCH stopped writing: {e}");
                    response::tagged(out, tag, Status::No, "FETCH interrupted");
                    Status::No
                }
            }
        })
    })))
}

/// Literals at least this large are written to the client from the message file's pages
/// instead of being copied into the response buffer.
const STREAM_LITERAL: usize = 64 * 1024;

/// A message's bytes: read into memory when small, mapped from the page cache when large, so a
/// 50 MiB attachment does not cost 50 MiB of this process's memory per FETCH.
enum Content {
    Read(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Content {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Content::Read(v) => v,
            Content::Mapped(m) => m,
        }
    }
}

/// Messages larger than this are mapped rather than read.
const MAP_ABOVE: u64 = 256 * 1024;

fn load(mailbox: &Mailbox, uid: u32) -> Result<Content, StoreError> {
    use std::io::Read;
    let mut file = mailbox.open_message(uid)?;
    let io_error = |source| StoreError::Io {
        path: mailbox.path_of(uid).unwrap_or_default(),
        source,
    };
    let len = file.metadata().map_err(io_error)?.len();
    if len > MAP_ABOVE {
        // SAFETY: Maildir message files are immutable once delivered: writers create a new
        // file in tmp/ and rename it, flag changes rename, expunges unlink; none of them
        // modifies or truncates a file in place, and a mapping of an unlinked file stays
        // valid. Only a foreign program breaking the Maildir contract could truncate it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error)?;
        return Ok(Content::Mapped(map));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(io_error)?;
    Ok(Content::Read(bytes))
}

/// Writes a literal: small ones into `buf`; large ones straight to `sink` after `buf`.
fn literal_to(sink: &mut dyn Write, buf: &mut Vec<u8>, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.len() < STREAM_LITERAL {
        literal(buf, bytes);
        return Ok(());
    }
    buf.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
    sink.write_all(buf)?;
    buf.clear();
    sink.write_all(bytes)
}

/// Why FETCH work stopped.
enum FetchFailure {
    Store(StoreError),
    /// Writing to the client failed: it went away or stopped reading.
    Client(std::io::Error),
}

impl From<StoreError> for FetchFailure {
    fn from(e: StoreError) -> Self {
        FetchFailure::Store(e)
    }
}

impl From<std::io::Error> for FetchFailure {
    fn from(e: std::io::Error) -> Self {
        FetchFailure::Client(e)
    }
}

/// How a FETCH that ran to the end went.
struct FetchEnd {
    /// Some message could not be read (expunged meanwhile, or unreadable).
    missing: bool,
    /// BINARY of a part that cannot be decoded; that message got no FETCH response (RFC 3516).
    undecodable: Option<fetch::FetchError>,
}

/// Writes the FETCH responses to the client (`sink`) message by message.
fn fetch_work(
    mailbox: &Mailbox,
    targets: &[(u32, u32)],
    recent: &[bool],
    attrs: &[FetchAttr],
    set_seen: bool,
    sink: &mut dyn Write,
) -> Result<FetchEnd, FetchFailure> {
    if set_seen {
        let before = mailbox.snapshot();
        let unseen: Vec<u32> = targets
            .iter()
            .map(|&(_, uid)| uid)
            .filter(|&uid| {
                before
                    .position(uid)
                    .is_some_and(|i| !before.messages[i].flags.has(flags::SEEN))
            })
            .collect();
        if !unseen.is_empty() {
            mailbox.set_flags(
                &unseen,
                FlagMode::Add,
                Flags {
                    system: flags::SEEN,
                    keywords: 0,
                },
            )?;
        }
    }
    let index = mailbox.snapshot();
    let keywords = mailbox.keywords();
    let content_items = needs_content(attrs);
    let wants_size = attrs.contains(&FetchAttr::Rfc822Size);
    let mut end = FetchEnd {
        missing: false,
        undecodable: None,
    };
    let mut out = Vec::new();
    for (&(msn, uid), &is_recent) in targets.iter().zip(recent) {
        let Some(position) = index.position(uid) else {
            end.missing = true;
            continue;
        };
        let meta = &index.messages[position];
        // RFC822.SIZE needs the content only for files that do not record it (`,W=`).
        let load_content = content_items || (wants_size && meta.virtual_size().is_none());
        let raw = if load_content {
            match load(mailbox, uid) {
                Ok(raw) => Some(raw),
                Err(e) => {
                    tracing::warn!("FETCH: cannot read message {uid}: {e}");
                    end.missing = true;
                    continue;
                }
            }
        } else {
            None
        };
        let raw: &[u8] = raw.as_deref().unwrap_or_default();
        // BINARY of a part that cannot be decoded fails the command; check before answering.
        if let Some(e) = attrs.iter().find_map(|a| match a {
            FetchAttr::Binary { part, .. } | FetchAttr::BinarySize { part } => {
                fetch::binary_bytes(raw, part).err()
            }
            _ => None,
        }) {
            end.undecodable = Some(e);
            continue;
        }
        let out = &mut out;
        out.extend_from_slice(b"* ");
        out.extend_from_slice(msn.to_string().as_bytes());
        out.extend_from_slice(b" FETCH (");
        for (i, attr) in attrs.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            match attr {
                FetchAttr::Uid => out.extend_from_slice(format!("UID {uid}").as_bytes()),
                FetchAttr::Flags => {
                    out.extend_from_slice(b"FLAGS ");
                    write_flags(meta.flags, &keywords, is_recent, out);
                }
                FetchAttr::InternalDate => {
                    out.extend_from_slice(b"INTERNALDATE ");
                    datetime::write_date_time(meta.internal_date, out);
                }
                FetchAttr::Rfc822Size => {
                    let size = meta
                        .virtual_size()
                        .unwrap_or_else(|| fetch::rfc822_size(raw) as u64);
                    out.extend_from_slice(format!("RFC822.SIZE {size}").as_bytes())
                }
                FetchAttr::Envelope => {
                    out.extend_from_slice(b"ENVELOPE ");
                    fetch::write_envelope(raw, out);
                }
                FetchAttr::Body => {
                    out.extend_from_slice(b"BODY ");
                    fetch::write_bodystructure(raw, false, out);
                }
                FetchAttr::BodyStructure => {
                    out.extend_from_slice(b"BODYSTRUCTURE ");
                    fetch::write_bodystructure(raw, true, out);
                }
                FetchAttr::Rfc822 => {
                    out.extend_from_slice(b"RFC822 ");
                    literal_to(sink, out, raw)?;
                }
                FetchAttr::Rfc822Header | FetchAttr::Rfc822Text => {
                    let text = matches!(attr, FetchAttr::Rfc822Text);
                    let section = fetch::Section {
                        part: Vec::new(),
                        text: Some(if text {
                            fetch::SectionText::Text
                        } else {
                            fetch::SectionText::Header
                        }),
                    };
                    out.extend_from_slice(if text {
                        b"RFC822.TEXT "
                    } else {
                        b"RFC822.HEADER "
                    });
                    let bytes = fetch::section_bytes(raw, &section).unwrap_or_default();
                    literal_to(sink, out, &bytes)?;
                }
                FetchAttr::BodySection {
                    section, partial, ..
                } => {
                    fetch::write_item_name(attr, out);
                    out.push(b' ');
                    match fetch::section_bytes(raw, section) {
                        Some(bytes) => {
                            literal_to(sink, out, fetch::apply_partial(&bytes, *partial))?
                        }
                        None => literal(out, b""),
                    }
                }
                FetchAttr::Binary { part, partial, .. } => {
                    fetch::write_item_name(attr, out);
                    out.push(b' ');
                    match fetch::binary_bytes(raw, part) {
                        Ok(Some(bytes)) => {
                            let bytes = fetch::apply_partial(&bytes, *partial);
                            if bytes.contains(&0) {
                                out.push(b'~');
                            }
                            literal_to(sink, out, bytes)?;
                        }
                        // A missing part is empty, as Dovecot answers it.
                        Ok(None) | Err(_) => literal(out, b""),
                    }
                }
                FetchAttr::BinarySize { part } => {
                    fetch::write_item_name(attr, out);
                    let size = match fetch::binary_bytes(raw, part) {
                        Ok(Some(bytes)) => bytes.len(),
                        _ => 0,
                    };
                    out.extend_from_slice(format!(" {size}").as_bytes());
                }
            }
        }
        out.extend_from_slice(b")\r\n");
        sink.write_all(out)?;
        out.clear();
    }
    Ok(end)
}

/// Reads a flag list: `(\Seen $Work)` or bare flags up to the end of the command.
fn flag_list(args: &mut Args<'_>) -> Result<(u8, Vec<String>), ParseError> {
    let mut system = 0u8;
    let mut keywords = Vec::new();
    let mut add = |atom: &[u8]| -> Result<(), ParseError> {
        if atom.first() == Some(&b'\\') {
            system |= Flags::system_flag(atom).ok_or(ParseError::BadAtom)?;
        } else {
            let name = std::str::from_utf8(atom).map_err(|_| ParseError::BadAtom)?;
            keywords.push(name.to_string());
        }
        Ok(())
    };
    match args.token()? {
        Some(Token::ListOpen) => loop {
            match args.token()? {
                Some(Token::ListClose) => break,
                Some(Token::Atom(atom)) => add(atom)?,
                _ => return Err(ParseError::Unbalanced),
            }
        },
        Some(Token::Atom(atom)) => {
            add(atom)?;
            while let Some(token) = args.token()? {
                match token {
                    Token::Atom(atom) => add(atom)?,
                    _ => return Err(ParseError::BadAtom),
                }
            }
        }
        _ => return Err(ParseError::MissingArgument),
    }
    Ok((system, keywords))
}

/// Resolves keyword names to this mailbox's keyword bits, creating new keywords.
fn keyword_bits(mailbox: &Mailbox, names: &[String]) -> Result<u32, StoreError> {
    let mut bits = 0u32;
    for name in names {
        if let Some(i) = mailbox.keyword_index(name, true)? {
            bits |= 1 << i;
        }
    }
    Ok(bits)
}

fn store(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
    uid_mode: bool,
) -> Result<Outcome, ParseError> {
    let set = sequence_arg(args)?;
    let item = args.atom()?.to_ascii_uppercase();
    let (mode, silent) = match item.as_slice() {
        b"FLAGS" => (FlagMode::Replace, false),
        b"FLAGS.SILENT" => (FlagMode::Replace, true),
        b"+FLAGS" => (FlagMode::Add, false),
        b"+FLAGS.SILENT" => (FlagMode::Add, true),
        b"-FLAGS" => (FlagMode::Remove, false),
        b"-FLAGS.SILENT" => (FlagMode::Remove, true),
        _ => return Err(ParseError::BadAtom),
    };
    let (system, keywords) = flag_list(args)?;
    args.finish()?;
    let targets = match targets(session, &set, uid_mode, tag, out) {
        Ok(t) => t,
        Err(outcome) => return Ok(outcome),
    };
    let Some(selected) = session.selected.as_deref() else {
        return Ok(no_mailbox(tag, out));
    };
    if selected.read_only {
        response::tagged(out, tag, Status::No, "[READ-ONLY] Mailbox is read-only");
        return Ok(Outcome::Done(Status::No));
    }
    let mailbox = selected.mailbox.clone();
    Ok(Outcome::Work(Work::new(move || {
        let uids: Vec<u32> = targets.iter().map(|&(_, uid)| uid).collect();
        let result = keyword_bits(&mailbox, &keywords).and_then(|bits| {
            mailbox.set_flags(
                &uids,
                mode,
                Flags {
                    system,
                    keywords: bits,
                },
            )
        });
        let latest = mailbox.snapshot();
        let names = mailbox.keywords();
        Done::new(move |session, tag, out| {
            let changed = match result {
                Ok(changed) => changed,
                Err(e) => return store_failure(&e, tag, out),
            };
            let Some(selected) = session.selected.as_deref_mut() else {
                return store_failure(&StoreError::NoSuchMessage(0), tag, out);
            };
            if !silent {
                for (uid, flags) in &changed {
                    let Some(msn) = selected.msn_of(*uid) else {
                        continue;
                    };
                    out.extend_from_slice(format!("* {msn} FETCH (").as_bytes());
                    if uid_mode {
                        out.extend_from_slice(format!("UID {uid} ").as_bytes());
                    }
                    out.extend_from_slice(b"FLAGS ");
                    write_flags(*flags, &names, selected.is_recent(*uid), out);
                    out.extend_from_slice(b")\r\n");
                }
            }
            // Our own changes are answered above (or silenced); others' are reported.
            let mut ours: Vec<u32> = changed.iter().map(|&(uid, _)| uid).collect();
            ours.sort_unstable();
            selected.catch_up(latest, false, &ours, out);
            response::tagged(out, tag, Status::Ok, "STORE completed");
            Status::Ok
        })
    })))
}

/// One message as SEARCH sees it.
struct SearchItem<'a> {
    mailbox: &'a Mailbox,
    index: &'a Index,
    position: usize,
    msn: u32,
    recent: bool,
    keywords: &'a [String],
    content: Option<Option<Content>>,
}

impl Candidate for SearchItem<'_> {
    fn msn(&self) -> u32 {
        self.msn
    }
    fn uid(&self) -> u32 {
        self.index.messages[self.position].uid
    }
    fn flags(&self) -> Flags {
        self.index.messages[self.position].flags
    }
    fn recent(&self) -> bool {
        self.recent
    }
    fn size(&self) -> u64 {
        // RFC822.SIZE when the file name records it; the file size otherwise (equal for
        // messages stored with CRLF line ends, as clients append them).
        let meta = &self.index.messages[self.position];
        meta.virtual_size().unwrap_or(meta.size)
    }
    fn internal_date(&self) -> i64 {
        self.index.messages[self.position].internal_date
    }
    fn has_keyword(&self, name: &str) -> bool {
        self.keywords
            .iter()
            .position(|k| k.eq_ignore_ascii_case(name))
            .is_some_and(|i| self.flags().has_keyword(i))
    }
    fn content(&mut self) -> Option<&[u8]> {
        if self.content.is_none() {
            self.content = Some(load(self.mailbox, self.uid()).ok());
        }
        self.content.as_ref().and_then(|c| c.as_deref())
    }
}

fn search_command(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
    uid_mode: bool,
) -> Result<Outcome, ParseError> {
    let request = match search::parse(args) {
        Ok(request) => request,
        Err(SearchError::Parse(e)) => return Err(e),
        Err(e @ SearchError::BadCharset(_)) => {
            response::tagged(
                out,
                tag,
                Status::No,
                &format!("[BADCHARSET (UTF-8 US-ASCII)] {e}"),
            );
            return Ok(Outcome::Done(Status::No));
        }
    };
    let Some(selected) = session.selected.as_deref() else {
        return Ok(no_mailbox(tag, out));
    };
    let mailbox = selected.mailbox.clone();
    let uids = selected.uids().to_vec();
    let recent: Vec<bool> = uids.iter().map(|&uid| selected.is_recent(uid)).collect();
    let tag_owned = tag.to_vec();
    Ok(Outcome::Work(Work::new(move || {
        let index: Arc<Index> = mailbox.snapshot();
        let keywords = mailbox.keywords();
        let largest_msn = u32::try_from(uids.len()).unwrap_or(u32::MAX);
        let largest_uid = uids.last().copied().unwrap_or(0);
        let mut found = Vec::new();
        for (i, (&uid, &is_recent)) in uids.iter().zip(&recent).enumerate() {
            // A message expunged meanwhile still has its number but no longer matches.
            let Some(position) = index.position(uid) else {
                continue;
            };
            let msn = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let mut item = SearchItem {
                mailbox: &mailbox,
                index: &index,
                position,
                msn,
                recent: is_recent,
                keywords: &keywords,
                content: None,
            };
            if search::matches(&request.key, &mut item, largest_msn, largest_uid) {
                found.push(if uid_mode { uid } else { msn });
            }
        }
        let mut body = Vec::new();
        search::write_results(
            &tag_owned,
            uid_mode,
            request.ret.as_deref(),
            &found,
            &mut body,
        );
        Done::new(move |_, tag, out| {
            out.extend_from_slice(&body);
            response::tagged(out, tag, Status::Ok, "SEARCH completed");
            Status::Ok
        })
    })))
}

/// Answers a failure to reach the mailbox a COPY, MOVE or APPEND writes to: a missing one gets
/// `[TRYCREATE]` (RFC 3501), so clients offer to create it.
fn destination_failure(error: &StoreError, tag: &[u8], out: &mut Vec<u8>) -> Status {
    match error {
        StoreError::NoSuchMailbox(name) => {
            response::tagged(
                out,
                tag,
                Status::No,
                &format!("[TRYCREATE] Mailbox does not exist: {name}"),
            );
            Status::No
        }
        _ => store_failure(error, tag, out),
    }
}

/// COPY and MOVE (RFC 6851), with COPYUID (RFC 4315).
fn copy(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
    uid_mode: bool,
    is_move: bool,
) -> Result<Outcome, ParseError> {
    let set = sequence_arg(args)?;
    let destination = mailbox_arg(args)?;
    args.finish()?;
    let targets = match targets(session, &set, uid_mode, tag, out) {
        Ok(t) => t,
        Err(outcome) => return Ok(outcome),
    };
    let Some(selected) = session.selected.as_deref() else {
        return Ok(no_mailbox(tag, out));
    };
    if is_move && selected.read_only {
        response::tagged(out, tag, Status::No, "[READ-ONLY] Mailbox is read-only");
        return Ok(Outcome::Done(Status::No));
    }
    let source = selected.mailbox.clone();
    let store = ctx.store.clone();
    let user = session.user().unwrap_or_default().to_string();
    Ok(Outcome::Work(Work::new(move || {
        let uids: Vec<u32> = targets.iter().map(|&(_, uid)| uid).collect();
        let result = store
            .user(&user)
            .and_then(|mail| mail.open(&destination))
            .and_then(|dest| {
                let pairs = source.copy_to(&uids, &dest)?;
                if is_move && !pairs.is_empty() {
                    let moved: Vec<u32> = pairs.iter().map(|&(src, _)| src).collect();
                    source.set_flags(
                        &moved,
                        FlagMode::Add,
                        Flags {
                            system: flags::DELETED,
                            keywords: 0,
                        },
                    )?;
                    source.expunge(Some(&moved))?;
                }
                Ok((dest.snapshot().uid_validity, pairs))
            });
        let latest = source.snapshot();
        Done::new(move |session, tag, out| {
            let (validity, pairs) = match result {
                Ok(v) => v,
                Err(e) => return destination_failure(&e, tag, out),
            };
            let mut code = Vec::new();
            if !pairs.is_empty() {
                let mut pairs = pairs;
                pairs.sort_unstable();
                let src: Vec<u32> = pairs.iter().map(|p| p.0).collect();
                let dst: Vec<u32> = pairs.iter().map(|p| p.1).collect();
                code.extend_from_slice(format!("[COPYUID {validity} ").as_bytes());
                write_compact(&src, &mut code);
                code.push(b' ');
                write_compact(&dst, &mut code);
                code.extend_from_slice(b"] ");
            }
            let code = String::from_utf8_lossy(&code).into_owned();
            if is_move {
                out.extend_from_slice(format!("* OK {code}Moved\r\n").as_bytes());
                if let Some(selected) = session.selected.as_deref_mut() {
                    selected.catch_up(latest, true, &[], out);
                }
                response::tagged(out, tag, Status::Ok, "MOVE completed");
            } else {
                response::tagged(out, tag, Status::Ok, &format!("{code}COPY completed"));
            }
            Status::Ok
        })
    })))
}

/// APPEND (with APPENDUID, RFC 4315): `APPEND mailbox [(flags)] ["date-time"] literal`.
pub(crate) fn append(
    session: &mut Session,
    args: &mut Args<'_>,
    ctx: &Context<'_>,
) -> Result<Outcome, ParseError> {
    let name = mailbox_arg(args)?;
    let mut system = 0u8;
    let mut keywords = Vec::new();
    let mut date = None;
    let content = loop {
        let next = args.rest().iter().find(|&&b| b != b' ').copied();
        match next {
            Some(b'(') => {
                let (s, k) = flag_list(args)?;
                system = s;
                keywords = k;
            }
            Some(b'"') => {
                let Some(Token::String(text)) = args.token()? else {
                    return Err(ParseError::MissingArgument);
                };
                let parsed = datetime::parse_date_time(&text).ok_or(ParseError::BadAtom)?;
                date = Some(parsed.timestamp());
            }
            Some(b'{' | b'~') => match args.token()? {
                Some(Token::String(bytes)) => break bytes.into_owned(),
                _ => return Err(ParseError::BadLiteral),
            },
            _ => return Err(ParseError::MissingArgument),
        }
    };
    args.finish()?;
    let store = ctx.store.clone();
    let user = session.user().unwrap_or_default().to_string();
    Ok(Outcome::Work(Work::new(move || {
        let result = store
            .user(&user)
            .and_then(|mail| mail.open(&name))
            .and_then(|mailbox| {
                let names: Vec<&str> = keywords.iter().map(String::as_str).collect();
                let uid = mailbox.append(&content, system, &names, date)?;
                Ok((mailbox, uid))
            });
        Done::new(move |session, tag, out| match result {
            Ok((mailbox, uid)) => {
                let index = mailbox.snapshot();
                // Appending to the selected mailbox: the client learns of it at once.
                if let Some(selected) = session.selected.as_deref_mut()
                    && Arc::ptr_eq(&selected.mailbox, &mailbox)
                {
                    selected.catch_up(index.clone(), true, &[], out);
                }
                response::tagged(
                    out,
                    tag,
                    Status::Ok,
                    &format!("[APPENDUID {} {uid}] APPEND completed", index.uid_validity),
                );
                Status::Ok
            }
            Err(e) => destination_failure(&e, tag, out),
        })
    })))
}
