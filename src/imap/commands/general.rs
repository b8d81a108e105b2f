//! Commands valid in any state (CAPABILITY, NOOP, LOGOUT, ID) and ENABLE.

use super::super::parser::{Args, ParseError};
use super::super::response::{self, CapabilityContext, Status};
use super::super::session::{Context, Outcome, Session, State};

pub(crate) fn capability(
    session: &Session,
    args: &Args<'_>,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    args.finish()?;
    let context = match session.state {
        State::NotAuthenticated => session.pre_auth_capabilities(ctx),
        _ => CapabilityContext::Authenticated,
    };
    out.extend_from_slice(b"* CAPABILITY ");
    response::capabilities(out, ctx.settings, context);
    out.extend_from_slice(b"\r\n");
    response::tagged(out, tag, Status::Ok, "CAPABILITY completed");
    Ok(Outcome::Done(Status::Ok))
}

/// STARTTLS (RFC 3501 §6.2.1): answers, then the driver starts the handshake; whatever the
/// client pipelined after the command is discarded (it was sent in the clear).
pub(crate) fn starttls(
    session: &Session,
    args: &Args<'_>,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    args.finish()?;
    if session.is_secure() {
        response::tagged(out, tag, Status::Bad, "TLS is already active");
        return Ok(Outcome::Done(Status::Bad));
    }
    if !ctx.tls_available {
        response::tagged(out, tag, Status::No, "[UNAVAILABLE] TLS is not configured");
        return Ok(Outcome::Done(Status::No));
    }
    response::tagged(out, tag, Status::Ok, "Begin TLS negotiation now");
    Ok(Outcome::StartTls)
}

/// NOOP: with no mailbox selected there is nothing to report. Allocation-free.
pub(crate) fn noop(args: &Args<'_>, tag: &[u8], out: &mut Vec<u8>) -> Result<Outcome, ParseError> {
    args.finish()?;
    response::tagged(out, tag, Status::Ok, "NOOP completed");
    Ok(Outcome::Done(Status::Ok))
}

pub(crate) fn logout(
    args: &Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    args.finish()?;
    response::untagged(out, "BYE Logging out");
    response::tagged(out, tag, Status::Ok, "LOGOUT completed");
    Ok(Outcome::Close(Status::Ok))
}

/// ID (RFC 2971): the client's fields are read and ignored; the answer is short and plain
/// because some Outlook builds break on unusual ID responses.
pub(crate) fn id(
    args: &mut Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    let mut fields = 0usize;
    args.nstring_list(|_| fields += 1)?;
    args.finish()?;
    if !fields.is_multiple_of(2) || fields > 60 {
        response::tagged(
            out,
            tag,
            Status::Bad,
            "ID takes at most 30 field/value pairs",
        );
        return Ok(Outcome::Done(Status::Bad));
    }
    out.extend_from_slice(b"* ID (\"name\" \"hato\" \"version\" \"");
    out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(b"\")\r\n");
    response::tagged(out, tag, Status::Ok, "ID completed");
    Ok(Outcome::Done(Status::Ok))
}

/// ENABLE (RFC 5161) of CONDSTORE and QRESYNC (RFC 7162 §3.1, §3.2.3; QRESYNC implies
/// CONDSTORE) and IMAP4rev2 (RFC 9051 §6.3.1). `* ENABLED` lists each supported name asked
/// for, once, also when it was already on (as Dovecot does: a client must never read a missing
/// name as "off" for an extension that is on); unknown names are ignored, as RFC 5161 §3.1
/// asks. IMAP4rev2 enabled with a mailbox selected takes effect at once: the view forgets its
/// `\Recent` messages, which rev2 does not have (RFC 9051 Appendix E).
pub(crate) fn enable(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    let mut names = vec![args.atom()?];
    while !args.at_end() {
        names.push(args.atom()?);
    }
    let (mut condstore, mut qresync, mut rev2) = (false, false, false);
    for name in names {
        if name.eq_ignore_ascii_case(b"CONDSTORE") {
            condstore = true;
        } else if name.eq_ignore_ascii_case(b"QRESYNC") {
            qresync = true;
        } else if name.eq_ignore_ascii_case(b"IMAP4rev2") {
            rev2 = true;
        }
    }
    out.extend_from_slice(b"* ENABLED");
    if condstore {
        session.enabled.enable_condstore();
        out.extend_from_slice(b" CONDSTORE");
    }
    if qresync {
        session.enabled.enable_qresync();
        out.extend_from_slice(b" QRESYNC");
    }
    if rev2 {
        session.enabled.enable_imap4rev2();
        if let Some(selected) = session.selected.as_deref_mut() {
            selected.forget_recent();
        }
        out.extend_from_slice(b" IMAP4rev2");
    }
    out.extend_from_slice(b"\r\n");
    response::tagged(out, tag, Status::Ok, "ENABLE completed");
    Ok(Outcome::Done(Status::Ok))
}

/// COMPRESS (RFC 4978): `DEFLATE` is the only mechanism. The `OK` goes out uncompressed; the
/// driver compresses both ways from the byte after it.
pub(crate) fn compress(
    session: &Session,
    args: &mut Args<'_>,
    tag: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    let mechanism = args.atom()?;
    args.finish()?;
    if !mechanism.eq_ignore_ascii_case(b"DEFLATE") {
        response::tagged(out, tag, Status::Bad, "Unknown compression mechanism");
        return Ok(Outcome::Done(Status::Bad));
    }
    if session.is_compressed() {
        response::tagged(
            out,
            tag,
            Status::No,
            "[COMPRESSIONACTIVE] DEFLATE is already active",
        );
        return Ok(Outcome::Done(Status::No));
    }
    response::tagged(out, tag, Status::Ok, "DEFLATE active");
    Ok(Outcome::Compress)
}
