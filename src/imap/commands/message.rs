//! Commands on messages of the selected mailbox: STORE, COPY, MOVE, APPEND, the UID forms and
//! UID EXPUNGE (FETCH and SEARCH have files of their own), and the sequence-set helpers they
//! share.
//!
//! The worker thread parses and resolves sequence numbers against the session's view; reading
//! message files and changing them happens in a [`Work`] on a blocking thread; the [`Done`]
//! writes the answers and brings the view up to date.

use std::sync::Arc;

use super::super::condstore;
use super::super::datetime;
use super::super::parser::{Args, ParseError, Token};
use super::super::response::{self, Status};
use super::super::selected::{write_flag_fetch, write_flags};
use super::super::sequence::{SequenceSet, write_compact};
use super::super::session::{Context, Done, Outcome, Session, Work};
use super::fetch::fetch_command;
use super::mailbox::{mailbox_arg, store_failure};
use super::search::search_command;
use super::selected::{expunge, no_mailbox, read_only};
use crate::imap::CommandName;
use crate::store::flags::{self, Flags};
use crate::store::mailbox::NewMessage;
use crate::store::{FlagMode, Mailbox, StoreError};

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
            let set = sequence_arg(session, args, true)?;
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

/// Reads a sequence set, or `$`, the saved search result of SEARCHRES (RFC 5182 §2.1), as the
/// UIDs (`uid_mode`) or sequence numbers the saved messages have now; `$` is empty when nothing
/// was saved or no mailbox is selected (the command then answers as for any empty set).
pub(crate) fn sequence_arg(
    session: &Session,
    args: &mut Args<'_>,
    uid_mode: bool,
) -> Result<SequenceSet, ParseError> {
    let atom = args.atom()?;
    if atom == b"$" {
        return Ok(session
            .selected
            .as_deref()
            .map_or_else(|| SequenceSet::of_ascending(&[]), |s| s.saved_set(uid_mode)));
    }
    SequenceSet::parse(atom)
}

