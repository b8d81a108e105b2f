//! SORT and UID SORT (RFC 5256, with RFC 5957 DISPLAYFROM/DISPLAYTO and the RFC 5267 ESORT
//! `RETURN (...)` form), THREAD and UID THREAD (ORDEREDSUBJECT, REFERENCES).
//!
//! The worker thread only parses. Searching, reading the headers and the sorting or threading
//! itself run in a [`Work`] on the blocking pool, since they read message files; only the
//! header block of each file is read, never the body.

use std::cell::RefCell;
use std::io::Read;

use memchr::memmem;

use super::super::parser::{Args, ParseError};
use super::super::response::{self, Status};
use super::super::search::{self, ReturnOption, SearchError, SearchKey};
use super::super::sequence::write_compact;
use super::super::session::{Done, Outcome, Session, Work};
use super::super::sort::{self, HeaderFacts, Needs, SortItem};
use super::super::thread::{self, Algorithm, ThreadItem};
use super::search::{Match, View};
use super::selected::no_mailbox;
use crate::store::Mailbox;

/// Headers longer than this are cut: sorting and threading look at a handful of fields, and a
/// hostile message must not make SORT read megabytes per message.
const MAX_HEADER: usize = 256 * 1024;

/// Answers a refused charset or a syntax error the way SEARCH does.
fn refuse(e: SearchError, tag: &[u8], out: &mut Vec<u8>) -> Result<Outcome, ParseError> {
    match e {
        SearchError::Parse(e) => Err(e),
        e @ SearchError::BadCharset(_) => {
            response::tagged(
                out,
                tag,
                Status::No,
                &format!("[BADCHARSET (UTF-8 US-ASCII)] {e}"),
            );
            Ok(Outcome::Done(Status::No))
        }
    }
}

/// `SORT [RETURN (...)] (criteria) charset search-keys`. With a MODSEQ criterion (a CONDSTORE
/// enabling command) a non-empty answer ends with the highest mod-sequence of the messages
/// returned: `* SORT 2 1 (MODSEQ n)` (RFC 7162 §3.1.9) or `MODSEQ n` in ESORT (§3.1.10).
pub(crate) fn sort_command(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
    uid_mode: bool,
) -> Result<Outcome, ParseError> {
    let ret = match search::parse_return(args) {
        Ok(ret) => ret,
        Err(e) => return refuse(e, tag, out),
    };
    if ret
        .as_deref()
        .is_some_and(|r| r.contains(&ReturnOption::Save))
    {
        // RFC 5182 defines SAVE for SEARCH; this server does not save SORT results.
        return Err(ParseError::BadAtom);
    }
    let criteria = sort::parse_criteria(args)?;
    let mut key = match search::parse_charset_and_keys(args, true) {
        Ok((_, key)) => key,
        Err(e) => return refuse(e, tag, out),
    };
    let with_modseq = search::uses_modseq(&key);
    if with_modseq {
        session.enabled.enable_condstore();
    }
    let Some(selected) = session.selected.as_deref() else {
        return Ok(no_mailbox(tag, out));
    };
    // `$` (RFC 5182 §2.1) may be used in any search criteria, SORT's and THREAD's too.
    search::substitute_saved(&mut key, selected.saved_uids());
    let view = View::of(selected);
    let tag_owned = tag.to_vec();
    Ok(Outcome::Work(Work::new(move || {
        let needs = Needs::for_criteria(&criteria);
        // (id, mod-sequence) of each match, ascending by id (matches come in sequence order,
        // which is UID order too).
        let modseqs = RefCell::new(Vec::new());
        let items = read_items(&view, &key, needs, uid_mode, |m, id, header| {
            modseqs.borrow_mut().push((id, m.modseq));
            SortItem {
                msn: m.msn,
                id,
                internal_date: m.internal_date,
                size: m.size,
                header,
            }
        });
        let modseqs = modseqs.into_inner();
        let sorted = sort::sort(items, &criteria);
        let highest = with_modseq
            .then(|| highest_returned(ret.as_deref(), &sorted, &modseqs))
            .flatten();
        let mut body = Vec::new();
        match ret {
            None => {
                body.extend_from_slice(b"* SORT");
                for id in &sorted {
                    body.push(b' ');
                    body.extend_from_slice(id.to_string().as_bytes());
                }
                if let Some(highest) = highest {
                    body.extend_from_slice(format!(" (MODSEQ {highest})").as_bytes());
                }
                body.extend_from_slice(b"\r\n");
            }
            Some(options) => {
                write_esort(&tag_owned, uid_mode, &options, &sorted, &mut body);
                if let Some(highest) = highest {
                    // Before the line end write_esort put there.
                    body.truncate(body.len().saturating_sub(2));
                    body.extend_from_slice(format!(" MODSEQ {highest}\r\n").as_bytes());
                }
            }
        }
        Done::new(move |_, tag, out| {
            out.extend_from_slice(&body);
            response::tagged(out, tag, Status::Ok, "SORT completed");
            Status::Ok
        })
    })))
}

