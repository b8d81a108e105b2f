//! Commands of the selected state that concern the mailbox as a whole: NOOP (with a mailbox),
//! CHECK, CLOSE, UNSELECT, EXPUNGE.

use super::super::NoopOutcome;
use super::super::parser::{Args, ParseError};
use super::super::response::{self, Status};
use super::super::session::{Context, Done, Outcome, Session, Work};
use std::sync::Arc;

use super::mailbox::store_failure;
use crate::store::{Index, StoreError};

/// The answer to a selected-state command without a selected mailbox.
pub(crate) fn no_mailbox(tag: &[u8], out: &mut Vec<u8>) -> Outcome {
    response::tagged(out, tag, Status::Bad, "No mailbox selected");
    Outcome::Done(Status::Bad)
}

/// The answer to a change attempted in a mailbox opened with EXAMINE.
pub(crate) fn read_only(tag: &[u8], out: &mut Vec<u8>) -> Outcome {
    response::tagged(out, tag, Status::No, "[READ-ONLY] Mailbox is read-only");
    Outcome::Done(Status::No)
}

/// NOOP with a mailbox selected (`NOOPPoll.1`): reports what changed in the shared index since
/// the client was last told. An unchanged mailbox is recognised by its snapshot pointer, so
/// that NOOP touches no file and allocates nothing; with `NOOPPoll.1`=0 NOOP does not look.
pub(crate) fn noop(
    session: &mut Session,
    args: &Args<'_>,
    tag: &[u8],
    ctx: &mut Context<'_>,
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    args.finish()?;
    let enabled = session.enabled;
    let outcome = match session.selected.as_deref_mut() {
        Some(_) if !ctx.settings.noop_poll => NoopOutcome::Disabled,
        Some(selected) => {
            let latest = selected.mailbox.snapshot();
            if selected.is_current(&latest) {
                NoopOutcome::Unchanged
            } else {
                selected.catch_up(latest, true, &[], enabled, out);
                NoopOutcome::Changed
            }
        }
        None => NoopOutcome::Disabled,
    };
    ctx.observer.noop(outcome);
    response::tagged(out, tag, Status::Ok, "NOOP completed");
    Ok(Outcome::Done(Status::Ok))
}

/// Brings the session's view up to `index` (expunges included), then answers OK with `text`.
/// With `expunged` (this command removed messages) and QRESYNC enabled, the OK carries the
/// new HIGHESTMODSEQ (RFC 7162 §3.2.7, §3.2.9).
fn reported(result: Result<(Arc<Index>, bool), StoreError>, text: &'static str) -> Done {
    Done::new(move |session, tag, out| match result {
        Ok((index, expunged)) => {
            let enabled = session.enabled;
            let code = (expunged && enabled.qresync())
                .then(|| format!("[HIGHESTMODSEQ {}] ", index.highest_modseq));
            if let Some(selected) = session.selected.as_deref_mut() {
                selected.catch_up(index, true, &[], enabled, out);
            }
            match code {
                Some(code) => response::tagged(out, tag, Status::Ok, &format!("{code}{text}")),
                None => response::tagged(out, tag, Status::Ok, text),
            }
            Status::Ok
        }
        Err(e) => store_failure(&e, tag, out),
    })
}

/// CHECK: re-reads the folder (changes by other programs), then reports like NOOP.
pub(crate) fn check(
    session: &mut Session,
    args: &Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    args.finish()?;
    let Some(selected) = session.selected.as_deref() else {
        return Ok(no_mailbox(tag, out));
    };
    let mailbox = selected.mailbox.clone();
    Ok(Outcome::Work(Work::new(move || {
        reported(
            mailbox.sync().map(|sync| (sync.index, false)),
            "CHECK completed",
        )
    })))
}

/// CLOSE: silently removes `\Deleted` messages (unless read-only), then leaves the mailbox.
/// Also with QRESYNC: no VANISHED and no HIGHESTMODSEQ (RFC 7162 §3.2.8).
pub(crate) fn close(
    session: &mut Session,
    args: &Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    args.finish()?;
    let Some(selected) = session.selected.take() else {
        return Ok(no_mailbox(tag, out));
    };
    if selected.read_only {
        response::tagged(out, tag, Status::Ok, "CLOSE completed");
        return Ok(Outcome::Done(Status::Ok));
    }
    let mailbox = selected.mailbox.clone();
    Ok(Outcome::Work(Work::new(move || {
        let result = mailbox.expunge(None);
        Done::new(move |_, tag, out| match result {
            Ok(_) => {
                response::tagged(out, tag, Status::Ok, "CLOSE completed");
                Status::Ok
            }
            Err(e) => store_failure(&e, tag, out),
        })
    })))
}

/// UNSELECT (RFC 3691): leaves the mailbox without expunging.
pub(crate) fn unselect(
    session: &mut Session,
    args: &Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    args.finish()?;
    session.selected = None;
    response::tagged(out, tag, Status::Ok, "UNSELECT completed");
    Ok(Outcome::Done(Status::Ok))
}

/// EXPUNGE and UID EXPUNGE (RFC 4315): removes `\Deleted` messages (only those in the UID set
/// for UID EXPUNGE) and reports each removal (as one VANISHED with QRESYNC, RFC 7162 §3.2.7).
pub(crate) fn expunge(
    session: &mut Session,
    only: Option<Vec<u32>>,
    tag: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    let Some(selected) = session.selected.as_deref() else {
        return Ok(no_mailbox(tag, out));
    };
    if selected.read_only {
        return Ok(read_only(tag, out));
    }
    let mailbox = selected.mailbox.clone();
    Ok(Outcome::Work(Work::new(move || {
        let result = mailbox
            .expunge(only.as_deref())
            .map(|gone| (mailbox.snapshot(), !gone.is_empty()));
        reported(result, "EXPUNGE completed")
    })))
}
