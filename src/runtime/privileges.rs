//! Dropping root: started as root, hato binds its ports (IMAP 143, IMAPS 993, LMTP 24 need it)
//! and then becomes `RunAsUser.1` (and `RunAsGroup.1`) for good, before any session is served.
//!
//! glibc applies `setuid`/`setgid` to every thread of the process, so the helper threads
//! started before (reload, TLS, LMTP) change with it. The spool must belong to that user; hato
//! does not change the ownership of mail on its own. Under systemd, `User=` with
//! `AmbientCapabilities=CAP_NET_BIND_SERVICE` does the same without root at all.

use std::ffi::CString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use thiserror::Error;
use tracing::{info, warn};

#[derive(Debug, Error)]
pub enum PrivilegeError {
    #[error("RunAsUser.1: no user {0:?}")]
    NoUser(String),
    #[error("RunAsGroup.1: no group {0:?}")]
    NoGroup(String),
    #[error("cannot become {user} ({uid}:{gid}): {source}")]
    Switch {
        user: String,
        uid: u32,
        gid: u32,
        source: io::Error,
    },
}

/// Who to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Looks the user (and group) up in the system's databases.
pub fn resolve(user: &str, group: Option<&str>) -> Result<Identity, PrivilegeError> {
    let (uid, primary) = lookup_user(user).ok_or_else(|| PrivilegeError::NoUser(user.into()))?;
    let gid = match group {
        Some(group) => lookup_group(group).ok_or_else(|| PrivilegeError::NoGroup(group.into()))?,
        None => primary,
    };
    Ok(Identity {
        user: user.to_string(),
        uid,
        gid,
    })
}

/// Becomes `identity` for good: supplementary groups, group, then user. Files that must stay
/// usable by the new user (the admin socket and its directory) are handed over first.
pub fn become_user(identity: &Identity, hand_over: &[&Path]) -> Result<(), PrivilegeError> {
    let fail = |source: io::Error| PrivilegeError::Switch {
        user: identity.user.clone(),
        uid: identity.uid,
        gid: identity.gid,
        source,
    };
    for path in hand_over {
        std::os::unix::fs::chown(path, Some(identity.uid), Some(identity.gid)).map_err(fail)?;
    }
    // SAFETY: setgroups reads one gid from a valid local; setgid/setuid take plain integers.
    // glibc applies each to every thread of the process.
    unsafe {
        if libc::setgroups(1, &identity.gid) != 0
            || libc::setgid(identity.gid) != 0
            || libc::setuid(identity.uid) != 0
        {
            return Err(fail(io::Error::last_os_error()));
        }
    }
    // Root must be gone for good: getting it back has to fail.
    // SAFETY: setuid takes a plain integer.
    if identity.uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err(fail(io::Error::other("root could be regained")));
    }
    info!(
        "running as {} ({}:{})",
        identity.user, identity.uid, identity.gid
    );
    Ok(())
}

/// Warns when the spool does not belong to the user hato becomes (mail would not be writable).
pub fn check_spool_owner(spool: &Path, identity: &Identity) {
    match std::fs::metadata(spool) {
        Ok(meta) if meta.uid() != identity.uid => warn!(
            "the spool {} belongs to uid {}, not to {} ({}): mail may not be writable; \
             chown -R it",
            spool.display(),
            meta.uid(),
            identity.user,
            identity.uid
        ),
        _ => {}
    }
}

/// (uid, primary gid) of a user name.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    // SAFETY: an all-zero passwd is a valid value for getpwnam_r to fill.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: the name is NUL-terminated, `entry` and
    // `found` are exclusively borrowed locals, and `buf` has `buf.len()` writable bytes that
    // getpwnam_r uses for the strings `entry` points to (not read after this function).
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some((entry.pw_uid, entry.pw_gid))
}

/// The gid of a group name.
fn lookup_group(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: an all-zero group is a valid value for getgrnam_r to fill.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `lookup_user`, for getgrnam_r.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(entry.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_are_looked_up() {
        let root = resolve("root", None).expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(matches!(
            resolve("no-such-user-hato", None),
            Err(PrivilegeError::NoUser(_))
        ));
        assert!(matches!(
            resolve("root", Some("no-such-group-hato")),
            Err(PrivilegeError::NoGroup(_))
        ));
        // A name with a NUL cannot exist.
        assert!(lookup_user("ro\0ot").is_none());
    }
}