/// The highest mod-sequence of the messages a SORT answer returns (RFC 7162 §3.1.9, §3.1.10):
/// all of them, except for an ESORT asking only for MIN and/or MAX, which returns the first
/// and the last of the sort order. `None` when it returns none. `modseqs` is ascending by id.
fn highest_returned(
    options: Option<&[ReturnOption]>,
    sorted: &[u32],
    modseqs: &[(u32, u64)],
) -> Option<u64> {
    let of = |id: &u32| {
        modseqs
            .binary_search_by_key(id, |&(i, _)| i)
            .ok()
            .map(|i| modseqs[i].1)
    };
    let only = |o: &[ReturnOption]| {
        !o.is_empty() && !o.contains(&ReturnOption::All) && !o.contains(&ReturnOption::Count)
    };
    match options {
        Some(o) if only(o) => {
            let first = sorted.first().filter(|_| o.contains(&ReturnOption::Min));
            let last = sorted.last().filter(|_| o.contains(&ReturnOption::Max));
            first.into_iter().chain(last).filter_map(of).max()
        }
        _ if sorted.is_empty() => None,
        _ => modseqs.iter().map(|&(_, m)| m).max(),
    }
}

/// `THREAD algorithm charset search-keys`.
pub(crate) fn thread_command(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
    uid_mode: bool,
) -> Result<Outcome, ParseError> {
    let Some(algorithm) = Algorithm::parse(args.atom()?) else {
        response::tagged(out, tag, Status::Bad, "Unknown threading algorithm");
        return Ok(Outcome::Done(Status::Bad));
    };
    let mut key = match search::parse_charset_and_keys(args, true) {
        Ok((_, key)) => key,
        Err(e) => return refuse(e, tag, out),
    };
    let Some(selected) = session.selected.as_deref() else {
        return Ok(no_mailbox(tag, out));
    };
    // `$` (RFC 5182 §2.1) may be used in any search criteria, SORT's and THREAD's too.
    search::substitute_saved(&mut key, selected.saved_uids());
    let view = View::of(selected);
    Ok(Outcome::Work(Work::new(move || {
        let items = read_items(
            &view,
            &key,
            Needs::for_threading(),
            uid_mode,
            |m, id, header| ThreadItem {
                msn: m.msn,
                id,
                sent: header.sent_or(m.internal_date),
                subject: header.base_subject(),
                message_id: header.message_id.clone(),
                // RFC 5256 step 1.A: References, or else the first ID of In-Reply-To.
                references: if header.references.is_empty() {
                    header.in_reply_to.clone().into_iter().collect()
                } else {
                    header.references
                },
            },
        );
        let mut body = b"* THREAD".to_vec();
        if !items.is_empty() {
            body.push(b' ');
            thread::thread(&items, algorithm, &mut body);
        }
        body.extend_from_slice(b"\r\n");
        Done::new(move |_, tag, out| {
            out.extend_from_slice(&body);
            response::tagged(out, tag, Status::Ok, "THREAD completed");
            Status::Ok
        })
    })))
}

/// Searches, then reads what `needs` asks for from each match's header and builds an item
/// from it (blocking).
fn read_items<T>(
    view: &View,
    key: &SearchKey,
    needs: Needs,
    uid_mode: bool,
    build: impl Fn(&Match, u32, HeaderFacts) -> T,
) -> Vec<T> {
    let wants_header = needs != Needs::default();
    view.matching(key)
        .into_iter()
        .map(|m| {
            let header = if wants_header {
                // A message that cannot be read (expunged by another writer meanwhile) sorts
                // as one without headers rather than failing the whole command.
                let raw = read_header(&view.mailbox, m.uid).unwrap_or_default();
                HeaderFacts::parse(&raw, needs)
            } else {
                HeaderFacts::default()
            };
            let id = if uid_mode { m.uid } else { m.msn };
            build(&m, id, header)
        })
        .collect()
}

/// The header block of a message (up to and including the empty line), read in small chunks
/// so that the body is never read; at most [`MAX_HEADER`] bytes.
fn read_header(mailbox: &Mailbox, uid: u32) -> Option<Vec<u8>> {
    let mut file = mailbox.open_message(uid).ok()?;
    let mut header = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = file.read(&mut chunk).ok()?;
        if n == 0 {
            return Some(header);
        }
        // The end may straddle two chunks: look again at the last bytes already read.
        let from = header.len().saturating_sub(2);
        header.extend_from_slice(&chunk[..n]);
        if let Some(end) = header_end(&header, from) {
            header.truncate(end);
            return Some(header);
        }
        if header.len() >= MAX_HEADER {
            header.truncate(MAX_HEADER);
            return Some(header);
        }
    }
}

