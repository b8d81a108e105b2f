//! FETCH and UID FETCH: the responses are written to the client message by message from the
//! blocking work, large literals straight from the message file's pages.

use std::io::Write;

use super::super::condstore;
use super::super::datetime;
use super::super::fetch::{self, FetchAttr};
use super::super::parser::{Args, ParseError};
use super::super::response::{self, Status};
use super::super::selected::write_flags;
use super::super::session::{Done, Outcome, Session, Work};
use super::content::load;
use super::mailbox::store_failure;
use super::message::{sequence_arg, targets};
use super::selected::no_mailbox;
use crate::store::flags::{self, Flags};
use crate::store::{FlagMode, Mailbox, MessageMeta, StoreError};

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
            FetchAttr::Uid
                | FetchAttr::Flags
                | FetchAttr::InternalDate
                | FetchAttr::Rfc822Size
                | FetchAttr::ModSeq
        )
    })
}

/// FETCH and UID FETCH, with the RFC 7162 MODSEQ item (§3.1.4.2) and modifiers
/// `(CHANGEDSINCE n)` (§3.1.4.1: only messages changed after `n`, MODSEQ implied) and, for UID
/// FETCH with QRESYNC enabled, `(CHANGEDSINCE n VANISHED)` (§3.2.6: `* VANISHED (EARLIER)`
/// with the UIDs of the set expunged after `n`, before any FETCH response).
pub(crate) fn fetch_command(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
    uid_mode: bool,
) -> Result<Outcome, ParseError> {
    let set = sequence_arg(session, args, uid_mode)?;
    let mut attrs = fetch::parse_attrs(args)?;
    let modifiers = condstore::parse_fetch_modifiers(args)?;
    args.finish()?;
    if let Some(text) = modifiers.refusal(uid_mode, session.enabled) {
        response::tagged(out, tag, Status::Bad, text);
        return Ok(Outcome::Done(Status::Bad));
    }
    if uid_mode && !attrs.contains(&FetchAttr::Uid) {
        attrs.insert(0, FetchAttr::Uid);
    }
    if modifiers.changed_since.is_some() && !attrs.contains(&FetchAttr::ModSeq) {
        attrs.push(FetchAttr::ModSeq);
    }
    // FETCH MODSEQ and CHANGEDSINCE are CONDSTORE enabling commands (§3.1).
    if attrs.contains(&FetchAttr::ModSeq) {
        session.enabled.enable_condstore();
    }
    let targets = match targets(session, &set, uid_mode, tag, out) {
        Ok(t) => t,
        Err(outcome) => return Ok(outcome),
    };
    let Some(selected) = session.selected.as_deref() else {
        return Ok(no_mailbox(tag, out));
    };
    if let (true, Some(since)) = (modifiers.vanished, modifiers.changed_since) {
        // Written here, so it goes out before the FETCH responses the work streams. UIDs the
        // session still numbers (expunged meanwhile, not yet reported) are left out: a
        // VANISHED reports them once expunges may be reported.
        let index = selected.mailbox.snapshot();
        let within = condstore::uid_ranges(&set, index.uid_next.saturating_sub(1));
        let gone = condstore::vanished_earlier(&index, since, &within, 0);
        let gone = condstore::without(&gone, selected.uids());
        condstore::write_vanished_ranges(true, &gone, out);
    }
    let changed_since = modifiers.changed_since;
    let mailbox = selected.mailbox.clone();
    let set_seen = fetch::sets_seen(&attrs) && !selected.read_only;
    let recent: Vec<bool> = targets
        .iter()
        .map(|&(_, uid)| selected.is_recent(uid))
        .collect();
    Ok(Outcome::Work(Work::streaming(move |sink| {
        let wanted = Wanted {
            attrs: &attrs,
            set_seen,
            changed_since,
        };
        let result = fetch_work(&mailbox, &targets, &recent, &wanted, sink);
        let latest = mailbox.snapshot();
        Done::new(move |session, tag, out| {
            let enabled = session.enabled;
            if let Some(selected) = session.selected.as_deref_mut() {
                // Flags this FETCH set (\Seen) or others changed; no EXPUNGE during FETCH.
                selected.catch_up(latest, false, &[], enabled, out);
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

/// What a FETCH asks for.
struct Wanted<'a> {
    attrs: &'a [FetchAttr],
    /// Answering sets \Seen (a non-PEEK body item, not in a read-only mailbox).
    set_seen: bool,
    /// CHANGEDSINCE: only messages whose mod-sequence is above this one are answered (and
    /// only those get \Seen).
    changed_since: Option<u64>,
}

/// Writes the FETCH responses to the client (`sink`) message by message.
fn fetch_work(
    mailbox: &Mailbox,
    targets: &[(u32, u32)],
    recent: &[bool],
    wanted: &Wanted<'_>,
    sink: &mut dyn Write,
) -> Result<FetchEnd, FetchFailure> {
    let attrs = wanted.attrs;
    let changed = |meta: &MessageMeta| wanted.changed_since.is_none_or(|m| meta.modseq > m);
    if wanted.set_seen {
        let before = mailbox.snapshot();
        let unseen: Vec<u32> = targets
            .iter()
            .map(|&(_, uid)| uid)
            .filter(|&uid| {
                before.position(uid).is_some_and(|i| {
                    let meta = &before.messages[i];
                    !meta.flags.has(flags::SEEN) && changed(meta)
                })
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
        if !changed(meta) {
            continue;
        }
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
                FetchAttr::ModSeq => {
                    out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes());
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
