//! A message's bytes for FETCH and SEARCH: read into memory when small, mapped from the page
//! cache when large.

use crate::store::{Mailbox, StoreError};

/// A message's bytes: read into memory when small, mapped from the page cache when large, so a
/// 50 MiB attachment does not cost 50 MiB of this process's memory per FETCH.
pub(crate) enum Content {
    Read(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Content {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Content::Read(v) => v,
            Content::Mapped(m) => m,
        }
    }
}

/// Messages larger than this are mapped rather than read.
const MAP_ABOVE: u64 = 256 * 1024;

pub(crate) fn load(mailbox: &Mailbox, uid: u32) -> Result<Content, StoreError> {
    use std::io::Read;
    let mut file = mailbox.open_message(uid)?;
    let io_error = |source| StoreError::Io {
        path: mailbox.path_of(uid).unwrap_or_default(),
        source,
    };
    let len = file.metadata().map_err(io_error)?.len();
    if len > MAP_ABOVE {
        // SAFETY: Maildir message files are immutable once delivered: writers create a new
        // file in tmp/ and rename it, flag changes rename, expunges unlink; none of them
        // modifies or truncates a file in place, and a mapping of an unlinked file stays
        // valid. Only a foreign program breaking the Maildir contract could truncate it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error)?;
        return Ok(Content::Mapped(map));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(io_error)?;
    Ok(Content::Read(bytes))
}
