//! SEARCH and UID SEARCH, evaluated on the blocking pool against the session's view, with
//! RFC 7162's MODSEQ criterion (§3.1.5) and `(MODSEQ n)` answer (§3.1.6, §3.1.10), and
//! SEARCHRES (RFC 5182): `RETURN (SAVE)` and the `$` key.
//!
//! In an IMAP4rev2 session (RFC 9051 §6.4.4) the answer is always ESEARCH (`* SEARCH` does not
//! exist there; no RETURN means `RETURN (ALL)`), and RECENT, NEW and OLD are refused.

use std::sync::Arc;

use super::super::parser::{Args, ParseError};
use super::super::response::{self, Status};
use super::super::search::{self, Candidate, SearchError, SearchKey};
use super::super::session::{Done, Outcome, Session, Work};
use super::content::{Content, load};
use super::selected::no_mailbox;
use crate::store::flags::Flags;
use crate::store::{Index, Mailbox};

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
    fn modseq(&self) -> u64 {
        self.index.messages[self.position].modseq
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

pub(crate) fn search_command(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
    uid_mode: bool,
) -> Result<Outcome, ParseError> {
    // RFC 5182 §2.1: a SEARCH ... RETURN (SAVE) that fails (BAD or NO) leaves `$` empty, so
    // whether SAVE was asked for is read before the rest of the command is.
    let asks_save = search::parse_return(&mut args.clone())
        .ok()
        .flatten()
        .is_some_and(|r| r.contains(&search::ReturnOption::Save));
    let parsed = search::parse(args);
    if parsed.is_err()
        && asks_save
        && let Some(selected) = session.selected.as_deref_mut()
    {
        selected.save_result(Vec::new());
    }
    let mut request = match parsed {
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
    // SEARCH MODSEQ is a CONDSTORE enabling command (RFC 7162 §3.1).
    let with_modseq = search::uses_modseq(&request.key);
    if with_modseq {
        session.enabled.enable_condstore();
    }
    let rev2 = session.enabled.imap4rev2();
    let save = request
        .ret
        .as_deref()
        .is_some_and(|r| r.contains(&search::ReturnOption::Save));
    let Some(selected) = session.selected.as_deref_mut() else {
        return Ok(no_mailbox(tag, out));
    };
    if rev2 && search::uses_recent(&request.key) {
        if save {
            // RFC 5182 §2.1: a SEARCH ... SAVE that fails leaves `$` empty.
            selected.save_result(Vec::new());
        }
        return Err(ParseError::Rev2Removed);
    }
    search::substitute_saved(&mut request.key, selected.saved_uids());
    if rev2 && request.ret.is_none() {
        request.ret = Some(Vec::new());
    }
    let selected = &*selected;
    let view = View::of(selected);
    let tag_owned = tag.to_vec();
    Ok(Outcome::Work(Work::new(move || {
        let matches = view.matching(&request.key);
        let found: Vec<u32> = matches
            .iter()
            .map(|m| if uid_mode { m.uid } else { m.msn })
            .collect();
        let modseqs: Option<Vec<u64>> =
            with_modseq.then(|| matches.iter().map(|m| m.modseq).collect());
        // `$` keeps messages, not numbers: UIDs (RFC 5182 §2.1).
        let saved = save.then(|| {
            let uids: Vec<u32> = matches.iter().map(|m| m.uid).collect();
            search::saved_part(request.ret.as_deref().unwrap_or_default(), &uids)
        });
        let mut body = Vec::new();
        search::write_results(
            &tag_owned,
            uid_mode,
            request.ret.as_deref(),
            &found,
            modseqs.as_deref(),
            &mut body,
        );
        Done::new(move |session, tag, out| {
            if let (Some(saved), Some(selected)) = (saved, session.selected.as_deref_mut()) {
                selected.save_result(saved);
            }
            out.extend_from_slice(&body);
            response::tagged(out, tag, Status::Ok, "SEARCH completed");
            Status::Ok
        })
    })))
}

/// What a search needs from the session's view, copied so that it can move to the blocking
/// pool: the mailbox, and the UIDs and `\Recent` state behind each sequence number.
pub(super) struct View {
    pub(super) mailbox: Arc<Mailbox>,
    uids: Vec<u32>,
    recent: Vec<bool>,
}

/// A message that matched: its numbers, and its place in the index snapshot searched.
pub(super) struct Match {
    pub(super) msn: u32,
    pub(super) uid: u32,
    /// RFC822.SIZE.
    pub(super) size: u64,
    pub(super) internal_date: i64,
    /// The mod-sequence (RFC 7162), for the `(MODSEQ n)` of a search that used MODSEQ.
    pub(super) modseq: u64,
}

impl View {
    pub(super) fn of(selected: &crate::imap::selected::Selected) -> View {
        let uids = selected.uids().to_vec();
        let recent = uids.iter().map(|&uid| selected.is_recent(uid)).collect();
        View {
            mailbox: selected.mailbox.clone(),
            uids,
            recent,
        }
    }

    /// The messages matching `key`, in sequence order (blocking: may read message files).
    pub(super) fn matching(&self, key: &SearchKey) -> Vec<Match> {
        let index: Arc<Index> = self.mailbox.snapshot();
        let keywords = self.mailbox.keywords();
        let largest_msn = u32::try_from(self.uids.len()).unwrap_or(u32::MAX);
        let largest_uid = self.uids.last().copied().unwrap_or(0);
        let mut found = Vec::new();
        for (i, (&uid, &is_recent)) in self.uids.iter().zip(&self.recent).enumerate() {
            // A message expunged meanwhile still has its number but no longer matches.
            let Some(position) = index.position(uid) else {
                continue;
            };
            let msn = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let mut item = SearchItem {
                mailbox: &self.mailbox,
                index: &index,
                position,
                msn,
                recent: is_recent,
                keywords: &keywords,
                content: None,
            };
            if search::matches(key, &mut item, largest_msn, largest_uid) {
                found.push(Match {
                    msn,
                    uid,
                    size: item.size(),
                    internal_date: item.internal_date(),
                    modseq: item.modseq(),
                });
            }
        }
        found
    }
}
