//! LOGIN and AUTHENTICATE (SASL PLAIN and LOGIN, with SASL-IR, RFC 4959).
//!
//! Handlers only collect credentials; checking them is slow (argon2), so the session hands
//! them to the driver as `Step::Verify` and answers in `Session::finish_auth`.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::super::CommandName;
use super::super::parser::{Args, ParseError};
use super::super::response::{self, Status};
use super::super::session::{Credentials, Mode, Outcome, Pending, Sasl, SaslStep, Session, Tag};

/// `Username:` and `Password:` in base64, the customary SASL LOGIN prompts.
const PROMPT_USER: &str = "VXNlcm5hbWU6";
const PROMPT_PASSWORD: &str = "UGFzc3dvcmQ6";

pub(crate) fn login(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    started: Instant,
) -> Result<Outcome, ParseError> {
    let user = args.astring()?;
    let password = args.astring()?;
    args.finish()?;
    let credentials = Credentials {
        user: String::from_utf8_lossy(&user).into_owned(),
        password: password.into_owned(),
    };
    Ok(verify(
        session,
        Tag::new(tag),
        CommandName::Login,
        started,
        credentials,
    ))
}

pub(crate) fn authenticate(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    started: Instant,
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    let mechanism = args.atom()?;
    let initial = if args.at_end() {
        None
    } else {
        Some(args.atom()?)
    };
    args.finish()?;
    let step = if mechanism.eq_ignore_ascii_case(b"PLAIN") {
        SaslStep::Plain
    } else if mechanism.eq_ignore_ascii_case(b"LOGIN") {
        SaslStep::LoginUser
    } else {
        response::tagged(out, tag, Status::No, "Unsupported authentication mechanism");
        return Ok(Outcome::Done(Status::No));
    };
    let tag = Tag::new(tag);
    match initial {
        // SASL-IR: "=" stands for an empty initial response.
        Some(ir) => Ok(sasl_response(session, tag, step, ir, started, out)),
        None => {
            let prompt = match step {
                SaslStep::LoginUser => PROMPT_USER,
                _ => "",
            };
            session.mode = Mode::Sasl(Box::new(Sasl { tag, step }));
            response::continuation(out, prompt);
            Ok(Outcome::Waiting)
        }
    }
}

/// Handles one client line of a SASL exchange.
pub(crate) fn sasl_response(
    session: &mut Session,
    tag: Tag,
    step: SaslStep,
    line: &[u8],
    started: Instant,
    out: &mut Vec<u8>,
) -> Outcome {
    if line == b"*" {
        response::tagged(out, tag.as_bytes(), Status::Bad, "AUTHENTICATE cancelled");
        return Outcome::Done(Status::Bad);
    }
    let decoded = if line == b"=" {
        Ok(Vec::new())
    } else {
        STANDARD.decode(line)
    };
    let Ok(decoded) = decoded else {
        response::tagged(
            out,
            tag.as_bytes(),
            Status::Bad,
            "Invalid base64 in SASL response",
        );
        return Outcome::Done(Status::Bad);
    };
    match step {
        SaslStep::Plain => match split_plain(&decoded) {
            Some(credentials) => verify(
                session,
                tag,
                CommandName::Authenticate,
                started,
                credentials,
            ),
            None => {
                response::tagged(
                    out,
                    tag.as_bytes(),
                    Status::No,
                    "[AUTHENTICATIONFAILED] Authentication failed.",
                );
                Outcome::Done(Status::No)
            }
        },
        SaslStep::LoginUser => {
            let user = String::from_utf8_lossy(&decoded).into_owned();
            session.mode = Mode::Sasl(Box::new(Sasl {
                tag,
                step: SaslStep::LoginPassword { user },
            }));
            response::continuation(out, PROMPT_PASSWORD);
            Outcome::Waiting
        }
        SaslStep::LoginPassword { user } => verify(
            session,
            tag,
            CommandName::Authenticate,
            started,
            Credentials {
                user,
                password: decoded,
            },
        ),
    }
}

/// `[authzid] NUL authcid NUL passwd` (RFC 4616). Acting as another user (an authzid that
/// differs from the authcid) is not supported and fails like a wrong password.
fn split_plain(message: &[u8]) -> Option<Credentials> {
    let mut parts = message.splitn(3, |&b| b == 0);
    let authzid = parts.next()?;
    let authcid = parts.next()?;
    let password = parts.next()?;
    if authcid.is_empty() || (!authzid.is_empty() && authzid != authcid) {
        return None;
    }
    Some(Credentials {
        user: String::from_utf8_lossy(authcid).into_owned(),
        password: password.to_vec(),
    })
}

fn verify(
    session: &mut Session,
    tag: Tag,
    command: CommandName,
    started: Instant,
    credentials: Credentials,
) -> Outcome {
    session.mode = Mode::Verifying(Box::new(Pending {
        tag,
        command,
        started,
    }));
    Outcome::Verify(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_forms() {
        let c = split_plain(b"\0joe\0pw").expect("valid");
        assert_eq!(
            (c.user.as_str(), c.password.as_slice()),
            ("joe", &b"pw"[..])
        );
        assert!(split_plain(b"joe\0joe\0pw").is_some());
        assert!(split_plain(b"admin\0joe\0pw").is_none());
        assert!(split_plain(b"\0\0pw").is_none());
        assert!(split_plain(b"joe").is_none());
        let c = split_plain(b"\0joe\0p\0w").expect("NUL inside the password is kept");
        assert_eq!(c.password, b"p\0w");
    }
}
