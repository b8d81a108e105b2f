//! Section contents for `BODY[...]`, `RFC822.*` and `BINARY[...]`, as Dovecot serves them.
//!
//! Section bytes are always sent with CRLF line ends (a bare LF gets its CR) and NUL bytes as
//! 0x80, since IMAP literals may not contain NUL. `HEADER.FIELDS` keeps the matching header
//! fields (with their continuation lines) in message order, then the empty line; when the
//! header has no empty line, a line end is added for the top-level `HEADER.FIELDS` only (as
//! Dovecot does). `MIME` of a part that is the whole (non-multipart)
//! message is the message header, and `HEADER`/`TEXT`/`HEADER.FIELDS` of a part are only
//! valid for message/rfc822 parts.
//!
//! BINARY follows Dovecot's `index-mail-binary.c`: a leaf part's body decoded from base64 or
//! quoted-printable (other encodings verbatim), and for multiparts, embedded messages and the
//! whole message, the raw structure with every converted part's body decoded and its
//! Content-Transfer-Encoding header replaced by `binary`.

use std::borrow::Cow;

use memchr::{memchr, memchr_iter};

use super::header::{self, Field};
use super::mime::{self, Part};
use super::rfc822::Parser;
use super::{FetchError, Section, SectionText};

/// Adds the missing CR of bare LFs (like Dovecot's `istream-crlf`) and turns NUL into 0x80.
pub(super) fn normalize(bytes: Cow<'_, [u8]>, nuls: bool) -> Cow<'_, [u8]> {
    let needs_cr = memchr_iter(b'\n', &bytes).any(|i| i == 0 || bytes[i - 1] != b'\r');
    let has_nul = nuls && memchr(0, &bytes).is_some();
    if !needs_cr && !has_nul {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut prev = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || prev != b'\r') {
            out.push(b'\r');
        }
        out.push(if b == 0 && nuls { 0x80 } else { b });
        prev = b;
    }
    Cow::Owned(out)
}

/// The empty line that directly follows a header without one (Dovecot accounts it to the
/// enclosing part when a boundary line comes right after it).
fn eoh_follows<'a>(header: &[u8], following: &'a [u8]) -> Option<&'a [u8]> {
    if !(header.is_empty() || header.ends_with(b"\n")) {
        return None;
    }
    if following.starts_with(b"\r\n") {
        following.get(..2)
    } else if following.starts_with(b"\n") {
        following.get(..1)
    } else {
        None
    }
}

/// Keeps (or, with `not`, drops) the fields named in `names`, then the end of header.
/// `following` is what comes after the header in the message: an embedded message whose empty
/// line was accounted to the enclosing part (a boundary follows it directly) still gets it.
fn filter_header(
    header: &[u8],
    following: &[u8],
    names: &[String],
    not: bool,
    add_missing_eoh: bool,
) -> Vec<u8> {
    let block = header::parse_block(header, 0, |_| false);
    let mut out = Vec::with_capacity(header.len().min(4096));
    for f in &block.fields {
        let matched = names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(f.name));
        if matched != not {
            out.extend_from_slice(&header[f.start..f.end]);
        }
    }
    match block.eoh {
        Some((s, e)) => out.extend_from_slice(&header[s..e]),
        // Dovecot (serving the fields from its cache) appends one line end: it ends an
        // unterminated last line, or else stands for the missing empty line.
        None if add_missing_eoh => out.extend_from_slice(b"\r\n"),
        None => {
            if let Some(eoh) = eoh_follows(header, following) {
                out.extend_from_slice(eoh);
            }
        }
    }
    out
}

