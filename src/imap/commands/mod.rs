//! Command handlers, one file per concern, and the dispatch table that routes a parsed command
//! to its handler after checking the session state allows it.
//!
//! * [`general`]: CAPABILITY, NOOP, LOGOUT, ID, ENABLE (any or authenticated state).
//! * [`auth`]: LOGIN and AUTHENTICATE (PLAIN, LOGIN, with SASL-IR).
//! * [`idle`]: IDLE and its `DONE`.
//! * [`mailbox`]: SELECT, EXAMINE, CREATE (with CREATE-SPECIAL-USE), DELETE, RENAME,
//!   (UN)SUBSCRIBE, LIST, LSUB, STATUS, NAMESPACE.
//! * [`list`]: LIST-EXTENDED (RFC 5258, RFC 6154 §2) and LIST-STATUS (RFC 5819).
//! * [`selected`]: NOOP with a mailbox, CHECK, CLOSE, UNSELECT, EXPUNGE.
//! * [`message`]: STORE, COPY, MOVE, APPEND (with MULTIAPPEND), the UID forms, and the
//!   sequence-set helpers.
//! * [`fetch`]: FETCH (streaming large literals). [`search`]: SEARCH.
//! * [`sort`]: SORT and THREAD (and their UID forms).
//! * [`quota`]: GETQUOTA and GETQUOTAROOT (RFC 9208).

pub mod auth;
mod content;
pub mod fetch;
pub mod general;
pub mod idle;
pub mod list;
pub mod mailbox;
pub mod message;
pub mod quota;
pub mod search;
pub mod selected;
pub mod sort;

use std::time::Instant;

use super::CommandName;
use super::parser::{Command, ParseError};
use super::response::{self, Status};
use super::session::{Context, Outcome, Session, State};
use crate::store::UserMail;

/// Which states a command is valid in.
enum Needs {
    Any,
    NotAuthenticated,
    Authenticated,
    Selected,
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
        C::Check
        | C::Close
        | C::Unselect
        | C::Expunge
        | C::Search
        | C::Fetch
        | C::Store
        | C::Copy
        | C::Move
        | C::Sort
        | C::Thread
        | C::Uid => Needs::Selected,
        _ => Needs::Authenticated,
    };
    match (needs, &session.state) {
        (Needs::NotAuthenticated, State::Authenticated { .. }) => {
            response::tagged(out, tag, Status::Bad, "Already logged in");
            return Ok(Outcome::Done(Status::Bad));
        }
        (Needs::Authenticated | Needs::Selected, State::NotAuthenticated) => {
            response::tagged(out, tag, Status::Bad, "Log in first");
            return Ok(Outcome::Done(Status::Bad));
        }
        (Needs::Selected, _) if session.selected.is_none() => {
            return Ok(selected::no_mailbox(tag, out));
        }
        _ => {}
    }
    match name {
        C::Capability => general::capability(session, &args, tag, ctx, out),
        C::Logout => general::logout(&args, tag, out),
        C::Id => general::id(&mut args, tag, out),
        C::Enable => general::enable(session, &mut args, tag, out),
        C::Login | C::Authenticate if !session.login_allowed(ctx) => {
            response::tagged(
                out,
                tag,
                Status::No,
                "[PRIVACYREQUIRED] Log in over TLS: STARTTLS first, or IMAPS",
            );
            Ok(Outcome::Done(Status::No))
        }
        C::Login => auth::login(session, &mut args, tag, started),
        C::Authenticate => auth::authenticate(session, &mut args, tag, started, out),
        C::Starttls => general::starttls(session, &args, tag, ctx, out),
        C::Compress => general::compress(session, &mut args, tag, out),
        C::Idle => idle::start(session, &args, tag, ctx, out),
        C::Noop if session.selected.is_some() => selected::noop(session, &args, tag, ctx, out),
        C::Noop => general::noop(&args, tag, out),
        C::Select => mailbox::select(session, &mut args, tag, ctx, out, false),
        C::Examine => mailbox::select(session, &mut args, tag, ctx, out, true),
        C::Create => mailbox::create(session, &mut args, tag, ctx, out),
        C::Delete => mailbox::simple(session, &mut args, ctx, "DELETE", UserMail::delete),
        C::Subscribe => mailbox::simple(session, &mut args, ctx, "SUBSCRIBE", UserMail::subscribe),
        C::Unsubscribe => mailbox::simple(
            session,
            &mut args,
            ctx,
            "UNSUBSCRIBE",
            UserMail::unsubscribe,
        ),
        C::Rename => mailbox::rename(session, &mut args, ctx),
        C::List => mailbox::list(session, &mut args, tag, ctx, out, false),
        C::Lsub => mailbox::list(session, &mut args, tag, ctx, out, true),
        C::Status => mailbox::status(session, &mut args, ctx),
        C::Namespace => mailbox::namespace(&args, tag, out),
        C::Check => selected::check(session, &args, tag, out),
        C::Close => selected::close(session, &args, tag, out),
        C::Unselect => selected::unselect(session, &args, tag, out),
        C::Expunge => {
            args.finish()?;
            selected::expunge(session, None, tag, out)
        }
        C::Uid => match CommandName::uid_form(args.rest()) {
            C::UidSort => {
                args.atom()?;
                sort::sort_command(session, &mut args, tag, out, true)
            }
            C::UidThread => {
                args.atom()?;
                sort::thread_command(session, &mut args, tag, out, true)
            }
            _ => message::uid(session, &mut args, tag, ctx, out),
        },
        C::Sort => sort::sort_command(session, &mut args, tag, out, false),
        C::Thread => sort::thread_command(session, &mut args, tag, out, false),
        C::Fetch | C::Store | C::Search | C::Copy | C::Move => {
            message::plain(session, name, &mut args, tag, ctx, out)
        }
        C::Append => message::append(session, &mut args, tag, ctx, out),
        C::Getquotaroot => quota::getquotaroot(session, &mut args, ctx),
        C::Getquota => quota::getquota(session, &mut args, tag, ctx, out),
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
