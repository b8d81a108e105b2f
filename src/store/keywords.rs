//! A folder's keyword list: Dovecot's `dovecot-keywords` file.
//!
//! Each line is `<index> <name>`; keyword `i` is the letter `a + i` in the flags part of message
//! file names, so there are at most 26. The file is shared with Dovecot: hato reads it as Dovecot
//! writes it and replaces it atomically when a keyword is first used. Names are matched without
//! regard to ASCII case and keep the spelling they were first stored with.

use std::fmt::Write as _;
use std::path::Path;

use super::StoreError;
use super::flags::MAX_KEYWORDS;

pub(crate) const FILE: &str = "dovecot-keywords";

/// Keyword names by index. A slot can be empty (an index missing from the file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keywords {
    names: Vec<Option<String>>,
}

impl Keywords {
    /// Reads a folder's list; a missing file is an empty list, unreadable lines are skipped.
    pub(crate) fn load(folder: &Path) -> Result<Keywords, StoreError> {
        let path = folder.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Keywords::parse(&String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keywords::default()),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    pub(crate) fn parse(text: &str) -> Keywords {
        let mut keywords = Keywords::default();
        for line in text.lines() {
            let Some((index, name)) = line.split_once(' ') else {
                continue;
            };
            let Ok(index) = index.parse::<usize>() else {
                continue;
            };
            if index >= MAX_KEYWORDS || validate(name).is_err() || keywords.find(name).is_some() {
                continue;
            }
            if keywords.names.len() <= index {
                keywords.names.resize(index + 1, None);
            }
            keywords.names[index] = Some(name.to_string());
        }
        keywords
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for (i, name) in self.iter() {
            let _ = writeln!(out, "{i} {name}");
        }
        out
    }

    /// Writes the list to the folder (atomically, durably).
    pub(crate) fn store(&self, folder: &Path) -> Result<(), StoreError> {
        super::fsutil::replace_file(
            &folder.join("tmp"),
            &folder.join(FILE),
            self.render().as_bytes(),
        )
    }

    /// The index of a keyword (ASCII case-insensitive).
    pub fn find(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }

    /// Adds a keyword in the first free slot; the caller stores the list.
    pub(crate) fn add(&mut self, name: &str) -> Result<usize, StoreError> {
        validate(name)?;
        if let Some(i) = self.find(name) {
            return Ok(i);
        }
        let slot = match self.names.iter().position(Option::is_none) {
            Some(free) => free,
            None if self.names.len() < MAX_KEYWORDS => {
                self.names.push(None);
                self.names.len() - 1
            }
            None => return Err(StoreError::TooManyKeywords),
        };
        self.names[slot] = Some(name.to_string());
        Ok(slot)
    }

    /// The name of keyword `index`.
    pub fn get(&self, index: usize) -> Option<&str> {
        self.names.get(index).and_then(|n| n.as_deref())
    }

    /// `(index, name)` of every keyword, by index.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        self.names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, n.as_deref()?)))
    }

    /// Names by index; an empty slot is an empty string (no message carries it).
    pub fn to_vec(&self) -> Vec<String> {
        self.names
            .iter()
            .map(|n| n.clone().unwrap_or_default())
            .collect()
    }

    /// The keyword bits that name a keyword of this list.
    pub fn mask(&self) -> u32 {
        self.iter().fold(0, |mask, (i, _)| mask | (1 << i))
    }

    pub fn is_empty(&self) -> bool {
        self.names.iter().all(Option::is_none)
    }
}

/// A keyword must be storable in the file and meaningful in IMAP: printable ASCII without
/// spaces, not a `\` system flag.
pub(crate) fn validate(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && !name.starts_with('\\')
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKeyword(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dovecot_file_with_gaps() {
        let k = Keywords::parse("0 $Forwarded\n2 Junk\nbad line\n30 TooHigh\n1 \n");
        assert_eq!(k.get(0), Some("$Forwarded"));
        assert_eq!(k.get(1), None);
        assert_eq!(k.get(2), Some("Junk"));
        assert_eq!(k.find("junk"), Some(2));
        assert_eq!(k.mask(), 0b101);
        assert_eq!(k.to_vec(), ["$Forwarded", "", "Junk"]);
        assert_eq!(k.render(), "0 $Forwarded\n2 Junk\n");
    }

    #[test]
    fn add_fills_gaps_then_stops_at_26() {
        let mut k = Keywords::parse("1 B\n");
        assert_eq!(k.add("A").unwrap(), 0);
        assert_eq!(k.add("b").unwrap(), 1);
        for i in 2..26 {
            assert_eq!(k.add(&format!("k{i}")).unwrap(), i);
        }
        assert!(matches!(
            k.add("one-too-many"),
            Err(StoreError::TooManyKeywords)
        ));
        assert!(matches!(
            k.add("has space"),
            Err(StoreError::InvalidKeyword(_))
        ));
        assert!(matches!(
            k.add("\\Seen"),
            Err(StoreError::InvalidKeyword(_))
        ));
    }
}