/// The raw bytes of a section, before line end and NUL normalization.
fn raw_section<'a>(raw: &'a [u8], section: &Section) -> Option<Cow<'a, [u8]>> {
    if section.part.is_empty() {
        if section.text.is_none() {
            return Some(Cow::Borrowed(raw));
        }
        // Only the top-level header is needed: no part tree.
        let header_end = header::parse_block(raw, 0, |_| false).end;
        let (header, body) = raw.split_at(header_end.min(raw.len()));
        return match &section.text {
            None => Some(Cow::Borrowed(raw)),
            Some(SectionText::Header) => Some(Cow::Borrowed(header)),
            Some(SectionText::Text) => Some(Cow::Borrowed(body)),
            Some(SectionText::HeaderFields { not, fields }) => {
                Some(Cow::Owned(filter_header(header, body, fields, *not, !*not)))
            }
            Some(SectionText::Mime) => None,
        };
    }
    let root = mime::parse(raw);
    let part = mime::find(&root, &section.part)?;
    match &section.text {
        None => Some(Cow::Borrowed(part.body(raw))),
        Some(SectionText::Mime) => Some(Cow::Borrowed(part.header(raw))),
        Some(text) => {
            if !part.rfc822 {
                return None;
            }
            let message = part.children.first()?;
            Some(match text {
                SectionText::Header => Cow::Borrowed(message.header(raw)),
                SectionText::Text => Cow::Borrowed(message.body(raw)),
                SectionText::HeaderFields { not, fields } => Cow::Owned(filter_header(
                    message.header(raw),
                    raw.get(message.body_start..).unwrap_or_default(),
                    fields,
                    *not,
                    false,
                )),
                SectionText::Mime => return None,
            })
        }
    }
}

/// See [`super::section_bytes`].
pub(super) fn section_bytes<'a>(raw: &'a [u8], section: &Section) -> Option<Cow<'a, [u8]>> {
    raw_section(raw, section).map(|b| normalize(b, true))
}

/// Content-Transfer-Encodings, as Dovecot's `message_decoder_parse_cte` sorts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cte {
    SevenEightBit,
    Binary,
    QuotedPrintable,
    Base64,
    Unknown,
}

fn parse_cte(value: &[u8]) -> Cte {
    let mut p = Parser::new(value);
    p.skip_lwsp();
    let mut token = Vec::new();
    if p.parse_mime_token(&mut token) == 1 {
        p.skip_lwsp();
        if p.cur() != b';' {
            return Cte::Unknown;
        }
    }
    let t = token.as_slice();
    if t.eq_ignore_ascii_case(b"7bit") || t.eq_ignore_ascii_case(b"8bit") {
        Cte::SevenEightBit
    } else if t.eq_ignore_ascii_case(b"base64") {
        Cte::Base64
    } else if t.eq_ignore_ascii_case(b"binary") {
        Cte::Binary
    } else if t.eq_ignore_ascii_case(b"quoted-printable") {
        Cte::QuotedPrintable
    } else {
        Cte::Unknown
    }
}

struct Binary<'a> {
    raw: &'a [u8],
    out: Vec<u8>,
    copy_start: usize,
    /// Some body was decoded. When none was, Dovecot sends the original bytes instead (with
    /// the Content-Transfer-Encoding headers as they were).
    converted: bool,
}

impl Binary<'_> {
    fn copy_to(&mut self, end: usize) {
        if let Some(chunk) = self.raw.get(self.copy_start..end) {
            self.out
                .extend_from_slice(&normalize(Cow::Borrowed(chunk), false));
        }
    }

    fn add_part(&mut self, part: &Part, include_header: bool) -> Result<(), FetchError> {
        let fields: Vec<Field<'_>> = part.fields(self.raw);
        let cte = fields
            .iter()
            .rev()
            .find(|f| f.name.eq_ignore_ascii_case(b"Content-Transfer-Encoding"))
            .map_or(Cte::SevenEightBit, |f| parse_cte(&f.value));
        if cte == Cte::Unknown {
            return Err(FetchError::UnknownCte);
        }
        let converted = matches!(cte, Cte::QuotedPrintable | Cte::Base64);
        if include_header {
            if converted {
                if self.copy_start != 0 {
                    self.copy_to(part.start);
                }
                let header = part.header(self.raw);
                let mut filtered = Vec::with_capacity(header.len() + 40);
                let block = header::parse_block(header, 0, |_| false);
                for f in block
                    .fields
                    .iter()
                    .filter(|f| !f.name.eq_ignore_ascii_case(b"Content-Transfer-Encoding"))
                {
                    filtered.extend_from_slice(&header[f.start..f.end]);
                }
                match block.eoh {
                    Some((s, e)) => {
                        filtered.extend_from_slice(b"Content-Transfer-Encoding: binary\r\n");
                        filtered.extend_from_slice(&header[s..e]);
                    }
                    // The empty line was accounted to the enclosing part (a boundary follows
                    // it); it is copied with that part, the new header line goes before it.
                    None if eoh_follows(
                        header,
                        self.raw.get(part.body_start..).unwrap_or_default(),
                    )
                    .is_some() =>
                    {
                        filtered.extend_from_slice(b"Content-Transfer-Encoding: binary\r\n");
                    }
                    None => {}
                }
                self.out
                    .extend_from_slice(&normalize(Cow::Owned(filtered), false));
            } else {
                self.copy_to(part.body_start);
            }
        }
        self.copy_start = part.body_start;
        if !part.children.is_empty() {
            for child in &part.children {
                self.add_part(child, true)?;
            }
            self.copy_to(part.end);
            self.copy_start = part.end;
            return Ok(());
        }
        let body = part.body(self.raw);
        if !body.is_empty() {
            match cte {
                Cte::QuotedPrintable => {
                    self.converted = true;
                    qp_decode(body, &mut self.out)?;
                }
                Cte::Base64 => {
                    self.converted = true;
                    base64_decode(body, &mut self.out)?;
                }
                _ => self
                    .out
                    .extend_from_slice(&normalize(Cow::Borrowed(body), false)),
            }
        }
        self.copy_start = part.end;
        Ok(())
    }
}

