//! IDLE (RFC 2177): the client waits for pushes until it sends `DONE`.
//!
//! Governed live by `IDLECmd.1`: when 0, IDLE is neither advertised nor accepted. Accepted in
//! the authenticated state too, because some Outlook builds send IDLE before SELECT.
//! Entering and leaving IDLE allocates nothing (the tag is kept inline).

use super::super::parser::{Args, ParseError};
use super::super::response::{self, Status};
use super::super::session::{Context, Mode, Outcome, Session, Tag};

pub(crate) fn start(
    session: &mut Session,
    args: &Args<'_>,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    args.finish()?;
    if !ctx.settings.idle_cmd {
        response::tagged(out, tag, Status::Bad, "IDLE is disabled on this server");
        return Ok(Outcome::Done(Status::Bad));
    }
    session.mode = Mode::Idle { tag: Tag::new(tag) };
    response::continuation(out, "idling");
    Ok(Outcome::Waiting)
}

/// Ends IDLE on the client's line; anything but `DONE` ends it with `BAD`.
pub(crate) fn done(line: &[u8], tag: &[u8], out: &mut Vec<u8>) -> Status {
    if line.eq_ignore_ascii_case(b"DONE") {
        response::tagged(out, tag, Status::Ok, "IDLE terminated");
        Status::Ok
    } else {
        response::tagged(out, tag, Status::Bad, "Expected DONE");
        Status::Bad
    }
}
