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

/// Every system flag bit.
pub const ALL_SYSTEM: u8 = SEEN | ANSWERED | FLAGGED | DELETED | DRAFT;

/// How STORE combines the given flags with a message's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagMode {
    /// `+FLAGS`: set the given flags, keep the others.
    Add,
    /// `-FLAGS`: clear the given flags, keep the others.
    Remove,
    /// `FLAGS`: the message gets exactly the given flags.
    Replace,
}

impl FlagMode {
    /// The flags a message with `old` flags gets.
    pub fn apply(self, old: Flags, given: Flags) -> Flags {
        match self {
            FlagMode::Add => Flags {
                system: old.system | given.system,
                keywords: old.keywords | given.keywords,
            },
            FlagMode::Remove => Flags {
                system: old.system & !given.system,
                keywords: old.keywords & !given.keywords,
            },
            FlagMode::Replace => given,
        }
    }
}

impl Flags {
    pub fn is_empty(&self) -> bool {
        self.system == 0 && self.keywords == 0
    }

    /// Reads the flag letters of a Maildir `:2,` info part. Letters that are neither system
    /// flags nor keywords (other upper-case letters, digits, ...) are returned apart, so that a
    /// rename for a flag change keeps them.
    pub fn from_maildir_letters(letters: &str) -> (Flags, String) {
        let mut flags = Flags::default();
        let mut unknown = String::new();
        for c in letters.chars() {
            if let Some((bit, _, _)) = SYSTEM_FLAGS.iter().find(|(_, _, l)| *l == c) {
                flags.system |= bit;
            } else if c.is_ascii_lowercase() {
                flags.keywords |= 1 << (c as u32 - 'a' as u32);
            } else {
                unknown.push(c);
            }
        }
        (flags, unknown)
    }

    /// The Maildir flag letters for these flags plus `unknown` letters, in ASCII order without
    /// repeats, as the Maildir specification requires.
    pub fn to_maildir_letters(&self, unknown: &str) -> String {
        let mut letters: Vec<char> = Vec::with_capacity(8);
        for (bit, _, letter) in SYSTEM_FLAGS {
            if self.has(bit) {
                letters.push(letter);
            }
        }
        for i in 0..MAX_KEYWORDS {
            if self.has_keyword(i) {
                // i < 26, so this is a letter a..=z.
                letters.push(char::from(b'a' + i as u8));
            }
        }
        letters.extend(unknown.chars().filter(|c| !c.is_control() && *c != '/'));
        letters.sort_unstable();
        letters.dedup();
        letters.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_letters_round_trip_in_ascii_order() {
        let flags = Flags {
            system: SEEN | FLAGGED | DELETED,
            keywords: 0b101,
        };
        assert_eq!(flags.to_maildir_letters(""), "FSTac");
        assert_eq!(flags.to_maildir_letters("P"), "FPSTac");
        let (back, unknown) = Flags::from_maildir_letters("FPSTac");
        assert_eq!(back, flags);
        assert_eq!(unknown, "P");
    }

    #[test]
    fn flag_modes() {
        let old = Flags {
            system: SEEN,
            keywords: 1,
        };
        let given = Flags {
            system: FLAGGED | SEEN,
            keywords: 2,
        };
        assert_eq!(
            FlagMode::Add.apply(old, given),
            Flags {
                system: SEEN | FLAGGED,
                keywords: 3
            }
        );
        assert_eq!(
            FlagMode::Remove.apply(old, given),
            Flags {
                system: 0,
                keywords: 1
            }
        );
        assert_eq!(FlagMode::Replace.apply(old, given), given);
    }
}