/// Where the header ends (after its empty line), looking from `from` on.
fn header_end(bytes: &[u8], from: usize) -> Option<usize> {
    // A message that starts with its empty line has an empty header.
    if from == 0 {
        if bytes.starts_with(b"\r\n") {
            return Some(2);
        }
        if bytes.starts_with(b"\n") {
            return Some(1);
        }
    }
    let rest = &bytes[from..];
    let crlf = memmem::find(rest, b"\n\r\n").map(|i| i + 3);
    let lf = memmem::find(rest, b"\n\n").map(|i| i + 2);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(from + end)
}

/// The RFC 5267 ESORT answer: `* ESEARCH (TAG "t") [UID] [MIN n] [MAX n] [COUNT n] [ALL set]`.
/// MIN and MAX are the first and last message in the sort order, and ALL lists the messages
/// in sort order, with ranges only for ascending runs (so `2:4` still means 2, 3, 4 in that
/// order). An empty option list means ALL.
fn write_esort(tag: &[u8], uid: bool, options: &[ReturnOption], sorted: &[u32], out: &mut Vec<u8>) {
    let wants =
        |option| (options.is_empty() && option == ReturnOption::All) || options.contains(&option);
    out.extend_from_slice(b"* ESEARCH (TAG ");
    response::string(out, tag);
    out.push(b')');
    if uid {
        out.extend_from_slice(b" UID");
    }
    if wants(ReturnOption::Min)
        && let Some(first) = sorted.first()
    {
        out.extend_from_slice(b" MIN ");
        out.extend_from_slice(first.to_string().as_bytes());
    }
    if wants(ReturnOption::Max)
        && let Some(last) = sorted.last()
    {
        out.extend_from_slice(b" MAX ");
        out.extend_from_slice(last.to_string().as_bytes());
    }
    if wants(ReturnOption::Count) {
        out.extend_from_slice(b" COUNT ");
        out.extend_from_slice(sorted.len().to_string().as_bytes());
    }
    if wants(ReturnOption::All) && !sorted.is_empty() {
        out.extend_from_slice(b" ALL ");
        let mut start = 0;
        for i in 1..=sorted.len() {
            let run_ends = i == sorted.len() || sorted[i] != sorted[i - 1].wrapping_add(1);
            if run_ends {
                if start > 0 {
                    out.push(b',');
                }
                write_compact(&sorted[start..i], out);
                start = i;
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esort(uid: bool, options: &[ReturnOption], sorted: &[u32]) -> String {
        let mut out = Vec::new();
        write_esort(b"a1", uid, options, sorted, &mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn esort_keeps_the_sort_order() {
        use ReturnOption::{All, Count, Max, Min};
        assert_eq!(
            esort(true, &[Min, Max, Count, All], &[5, 2, 3, 4, 9, 1]),
            "* ESEARCH (TAG \"a1\") UID MIN 5 MAX 1 COUNT 6 ALL 5,2:4,9,1\r\n"
        );
        assert_eq!(
            esort(false, &[], &[3, 2, 1]),
            "* ESEARCH (TAG \"a1\") ALL 3,2,1\r\n"
        );
        assert_eq!(
            esort(false, &[Min, Max, Count, All], &[]),
            "* ESEARCH (TAG \"a1\") COUNT 0\r\n"
        );
    }

    #[test]
    fn modseq_of_what_a_sort_returns() {
        use ReturnOption::{All, Count, Max, Min};
        let modseqs = [(1, 30), (2, 10), (3, 20)];
        assert_eq!(highest_returned(None, &[2, 3, 1], &modseqs), Some(30));
        assert_eq!(highest_returned(Some(&[]), &[2, 3, 1], &modseqs), Some(30));
        assert_eq!(
            highest_returned(Some(&[Min, Max]), &[2, 3, 1], &modseqs),
            Some(30)
        );
        assert_eq!(
            highest_returned(Some(&[Min]), &[2, 3, 1], &modseqs),
            Some(10)
        );
        assert_eq!(
            highest_returned(Some(&[Max, Count]), &[2, 3], &modseqs),
            Some(30)
        );
        assert_eq!(highest_returned(Some(&[All]), &[], &[]), None);
    }

    #[test]
    fn header_end_finds_the_empty_line() {
        assert_eq!(header_end(b"A: 1\r\n\r\nbody", 0), Some(8));
        assert_eq!(header_end(b"A: 1\n\nbody", 0), Some(6));
        assert_eq!(header_end(b"\r\nbody", 0), Some(2));
        assert_eq!(header_end(b"A: 1\r\nB: 2\r\n", 0), None);
        assert_eq!(header_end(b"A: 1\r\n\r\n", 4), Some(8));
    }
}
