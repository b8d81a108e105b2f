//! Command handlers, one file per concern, and the dispatch table that routes a parsed command
//! to its handler after checking the session state allows it.
//!
//! * [`general`]: CAPABILITY, NOOP, LOGOUT, ID, ENABLE (any or authenticated state).
//! * [`auth`]: LOGIN and AUTHENTICATE (PLAIN, LOGIN, with SASL-IR).
//! * [`idle`]: IDLE and its `DONE`.

pub mod auth;
pub mod general;
pub mod idle;

use std::time::Instant;

use super::CommandName;
use super::parser::{Command, ParseError};
use super::response::{self, Status};
use super::session::{Context, Outcome, Session, State};

/// Which states a command is valid in.
enum Needs {
    Any,
    NotAuthenticated,
    Authenticated,
}

/// Routes `command` to its handler. A parse error becomes a tagged `BAD` in the caller.
pub(crate) fn dispatch(
    session: &mut Session,
    name: CommandName,
    command: Command<'_>,
    started: Instant,
    ctx: &mut Context<'_>,
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    use CommandName as C;
    let tag = command.tag;
    let mut args = command.args;
    let needs = match name {
        C::Capability | C::Noop | C::Logout | C::Id => Needs::Any,
        C::Login | C::Authenticate | C::Starttls => Needs::NotAuthenticated,
        C::Unknown => {
            response::tagged(out, tag, Status::Bad, "Unknown command");
            return Ok(Outcome::Done(Status::Bad));
        }
        _ => Needs::Authenticated,
    };
    match (needs, &session.state) {
        (Needs::NotAuthenticated, State::Authenticated { .. }) => {
            response::tagged(out, tag, Status::Bad, "Already logged in");
            return Ok(Outcome::Done(Status::Bad));
        }
        (Needs::Authenticated, State::NotAuthenticated) => {
            response::tagged(out, tag, Status::Bad, "Log in first");
            return Ok(Outcome::Done(Status::Bad));
        }
        _ => {}
    }
    match name {
        C::Capability => general::capability(session, &args, tag, ctx, out),
        C::Noop => general::noop(&args, tag, out),
        C::Logout => general::logout(&args, tag, out),
        C::Id => general::id(&mut args, tag, out),
        C::Enable => general::enable(&mut args, tag, out),
        C::Login => auth::login(session, &mut args, tag, started),
        C::Authenticate => auth::authenticate(session, &mut args, tag, started, out),
        C::Idle => idle::start(session, &args, tag, ctx, out),
        _ => {
            // Known IMAP commands that this build does not serve yet: a clear refusal, never a
            // pretend success.
            out.extend_from_slice(tag);
            out.extend_from_slice(b" NO [CANNOT] ");
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b" is not supported by this server yet\r\n");
            Ok(Outcome::Done(Status::No))
        }
    }
}