/// See [`super::binary_bytes`].
pub(super) fn binary_bytes<'a>(
    raw: &'a [u8],
    part: &[u32],
) -> Result<Option<Cow<'a, [u8]>>, FetchError> {
    let root = mime::parse(raw);
    let (target, include_header) = if part.is_empty() {
        (&root, true)
    } else {
        match mime::find(&root, part) {
            Some(p) => (p, false),
            None => return Ok(None),
        }
    };
    // The common case, a leaf part that needs no decoding, is served without copying.
    if !include_header && target.children.is_empty() {
        let cte = target
            .fields(raw)
            .iter()
            .rev()
            .find(|f| f.name.eq_ignore_ascii_case(b"Content-Transfer-Encoding"))
            .map_or(Cte::SevenEightBit, |f| parse_cte(&f.value));
        match cte {
            Cte::Unknown => return Err(FetchError::UnknownCte),
            Cte::SevenEightBit | Cte::Binary => {
                return Ok(Some(normalize(Cow::Borrowed(target.body(raw)), false)));
            }
            _ => {}
        }
    }
    let mut b = Binary {
        raw,
        out: Vec::with_capacity(target.end.saturating_sub(target.start)),
        copy_start: 0,
        converted: false,
    };
    b.add_part(target, include_header)?;
    if !b.converted {
        let original = if include_header {
            raw.get(target.start..target.end).unwrap_or_default()
        } else {
            target.body(raw)
        };
        return Ok(Some(normalize(Cow::Borrowed(original), false)));
    }
    Ok(Some(Cow::Owned(b.out)))
}

/// Quoted-printable decoding with Dovecot's `qp-decoder.c` rules: soft line breaks removed,
/// trailing whitespace dropped, line ends written as CRLF. Invalid input (a bad `=` escape, a
/// lone CR, a soft break at the very end) is an error, as it is for Dovecot's FETCH BINARY.
fn qp_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), FetchError> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        Text,
        Whitespace,
        Equals,
        EqualsWhitespace,
        Hex2(u8),
        Cr,
        SoftCr,
    }
    const MAX_WHITESPACE: usize = 76;
    let hex = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'A'..=b'F' => Some(c - b'A' + 10),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    };
    let mut state = State::Text;
    let mut ws: Vec<u8> = Vec::new();
    for &c in src {
        state = match state {
            State::Text => match c {
                b'=' => State::Equals,
                b'\r' => State::Cr,
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    State::Text
                }
                b' ' | b'\t' => {
                    ws.push(c);
                    State::Whitespace
                }
                _ => {
                    out.push(c);
                    State::Text
                }
            },
            State::Whitespace => match c {
                b' ' | b'\t' => {
                    if ws.len() <= MAX_WHITESPACE {
                        ws.push(c);
                    }
                    State::Whitespace
                }
                b'\r' => State::Cr,
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    ws.clear();
                    State::Text
                }
                _ => {
                    if ws.len() > MAX_WHITESPACE {
                        return Err(FetchError::InvalidEncoding);
                    }
                    out.append(&mut ws);
                    match c {
                        b'=' => State::Equals,
                        _ => {
                            out.push(c);
                            State::Text
                        }
                    }
                }
            },
            State::Equals => match c {
                _ if hex(c).is_some() => State::Hex2(c),
                b' ' | b'\t' => {
                    ws.push(c);
                    State::EqualsWhitespace
                }
                b'\r' => State::SoftCr,
                b'\n' => State::Text,
                _ => return Err(FetchError::InvalidEncoding),
            },
            State::Hex2(h) => match (hex(h), hex(c)) {
                (Some(hi), Some(lo)) => {
                    out.push((hi << 4) | lo);
                    State::Text
                }
                _ => return Err(FetchError::InvalidEncoding),
            },
            State::EqualsWhitespace => match c {
                b' ' | b'\t' => {
                    if ws.len() <= MAX_WHITESPACE {
                        ws.push(c);
                    }
                    State::EqualsWhitespace
                }
                b'\r' => State::SoftCr,
                b'\n' => {
                    ws.clear();
                    State::Text
                }
                _ => return Err(FetchError::InvalidEncoding),
            },
            State::Cr | State::SoftCr => {
                if c != b'\n' {
                    return Err(FetchError::InvalidEncoding);
                }
                ws.clear();
                if state == State::Cr {
                    out.extend_from_slice(b"\r\n");
                }
                State::Text
            }
        };
    }
    match state {
        State::Text | State::Whitespace => Ok(()),
        _ => Err(FetchError::InvalidEncoding),
    }
}

