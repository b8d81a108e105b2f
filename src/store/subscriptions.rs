//! The subscription list: Dovecot's `subscriptions` file in the Maildir root.
//!
//! Dovecot 2.3 writes the header `V\t2` and an empty line, then one mailbox per line with its
//! hierarchy levels separated by tabs (each level tab-escaped: `\x01` + `1`/`t`/`r`/`n`);
//! older versions wrote one name per line with the hierarchy separator. Either way the names are
//! Dovecot's storage names, i.e. modified UTF-7. hato reads both formats (and plain UTF-8 names
//! a hand-written file may hold) and writes the 2.3 format, so Dovecot can read it back.

use std::path::Path;

use crate::imap::mailbox_name;

use super::StoreError;
use super::names::{self, SEP};

pub(crate) const FILE: &str = "subscriptions";
const V2_HEADER: &str = "V\t2\n";

/// The subscribed names (canonical UTF-8), in file order without repeats. Lines that are not
/// valid names are skipped.
pub(crate) fn read(root: &Path) -> Result<Vec<String>, StoreError> {
    let path = root.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

pub(crate) fn exists(root: &Path) -> bool {
    root.join(FILE).exists()
}

pub(crate) fn parse(text: &str) -> Vec<String> {
    let (v2, body) = match text.strip_prefix(V2_HEADER) {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut out: Vec<String> = Vec::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        let levels: Vec<String> = if v2 {
            line.split('\t').map(tab_unescape).collect()
        } else {
            line.split(SEP).map(str::to_string).collect()
        };
        let decoded: Vec<String> = levels
            .iter()
            .map(|level| match mailbox_name::decode(level.as_bytes()) {
                Ok(utf8) => utf8.into_owned(),
                Err(_) => level.clone(),
            })
            .collect();
        if let Ok(name) = names::canonical(&decoded.join(&SEP.to_string()))
            && !out.contains(&name)
        {
            out.push(name);
        }
    }
    out
}

pub(crate) fn render(subscribed: &[String]) -> String {
    let mut out = format!("{V2_HEADER}\n");
    for name in subscribed {
        let levels: Vec<String> = name
            .split(SEP)
            .map(|level| tab_escape(&mailbox_name::encode(level)))
            .collect();
        out.push_str(&levels.join("\t"));
        out.push('\n');
    }
    out
}

pub(crate) fn write(root: &Path, subscribed: &[String]) -> Result<(), StoreError> {
    super::fsutil::replace_file(
        &root.join("tmp"),
        &root.join(FILE),
        render(subscribed).as_bytes(),
    )
}

/// Dovecot's `str_append_tabescaped`.
fn tab_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\x01' => out.push_str("\x011"),
            '\t' => out.push_str("\x01t"),
            '\r' => out.push_str("\x01r"),
            '\n' => out.push_str("\x01n"),
            c => out.push(c),
        }
    }
    out
}

/// Dovecot's `str_append_tabunescaped`.
fn tab_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dovecot_2_3_format() {
        let text = "V\t2\n\nINBOX\nWork\tProjects\nEntw&APw-rfe\nSent\nSent\n";
        assert_eq!(parse(text), ["INBOX", "Work.Projects", "Entwürfe", "Sent"]);
    }

    #[test]
    fn reads_old_format_and_utf8() {
        let text = "inbox\nWork.Projects\nEntwürfe\nbad..name\n";
        assert_eq!(parse(text), ["INBOX", "Work.Projects", "Entwürfe"]);
    }

    #[test]
    fn writes_dovecot_2_3_format() {
        let names = [
            "INBOX".to_string(),
            "Work.Projects".into(),
            "Entwürfe".into(),
        ];
        let text = render(&names);
        assert_eq!(text, "V\t2\n\nINBOX\nWork\tProjects\nEntw&APw-rfe\n");
        assert_eq!(parse(&text), names);
    }

    #[test]
    fn tab_escaping() {
        assert_eq!(tab_unescape(&tab_escape("a\tb\x01c\n")), "a\tb\x01c\n");
    }
}
