//! QUOTA (RFC 9208): GETQUOTAROOT and GETQUOTA. SETQUOTA is not offered (no `QUOTASET`
//! capability): limits are the operator's (`QuotaStorage.1`, `QuotaMessages.1`, the
//! passwd-file's `quota_rule`), see [`crate::store::quota`].
//!
//! Every user has one quota root, `""`, over all of their folders. It is always reported,
//! listing only the resources that have a limit (`* QUOTA "" ()` when none has), so a client
//! sees the same root whether or not the operator set limits, and usage is only read when
//! something is limited. STORAGE is in KiB (usage rounded up, so a non-empty mailbox never
//! shows 0), MESSAGE in messages.

use std::sync::Arc;

use super::super::parser::{Args, ParseError};
use super::super::response::{self, Status};
use super::super::session::{Context, Done, Outcome, Session, Work};
use super::mailbox::{mailbox_arg, store_failure, write_mailbox_name};
use crate::store::quota::ROOT_NAME;
use crate::store::{QuotaState, Store, StoreError};

/// `GETQUOTAROOT mailbox`: `* QUOTAROOT mailbox ""` and the root's `* QUOTA`. A mailbox that
/// does not exist gets `NO [NONEXISTENT]`.
pub(crate) fn getquotaroot(
    session: &mut Session,
    args: &mut Args<'_>,
    ctx: &Context<'_>,
) -> Result<Outcome, ParseError> {
    let name = mailbox_arg(args, session.utf8_names())?;
    args.finish()?;
    let store: Arc<Store> = ctx.store.clone();
    let user = session.user().unwrap_or_default().to_string();
    Ok(Outcome::Work(Work::new(move || {
        let result = store.user(&user).and_then(|mail| {
            if !mail.exists(&name)? {
                return Err(StoreError::NoSuchMailbox(name.clone()));
            }
            mail.quota()
        });
        Done::new(move |session, tag, out| match result {
            Ok(state) => {
                out.extend_from_slice(b"* QUOTAROOT ");
                write_mailbox_name(&name, session.utf8_names(), out);
                out.push(b' ');
                response::string(out, ROOT_NAME.as_bytes());
                out.extend_from_slice(b"\r\n");
                write_quota(&state, out);
                response::tagged(out, tag, Status::Ok, "GETQUOTAROOT completed");
                Status::Ok
            }
            Err(e) => store_failure(&e, tag, out),
        })
    })))
}

/// `GETQUOTA root`: `* QUOTA "" (...)` for the user's root; any other name gets
/// `NO [NONEXISTENT]`.
pub(crate) fn getquota(
    session: &mut Session,
    args: &mut Args<'_>,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> Result<Outcome, ParseError> {
    let root = args.astring()?;
    args.finish()?;
    if root.as_ref() != ROOT_NAME.as_bytes() {
        response::tagged(out, tag, Status::No, "[NONEXISTENT] No such quota root");
        return Ok(Outcome::Done(Status::No));
    }
    let store: Arc<Store> = ctx.store.clone();
    let user = session.user().unwrap_or_default().to_string();
    Ok(Outcome::Work(Work::new(move || {
        let result = store.user(&user).and_then(|mail| mail.quota());
        Done::new(move |_, tag, out| match result {
            Ok(state) => {
                write_quota(&state, out);
                response::tagged(out, tag, Status::Ok, "GETQUOTA completed");
                Status::Ok
            }
            Err(e) => store_failure(&e, tag, out),
        })
    })))
}

/// `* QUOTA "" (STORAGE used limit MESSAGE used limit)`, limited resources only.
fn write_quota(state: &QuotaState, out: &mut Vec<u8>) {
    out.extend_from_slice(b"* QUOTA ");
    response::string(out, ROOT_NAME.as_bytes());
    out.extend_from_slice(b" (");
    let usage = state.usage.unwrap_or_default();
    let mut first = true;
    let mut resource = |out: &mut Vec<u8>, text: String| {
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(text.as_bytes());
    };
    if let Some(limit) = state.limits.storage {
        resource(
            out,
            format!("STORAGE {} {}", usage.bytes.div_ceil(1024), limit / 1024),
        );
    }
    if let Some(limit) = state.limits.messages {
        resource(out, format!("MESSAGE {} {limit}", usage.messages));
    }
    out.extend_from_slice(b")\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{QuotaLimits, QuotaUsage};

    fn quota_line(limits: QuotaLimits, usage: Option<QuotaUsage>) -> String {
        let mut out = Vec::new();
        write_quota(&QuotaState { limits, usage }, &mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn only_limited_resources_are_listed() {
        let usage = Some(QuotaUsage {
            bytes: 1025,
            messages: 3,
        });
        assert_eq!(
            quota_line(QuotaLimits::from_settings(2048, 100), usage),
            "* QUOTA \"\" (STORAGE 2 2048 MESSAGE 3 100)\r\n"
        );
        assert_eq!(
            quota_line(QuotaLimits::from_settings(0, 100), usage),
            "* QUOTA \"\" (MESSAGE 3 100)\r\n"
        );
        assert_eq!(
            quota_line(QuotaLimits::default(), None),
            "* QUOTA \"\" ()\r\n"
        );
    }
}
