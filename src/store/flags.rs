//! Message flags: the five system flags of RFC 3501 and up to 26 keywords per mailbox.
//!
//! Keywords are stored as bits; bit `i` is keyword `i` of the mailbox's keyword list (the
//! `dovecot-keywords` file, where Maildir file names carry keyword `i` as the letter `a + i`).
//! `\Recent` is not here: it belongs to a session's view, not to the message.

/// System flags as a bit set.
pub const SEEN: u8 = 1 << 0;
pub const ANSWERED: u8 = 1 << 1;
pub const FLAGGED: u8 = 1 << 2;
pub const DELETED: u8 = 1 << 3;
pub const DRAFT: u8 = 1 << 4;

/// Most keywords a mailbox can hold (Maildir file names have the letters `a`..=`z`).
pub const MAX_KEYWORDS: usize = 26;

/// A message's flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// [`SEEN`], [`ANSWERED`], [`FLAGGED`], [`DELETED`], [`DRAFT`].
    pub system: u8,
    /// Bit `i`: keyword `i` of the mailbox's keyword list.
    pub keywords: u32,
}

/// The system flags with their IMAP names and Maildir letters, in Maildir order (ASCII order of
/// the letters, as the Maildir spec requires in file names).
pub const SYSTEM_FLAGS: [(u8, &str, char); 5] = [
    (DRAFT, "\\Draft", 'D'),
    (FLAGGED, "\\Flagged", 'F'),
    (ANSWERED, "\\Answered", 'R'),
    (SEEN, "\\Seen", 'S'),
    (DELETED, "\\Deleted", 'T'),
];

impl Flags {
    pub fn has(&self, system_flag: u8) -> bool {
        self.system & system_flag != 0
    }

    pub fn has_keyword(&self, index: usize) -> bool {
        index < MAX_KEYWORDS && self.keywords & (1 << index) != 0
    }

    /// The system flag for an IMAP flag name (case-insensitive), e.g. `\Seen`.
    pub fn system_flag(name: &[u8]) -> Option<u8> {
        SYSTEM_FLAGS
            .iter()
            .find(|(_, n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            .map(|(bit, _, _)| *bit)
    }
}