/// The (MSN, UID) pairs a command's set names, or a BAD for sequence numbers past the end.
pub(crate) fn targets(
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

/// STORE and UID STORE, with RFC 7162's `(UNCHANGEDSINCE n)` modifier (§3.1.3): messages
/// changed after `n` are left alone and listed in `OK [MODIFIED set]` (sequence numbers, or
/// UIDs for UID STORE). Once CONDSTORE is enabled (UNCHANGEDSINCE enables it), every FETCH of
/// the answer carries UID and MODSEQ, and .SILENT still sends `FETCH (UID u MODSEQ (m))` for
/// each message stored, as §3.1.3 requires for a conditional STORE (for a plain one too, so
/// that the client's cached mod-sequences stay right).
fn store(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
    uid_mode: bool,
) -> Result<Outcome, ParseError> {
    let set = sequence_arg(session, args, uid_mode)?;
    let unchanged_since = condstore::parse_store_modifiers(args)?;
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
    if unchanged_since.is_some() {
        session.enabled.enable_condstore();
    }
    let targets = match targets(session, &set, uid_mode, tag, out) {
        Ok(t) => t,
        Err(outcome) => return Ok(outcome),
    };
    let Some(selected) = session.selected.as_deref() else {
        return Ok(no_mailbox(tag, out));
    };
    if selected.read_only {
        return Ok(read_only(tag, out));
    }
    let mailbox = selected.mailbox.clone();
    Ok(Outcome::Work(Work::new(move || {
        let uids: Vec<u32> = targets.iter().map(|&(_, uid)| uid).collect();
        let result = keyword_bits(&mailbox, &keywords).and_then(|bits| {
            mailbox.store_flags(
                &uids,
                mode,
                Flags {
                    system,
                    keywords: bits,
                },
                unchanged_since,
            )
        });
        let latest = mailbox.snapshot();
        let names = mailbox.keywords();
        Done::new(move |session, tag, out| {
            let done = match result {
                Ok(done) => done,
                Err(e) => return store_failure(&e, tag, out),
            };
            let enabled = session.enabled;
            let Some(selected) = session.selected.as_deref_mut() else {
                return store_failure(&StoreError::NoSuchMessage(0), tag, out);
            };
            if !silent || enabled.condstore() {
                for stored in &done.stored {
                    let Some(msn) = selected.msn_of(stored.uid) else {
                        continue;
                    };
                    let modseq = enabled.condstore().then_some(stored.modseq);
                    let flags = (!silent).then(|| {
                        (
                            stored.flags,
                            names.as_slice(),
                            selected.is_recent(stored.uid),
                        )
                    });
                    if modseq.is_none() && uid_mode {
                        // RFC 3501 §6.4.8: UID STORE answers carry the UID.
                        out.extend_from_slice(
                            format!("* {msn} FETCH (UID {} FLAGS ", stored.uid).as_bytes(),
                        );
                        write_flags(stored.flags, &names, selected.is_recent(stored.uid), out);
                        out.extend_from_slice(b")\r\n");
                    } else {
                        write_flag_fetch(out, msn as usize, stored.uid, flags, modseq);
                    }
                }
            }
            // Our own changes are answered above (or silenced); others' are reported.
            let ours: Vec<u32> = done.stored.iter().map(|s| s.uid).collect();
            selected.catch_up(latest, false, &ours, enabled, out);
            if done.modified.is_empty() {
                response::tagged(out, tag, Status::Ok, "STORE completed");
            } else {
                // Refused messages by sequence number for STORE, by UID for UID STORE.
                let mut ids: Vec<u32> = if uid_mode {
                    done.modified
                } else {
                    done.modified
                        .iter()
                        .filter_map(|&uid| selected.msn_of(uid))
                        .collect()
                };
                ids.sort_unstable();
                let mut text = b"[MODIFIED ".to_vec();
                write_compact(&ids, &mut text);
                text.extend_from_slice(b"] Conditional STORE failed for some messages");
                response::tagged(out, tag, Status::Ok, &String::from_utf8_lossy(&text));
            }
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
    let set = sequence_arg(session, args, uid_mode)?;
    let destination = mailbox_arg(args, session.utf8_names())?;
    args.finish()?;
    let targets = match targets(session, &set, uid_mode, tag, out) {
        Ok(t) => t,
        Err(outcome) => return Ok(outcome),
    };
    let Some(selected) = session.selected.as_deref() else {
        return Ok(no_mailbox(tag, out));
    };
    if is_move && selected.read_only {
        return Ok(read_only(tag, out));
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
                let pairs = if is_move {
                    source.copy_for_move(&uids, &dest)?
                } else {
                    source.copy_to(&uids, &dest)?
                };
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
            let moved_any = !pairs.is_empty();
            let mut code = Vec::new();
            if moved_any {
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
                let enabled = session.enabled;
                // With QRESYNC the moved messages go as VANISHED, and the OK tells the new
                // HIGHESTMODSEQ, as after EXPUNGE (RFC 6851 §4.4, RFC 7162 §3.2.7).
                let highest = latest.highest_modseq;
                if let Some(selected) = session.selected.as_deref_mut() {
                    selected.catch_up(latest, true, &[], enabled, out);
                }
                if enabled.qresync() && moved_any {
                    let text = format!("[HIGHESTMODSEQ {highest}] MOVE completed");
                    response::tagged(out, tag, Status::Ok, &text);
                } else {
                    response::tagged(out, tag, Status::Ok, "MOVE completed");
                }
            } else {
                response::tagged(out, tag, Status::Ok, &format!("{code}COPY completed"));
            }
            Status::Ok
        })
    })))
}

/// The most messages one MULTIAPPEND may carry. RFC 3502 sets no limit; the bytes of a command
/// are bounded by the framer (one literal's worth plus a line), but empty messages cost ten
/// bytes each on the wire and a file each on disk.
const MAX_APPEND_MESSAGES: usize = 10_000;

/// One message of an APPEND, as parsed.
struct AppendMessage {
    system: u8,
    keywords: Vec<String>,
    date: Option<i64>,
    content: Vec<u8>,
}

/// Reads the messages of an APPEND: `append-message *(append-message)` where each is
/// `[SP flag-list] [SP date-time] SP literal` (RFC 3501 §6.3.11, repeated by MULTIAPPEND,
/// RFC 3502 §6). Every message is parsed before anything is stored, so a syntax error in any
/// of them (a bad date in the second one, say) fails the whole command with nothing stored.
fn append_messages(args: &mut Args<'_>) -> Result<Vec<AppendMessage>, ParseError> {
    let mut messages = Vec::new();
    loop {
        let mut message = AppendMessage {
            system: 0,
            keywords: Vec::new(),
            date: None,
            content: Vec::new(),
        };
        let (mut seen_flags, mut seen_date) = (false, false);
        loop {
            let next = args.rest().iter().find(|&&b| b != b' ').copied();
            match next {
                Some(b'(') if !seen_flags && !seen_date => {
                    let (s, k) = flag_list(args)?;
                    message.system = s;
                    message.keywords = k;
                    seen_flags = true;
                }
                Some(b'"') if !seen_date => {
                    let Some(Token::String(text)) = args.token()? else {
                        return Err(ParseError::MissingArgument);
                    };
                    let parsed = datetime::parse_date_time(&text).ok_or(ParseError::BadAtom)?;
                    message.date = Some(parsed.timestamp());
                    seen_date = true;
                }
                Some(b'{' | b'~') => match args.token()? {
                    Some(Token::String(bytes)) => {
                        message.content = bytes.into_owned();
                        break;
                    }
                    _ => return Err(ParseError::BadLiteral),
                },
                _ => return Err(ParseError::MissingArgument),
            }
        }
        messages.push(message);
        if args.at_end() {
            return Ok(messages);
        }
    }
}

/// APPEND with APPENDUID (RFC 4315) and MULTIAPPEND (RFC 3502): `APPEND mailbox
/// append-message *(SP append-message)`. All messages are stored or none (§3: "the server MUST
/// NOT append any of them" when one fails), and the answer carries one APPENDUID with the UIDs
/// of all of them in order (RFC 4315 §3 allows a set for MULTIAPPEND).
pub(crate) fn append(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    let name = mailbox_arg(args, session.utf8_names())?;
    let messages = append_messages(args)?;
    args.finish()?;
    if messages.len() > MAX_APPEND_MESSAGES {
        response::tagged(
            out,
            tag,
            Status::No,
            &format!("[LIMIT] At most {MAX_APPEND_MESSAGES} messages per APPEND"),
        );
        return Ok(Outcome::Done(Status::No));
    }
    let store = ctx.store.clone();
    let user = session.user().unwrap_or_default().to_string();
    Ok(Outcome::Work(Work::new(move || {
        let result = store
            .user(&user)
            .and_then(|mail| mail.open(&name))
            .and_then(|mailbox| {
                let batch: Vec<NewMessage<'_>> = messages
                    .iter()
                    .map(|m| NewMessage {
                        content: &m.content,
                        system: m.system,
                        keywords: &m.keywords,
                        internal_date: m.date,
                    })
                    .collect();
                let uids = mailbox.append_all(&batch)?;
                Ok((mailbox, uids))
            });
        Done::new(move |session, tag, out| match result {
            Ok((mailbox, uids)) => {
                let index = mailbox.snapshot();
                // Appending to the selected mailbox: the client learns of it at once.
                let enabled = session.enabled;
                if let Some(selected) = session.selected.as_deref_mut()
                    && Arc::ptr_eq(&selected.mailbox, &mailbox)
                {
                    selected.catch_up(index.clone(), true, &[], enabled, out);
                }
                // UIDs are handed out ascending in message order, so the compact form keeps
                // the order RFC 4315 §3 asks for.
                let mut set = Vec::new();
                write_compact(&uids, &mut set);
                let text = format!(
                    "[APPENDUID {} {}] APPEND completed",
                    index.uid_validity,
                    String::from_utf8_lossy(&set)
                );
                response::tagged(out, tag, Status::Ok, &text);
                Status::Ok
            }
            Err(e) => destination_failure(&e, tag, out),
        })
    })))
}
