//! ENVELOPE (RFC 3501 §7.4.2) from a header, with Dovecot's choices: the last Date, Subject,
//! In-Reply-To and Message-ID header wins, repeated address headers are merged, Sender and
//! Reply-To default to From, encoded words are left as sent, Subject and display names have
//! their whitespace runs collapsed, and other strings lose their line ends.

use std::borrow::Cow;

use super::address::{self, Address};
use super::header::{Field, strdup};
use crate::imap::response::string;

/// The parsed envelope fields of one header.
#[derive(Debug, Default)]
pub(super) struct Envelope<'a> {
    date: Option<Cow<'a, [u8]>>,
    subject: Option<Cow<'a, [u8]>>,
    from: Vec<Address>,
    sender: Vec<Address>,
    reply_to: Vec<Address>,
    to: Vec<Address>,
    cc: Vec<Address>,
    bcc: Vec<Address>,
    in_reply_to: Option<Cow<'a, [u8]>>,
    message_id: Option<Cow<'a, [u8]>>,
}

impl<'a> Envelope<'a> {
    pub(super) fn from_fields(fields: &[Field<'a>]) -> Self {
        let mut env = Envelope::default();
        for f in fields {
            let name = f.name;
            let value = || match &f.value {
                Cow::Borrowed(v) => strdup(v),
                Cow::Owned(v) => Cow::Owned(strdup(v).into_owned()),
            };
            if name.eq_ignore_ascii_case(b"Date") {
                env.date = Some(value());
            } else if name.eq_ignore_ascii_case(b"Subject") {
                env.subject = Some(value());
            } else if name.eq_ignore_ascii_case(b"Message-ID") {
                env.message_id = Some(value());
            } else if name.eq_ignore_ascii_case(b"In-Reply-To") {
                env.in_reply_to = Some(value());
            } else {
                let list = if name.eq_ignore_ascii_case(b"From") {
                    &mut env.from
                } else if name.eq_ignore_ascii_case(b"Sender") {
                    &mut env.sender
                } else if name.eq_ignore_ascii_case(b"Reply-To") {
                    &mut env.reply_to
                } else if name.eq_ignore_ascii_case(b"To") {
                    &mut env.to
                } else if name.eq_ignore_ascii_case(b"Cc") {
                    &mut env.cc
                } else if name.eq_ignore_ascii_case(b"Bcc") {
                    &mut env.bcc
                } else {
                    continue;
                };
                list.extend(address::parse(&f.value));
            }
        }
        env
    }

    /// Writes the ten envelope fields, space separated, without the surrounding parentheses.
    pub(super) fn write_fields(&self, out: &mut Vec<u8>) {
        nstring_nolf(out, self.date.as_deref());
        out.push(b' ');
        match &self.subject {
            Some(s) => string_for_humans(out, s),
            None => out.extend_from_slice(b"NIL"),
        }
        out.push(b' ');
        write_addresses(out, &self.from);
        out.push(b' ');
        write_addresses(
            out,
            if self.sender.is_empty() {
                &self.from
            } else {
                &self.sender
            },
        );
        out.push(b' ');
        write_addresses(
            out,
            if self.reply_to.is_empty() {
                &self.from
            } else {
                &self.reply_to
            },
        );
        out.push(b' ');
        write_addresses(out, &self.to);
        out.push(b' ');
        write_addresses(out, &self.cc);
        out.push(b' ');
        write_addresses(out, &self.bcc);
        out.push(b' ');
        nstring_nolf(out, self.in_reply_to.as_deref());
        out.push(b' ');
        nstring_nolf(out, self.message_id.as_deref());
    }
}

fn write_addresses(out: &mut Vec<u8>, list: &[Address]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        match &a.name {
            Some(n) => string_for_humans(out, n),
            None => out.extend_from_slice(b"NIL"),
        }
        out.push(b' ');
        nstring(out, a.route.as_deref());
        out.push(b' ');
        nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        nstring(out, a.domain.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

/// An IMAP nstring.
pub(super) fn nstring(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) => string(out, v),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// An nstring with CR and LF removed; a space replaces a line end not followed by whitespace
/// (Dovecot's `imap_append_nstring_nolf`).
pub(super) fn nstring_nolf(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let Some(v) = value else {
        out.extend_from_slice(b"NIL");
        return;
    };
    if !v.iter().any(|&c| c == b'\r' || c == b'\n') {
        string(out, v);
        return;
    }
    let mut clean = Vec::with_capacity(v.len());
    for (i, &c) in v.iter().enumerate() {
        if c != b'\r' && c != b'\n' {
            clean.push(c);
        } else if !matches!(
            v.get(i + 1).copied().unwrap_or(0),
            b' ' | b'\t' | b'\r' | b'\n' | 0
        ) {
            clean.push(b' ');
        }
    }
    string(out, &clean);
}

/// A string for display: whitespace runs (including line ends) become one space, leading and
/// trailing whitespace goes, NUL becomes 0x80 (Dovecot's `imap_append_string_for_humans`).
pub(super) fn string_for_humans(out: &mut Vec<u8>, value: &[u8]) {
    let mut clean = Vec::with_capacity(value.len());
    let mut last_lwsp = true;
    for &c in value {
        match c {
            0 => {
                clean.push(0x80);
                last_lwsp = false;
            }
            b'\r' | b'\n' | b'\t' | b' ' => {
                if !last_lwsp {
                    clean.push(b' ');
                }
                last_lwsp = true;
            }
            _ => {
                clean.push(c);
                last_lwsp = false;
            }
        }
    }
    if last_lwsp && clean.last() == Some(&b' ') {
        clean.pop();
    }
    string(out, &clean);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::fetch::write_envelope;

    fn env(raw: &[u8]) -> String {
        let mut out = Vec::new();
        write_envelope(raw, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn full_envelope() {
        let raw = b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\
Subject: =?utf-8?q?h=C3=A9llo?=\r\n\t world\r\n\
From: \"Doe, J\" <j@example.com>\r\n\
To: a@b, Group: c@d;\r\n\
Message-ID: <id@x>\r\n\r\nbody";
        assert_eq!(
            env(raw),
            "(\"Mon, 1 Jan 2024 10:00:00 +0000\" \"=?utf-8?q?h=C3=A9llo?= world\" \
((\"Doe, J\" NIL \"j\" \"example.com\")) ((\"Doe, J\" NIL \"j\" \"example.com\")) \
((\"Doe, J\" NIL \"j\" \"example.com\")) ((NIL NIL \"a\" \"b\")(NIL NIL \"Group\" NIL)\
(NIL NIL \"c\" \"d\")(NIL NIL NIL NIL)) NIL NIL NIL \"<id@x>\")"
        );
    }

    #[test]
    fn empty_header() {
        assert_eq!(
            env(b"\r\nbody"),
            "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn nolf_and_humans() {
        let mut out = Vec::new();
        nstring_nolf(&mut out, Some(b"a\r\nb\n\tc"));
        assert_eq!(out, b"\"a b\tc\"");
        out.clear();
        string_for_humans(&mut out, b"  a \t\r\n b  ");
        assert_eq!(out, b"\"a b\"");
        out.clear();
        string_for_humans(&mut out, b"   ");
        assert_eq!(out, b"\"\"");
    }
}
