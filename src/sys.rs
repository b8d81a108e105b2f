//! Thin, safe wrappers over the Linux calls the watcher threads share (owning a descriptor a
//! call returned, waiting on several descriptors, non-blocking reads), so that each `unsafe`
//! block and its proof live in one place.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Takes ownership of a descriptor a libc call just returned, or turns `-1` into its error.
pub(crate) fn owned_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned open by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: no limit); says which are
/// readable. An interrupted wait reports none.
pub(crate) fn poll_readable<const N: usize>(
    fds: [RawFd; N],
    timeout: Option<Duration>,
) -> io::Result<[bool; N]> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let timeout = match timeout {
        None => -1,
        // Rounded up so that a wait never ends just before its deadline.
        Some(t) => libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX),
    };
    // SAFETY: `pfds` is a valid, exclusively borrowed array of `N` pollfds; negative fds are
    // ignored by poll(2).
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, timeout) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok([false; N]);
        }
        return Err(err);
    }
    Ok(pfds.map(|p| p.revents != 0))
}

/// `read(2)` on a non-blocking descriptor: `Ok(None)` when nothing is queued.
pub(crate) fn read_nonblocking(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is valid and writable for `buf.len()` bytes during the call.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast::<libc::c_void>(), buf.len()) };
        if n >= 0 {
            // Non-negative and at most buf.len().
            return Ok(Some(n as usize));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// Blocks `signals` in the calling thread (threads it starts later inherit the mask) and
/// returns a signalfd (close-on-exec, plus `flags`) that reads them.
pub(crate) fn block_signals(signals: &[libc::c_int], flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `set` is a valid sigset_t initialised by sigemptyset before any other use; the
    // calls only read or write that one local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        owned_fd(libc::signalfd(-1, &set, libc::SFD_CLOEXEC | flags))
    }
}