/// Base64 decoding as strict as Dovecot's: whitespace is skipped anywhere, anything else
/// outside the alphabet, misplaced padding, data after the padding or a missing final
/// quantum is an error.
fn base64_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), FetchError> {
    let value = |c: u8| -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    };
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let mut acc = 0u32;
    let mut n = 0;
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        i += 1;
        if let Some(v) = value(c) {
            acc = (acc << 6) | v;
            n += 1;
            if n == 4 {
                out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                acc = 0;
                n = 0;
            }
            continue;
        }
        if is_space(c) {
            continue;
        }
        // Padding: `==` after two characters of a quantum, `=` after three.
        let pads_needed = match (c, n) {
            (b'=', 2) => 2,
            (b'=', 3) => 1,
            _ => return Err(FetchError::InvalidEncoding),
        };
        let mut pads = 1;
        while pads < pads_needed {
            match src.get(i).copied() {
                Some(b'=') => pads += 1,
                Some(s) if is_space(s) => {}
                _ => return Err(FetchError::InvalidEncoding),
            }
            i += 1;
        }
        if !src[i..].iter().all(|&s| is_space(s)) {
            return Err(FetchError::InvalidEncoding);
        }
        if n == 2 {
            out.push((acc >> 4) as u8);
        } else {
            out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]);
        }
        return Ok(());
    }
    if n == 0 {
        Ok(())
    } else {
        Err(FetchError::InvalidEncoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qp() {
        let mut out = Vec::new();
        qp_decode(b"caf=C3=A9 =\r\nnext  \r\nline=\nend=3d  ", &mut out).unwrap();
        assert_eq!(out, b"caf\xc3\xa9 next\r\nlineend=");
        for bad in [&b"=ZZ"[..], b"=4", b"a=", b"= x", b"a\rb"] {
            assert_eq!(
                qp_decode(bad, &mut Vec::new()),
                Err(FetchError::InvalidEncoding),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn base64() {
        let mut out = Vec::new();
        base64_decode(b"aGVs\r\nbG8=\r\n", &mut out).unwrap();
        assert_eq!(out, b"hello");
        out.clear();
        base64_decode(b"aGk= \r\n", &mut out).unwrap();
        assert_eq!(out, b"hi");
        out.clear();
        base64_decode(b"aA=\r\n=", &mut out).unwrap();
        assert_eq!(out, b"h");
        for bad in [&b"aGk"[..], b"a*Gk", b"aGk=x", b"aG===", b"a==="] {
            assert_eq!(
                base64_decode(bad, &mut Vec::new()),
                Err(FetchError::InvalidEncoding),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cte_tokens() {
        assert_eq!(parse_cte(b" Base64 "), Cte::Base64);
        assert_eq!(parse_cte(b"7bit; x=y"), Cte::SevenEightBit);
        assert_eq!(parse_cte(b"base64 binary"), Cte::Unknown);
        assert_eq!(parse_cte(b"x-uuencode"), Cte::Unknown);
        assert_eq!(parse_cte(b""), Cte::Unknown);
    }

    #[test]
    fn normalization() {
        assert_eq!(
            normalize(Cow::Borrowed(b"\na\r\nb\n\0"), true).as_ref(),
            b"\r\na\r\nb\r\n\x80"
        );
        assert!(matches!(
            normalize(Cow::Borrowed(b"a\r\n"), true),
            Cow::Borrowed(_)
        ));
    }
}
