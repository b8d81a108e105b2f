//! FETCH: data item parsing and the message-derived parts of FETCH responses (RFC 3501 §6.4.5
//! and §7.4.2, RFC 3516 BINARY).
//!
//! Everything here is a pure function over the message as stored (RFC 5322, normally CRLF line
//! ends, bare LF tolerated). The output is byte-for-byte what Dovecot 2.3 sends, apart from the
//! choice between quoted string and literal (both carry the same value; hato writes strings
//! with [`crate::imap::response::string`]). That is checked against a live Dovecot by
//! `tests/fetch_oracle.rs`.
//!
//! The MIME structure is parsed here rather than with `mail-parser`, because IMAP needs the
//! exact part boundaries, sizes and defaults Dovecot uses (boundary prefix matching, line end
//! ownership, message/rfc822 in any encoding, multipart without boundary, digest defaults),
//! and no decoding of the content.
//!
//! * [`rfc822`]: the header value tokenizer (atoms, quoted strings, comments, RFC 2231).
//! * [`header`]: header block and field splitting.
//! * [`mime`]: the part tree and section number lookup.
//! * [`address`], [`envelope`]: ENVELOPE.
//! * [`bodystructure`]: BODY and BODYSTRUCTURE.
//! * [`section`]: `BODY[...]` contents and BINARY decoding.
//!
//! What the session does with the results: section contents go out as literals (Dovecot sends
//! an empty literal for a part that does not exist, see [`section_bytes`]), BINARY contents with
//! NUL bytes as `~{n}` literal8, `BINARY.SIZE` is the length of [`binary_bytes`].

mod address;
mod bodystructure;
mod envelope;
mod header;
mod mime;
mod rfc822;
mod section;

use std::borrow::Cow;

use thiserror::Error;

use crate::imap::parser::{Args, ParseError, Token, is_atom_char};

/// Why a FETCH item cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FetchError {
    /// BINARY of a part whose Content-Transfer-Encoding is not 7bit, 8bit, binary, base64 or
    /// quoted-printable: the session answers `NO [UNKNOWN-CTE]`.
    #[error("Unknown Content-Transfer-Encoding")]
    UnknownCte,
    /// BINARY of a part whose base64 or quoted-printable body is corrupt: Dovecot answers
    /// `NO [PARSE] Invalid data in MIME part`.
    #[error("Invalid data in MIME part")]
    InvalidEncoding,
}

/// One FETCH data item requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr {
    Uid,
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    /// The non-extensible BODY.
    Body,
    BodyStructure,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    /// `BODY[...]<o.l>` / `BODY.PEEK[...]<o.l>`; `partial` is (origin, length), length
    /// `u32::MAX` when the client sent only `<origin>`.
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    /// `BINARY[part]<o.l>` / `BINARY.PEEK[part]<o.l>`.
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
    },
    /// `BINARY.SIZE[part]`.
    BinarySize {
        part: Vec<u32>,
    },
    /// `MODSEQ` (RFC 7162 §3.1.4.2): the message's mod-sequence.
    ModSeq,
}

impl FetchAttr {
    /// The section whose bytes answer this item: `BODY[...]` sections and the RFC822 forms
    /// (RFC822 = `BODY[]`, RFC822.HEADER = `BODY.PEEK[HEADER]`, RFC822.TEXT = `BODY[TEXT]`).
    pub fn section(&self) -> Option<Section> {
        match self {
            FetchAttr::BodySection { section, .. } => Some(section.clone()),
            FetchAttr::Rfc822 => Some(Section::default()),
            FetchAttr::Rfc822Header => Some(Section {
                part: Vec::new(),
                text: Some(SectionText::Header),
            }),
            FetchAttr::Rfc822Text => Some(Section {
                part: Vec::new(),
                text: Some(SectionText::Text),
            }),
            _ => None,
        }
    }
}

/// A `BODY[...]` section: part numbers (empty = the whole message) and what of the part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

/// The text part of a section specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// `HEADER.FIELDS (...)` or, with `not`, `HEADER.FIELDS.NOT (...)`; names as the client
    /// sent them (matched case-insensitively, written upper-cased).
    HeaderFields {
        not: bool,
        fields: Vec<String>,
    },
    Text,
    Mime,
}

/// Parses the FETCH item list after the sequence set: a single item, a parenthesised list, or
/// the macros ALL / FAST / FULL. Case-insensitive. Whatever follows the items (such as
/// RFC 7162 modifiers) is left in `args`; the caller checks the end of the command.
pub fn parse_attrs(args: &mut Args<'_>) -> Result<Vec<FetchAttr>, ParseError> {
    match args.token()? {
        None => Err(ParseError::MissingArgument),
        Some(Token::Atom(atom)) => {
            let macro_items: &[FetchAttr] = if atom.eq_ignore_ascii_case(b"ALL") {
                &[
                    FetchAttr::Flags,
                    FetchAttr::InternalDate,
                    FetchAttr::Rfc822Size,
                    FetchAttr::Envelope,
                ]
            } else if atom.eq_ignore_ascii_case(b"FAST") {
                &[
                    FetchAttr::Flags,
                    FetchAttr::InternalDate,
                    FetchAttr::Rfc822Size,
                ]
            } else if atom.eq_ignore_ascii_case(b"FULL") {
                &[
                    FetchAttr::Flags,
                    FetchAttr::InternalDate,
                    FetchAttr::Rfc822Size,
                    FetchAttr::Envelope,
                    FetchAttr::Body,
                ]
            } else {
                return Ok(vec![parse_attr(atom)?]);
            };
            Ok(macro_items.to_vec())
        }
        Some(Token::ListOpen) => {
            let mut attrs = Vec::new();
            loop {
                match args.token()? {
                    Some(Token::ListClose) => break,
                    Some(Token::Atom(atom)) => attrs.push(parse_attr(atom)?),
                    Some(_) => return Err(ParseError::BadAtom),
                    None => return Err(ParseError::Unbalanced),
                }
            }
            if attrs.is_empty() {
                return Err(ParseError::MissingArgument);
            }
            Ok(attrs)
        }
        Some(_) => Err(ParseError::BadAtom),
    }
}

/// Parses one data item (an atom; brackets may hold spaces).
fn parse_attr(atom: &[u8]) -> Result<FetchAttr, ParseError> {
    let Some(open) = atom.iter().position(|&c| c == b'[') else {
        let simple = [
            (&b"UID"[..], FetchAttr::Uid),
            (b"FLAGS", FetchAttr::Flags),
            (b"INTERNALDATE", FetchAttr::InternalDate),
            (b"RFC822.SIZE", FetchAttr::Rfc822Size),
            (b"ENVELOPE", FetchAttr::Envelope),
            (b"BODY", FetchAttr::Body),
            (b"BODYSTRUCTURE", FetchAttr::BodyStructure),
            (b"RFC822", FetchAttr::Rfc822),
            (b"RFC822.HEADER", FetchAttr::Rfc822Header),
            (b"RFC822.TEXT", FetchAttr::Rfc822Text),
            (b"MODSEQ", FetchAttr::ModSeq),
        ];
        return simple
            .into_iter()
            .find(|(name, _)| atom.eq_ignore_ascii_case(name))
            .map(|(_, attr)| attr)
            .ok_or(ParseError::BadAtom);
    };
    let head = &atom[..open];
    let close = closing_bracket(atom, open + 1).ok_or(ParseError::BadAtom)?;
    let inner = &atom[open + 1..close];
    let tail = &atom[close + 1..];
    let is = |name: &[u8]| head.eq_ignore_ascii_case(name);
    if is(b"BODY") || is(b"BODY.PEEK") {
        Ok(FetchAttr::BodySection {
            peek: is(b"BODY.PEEK"),
            section: parse_section(inner)?,
            partial: parse_partial(tail)?,
        })
    } else if is(b"BINARY") || is(b"BINARY.PEEK") {
        Ok(FetchAttr::Binary {
            peek: is(b"BINARY.PEEK"),
            part: parse_part_numbers(inner)?,
            partial: parse_partial(tail)?,
        })
    } else if is(b"BINARY.SIZE") {
        if !tail.is_empty() {
            return Err(ParseError::BadAtom);
        }
        Ok(FetchAttr::BinarySize {
            part: parse_part_numbers(inner)?,
        })
    } else {
        Err(ParseError::BadAtom)
    }
}

/// The `]` that closes the section, skipping quoted strings.
fn closing_bracket(atom: &[u8], from: usize) -> Option<usize> {
    let mut quoted = false;
    let mut i = from;
    while i < atom.len() {
        match atom[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b']' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_number(digits: &[u8]) -> Result<u32, ParseError> {
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadAtom);
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n * 10 + u64::from(d - b'0');
    }
    u32::try_from(n).map_err(|_| ParseError::BadAtom)
}

/// nz-number: no leading zero, not zero.
fn parse_nz_number(digits: &[u8]) -> Result<u32, ParseError> {
    if digits.first() == Some(&b'0') {
        return Err(ParseError::BadAtom);
    }
    parse_number(digits)
}

/// `1.2.3` (or nothing).
fn parse_part_numbers(s: &[u8]) -> Result<Vec<u32>, ParseError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(|&c| c == b'.').map(parse_nz_number).collect()
}

/// `<origin.length>` or `<origin>` after the section, or nothing.
fn parse_partial(tail: &[u8]) -> Result<Option<(u32, u32)>, ParseError> {
    if tail.is_empty() {
        return Ok(None);
    }
    let inner = tail
        .strip_prefix(b"<")
        .and_then(|t| t.strip_suffix(b">"))
        .ok_or(ParseError::BadAtom)?;
    match inner.iter().position(|&c| c == b'.') {
        Some(dot) => Ok(Some((
            parse_number(&inner[..dot])?,
            parse_number(&inner[dot + 1..])?,
        ))),
        None => Ok(Some((parse_number(inner)?, u32::MAX))),
    }
}

/// section-spec = section-msgtext / (section-part ["." section-text])
fn parse_section(s: &[u8]) -> Result<Section, ParseError> {
    let mut part = Vec::new();
    let mut rest = s;
    while rest.first().is_some_and(u8::is_ascii_digit) {
        let end = rest
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        part.push(parse_nz_number(&rest[..end])?);
        rest = &rest[end..];
        match rest.first() {
            None => break,
            Some(b'.') => rest = &rest[1..],
            Some(_) => return Err(ParseError::BadAtom),
        }
        if rest.is_empty() {
            return Err(ParseError::BadAtom);
        }
    }
    if rest.is_empty() {
        return Ok(Section { part, text: None });
    }
    let word_end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
    let (word, list) = rest.split_at(word_end);
    let text = if word.eq_ignore_ascii_case(b"HEADER") {
        SectionText::Header
    } else if word.eq_ignore_ascii_case(b"TEXT") {
        SectionText::Text
    } else if word.eq_ignore_ascii_case(b"MIME") && !part.is_empty() {
        SectionText::Mime
    } else if word.eq_ignore_ascii_case(b"HEADER.FIELDS") {
        SectionText::HeaderFields {
            not: false,
            fields: parse_header_list(list)?,
        }
    } else if word.eq_ignore_ascii_case(b"HEADER.FIELDS.NOT") {
        SectionText::HeaderFields {
            not: true,
            fields: parse_header_list(list)?,
        }
    } else {
        return Err(ParseError::BadAtom);
    };
    if !matches!(text, SectionText::HeaderFields { .. }) && !list.is_empty() {
        return Err(ParseError::BadAtom);
    }
    Ok(Section {
        part,
        text: Some(text),
    })
}

/// ` (name name ...)`: astrings (atoms or quoted strings), at least one.
fn parse_header_list(s: &[u8]) -> Result<Vec<String>, ParseError> {
    let inner = s
        .strip_prefix(b" (")
        .and_then(|t| t.strip_suffix(b")"))
        .ok_or(ParseError::ExpectedList)?;
    let mut fields = Vec::new();
    let mut i = 0;
    while i < inner.len() {
        match inner[i] {
            b' ' => i += 1,
            b'"' => {
                let mut name = Vec::new();
                i += 1;
                loop {
                    match inner.get(i).copied() {
                        None => return Err(ParseError::UnterminatedQuoted),
                        Some(b'"') => break,
                        Some(b'\\') => match inner.get(i + 1).copied() {
                            Some(c @ (b'"' | b'\\')) => {
                                name.push(c);
                                i += 1;
                            }
                            _ => return Err(ParseError::BadEscape),
                        },
                        Some(c) => name.push(c),
                    }
                    i += 1;
                }
                i += 1;
                fields.push(String::from_utf8(name).map_err(|_| ParseError::BadAtom)?);
            }
            _ => {
                let start = i;
                while i < inner.len() && inner[i] != b' ' {
                    if !is_astring_char(inner[i]) {
                        return Err(ParseError::BadAtom);
                    }
                    i += 1;
                }
                let name =
                    std::str::from_utf8(&inner[start..i]).map_err(|_| ParseError::BadAtom)?;
                fields.push(name.to_owned());
            }
        }
    }
    if fields.is_empty() {
        return Err(ParseError::MissingArgument);
    }
    Ok(fields)
}

fn is_astring_char(c: u8) -> bool {
    is_atom_char(c) || c == b']'
}

/// Whether answering these items sets \Seen (BODY[...] without PEEK, RFC822, RFC822.TEXT,
/// BINARY without PEEK).
pub fn sets_seen(attrs: &[FetchAttr]) -> bool {
    attrs.iter().any(|a| match a {
        FetchAttr::BodySection { peek, .. } | FetchAttr::Binary { peek, .. } => !peek,
        FetchAttr::Rfc822 | FetchAttr::Rfc822Text => true,
        _ => false,
    })
}

/// Writes the ENVELOPE value, parentheses included: `(date subject from sender reply-to to cc
/// bcc in-reply-to message-id)`.
pub fn write_envelope(raw: &[u8], out: &mut Vec<u8>) {
    let block = header::parse_block(raw, 0, |_| false);
    out.push(b'(');
    envelope::Envelope::from_fields(&block.fields).write_fields(out);
    out.push(b')');
}

/// Writes the BODYSTRUCTURE (`extensible`) or BODY value, parentheses included.
pub fn write_bodystructure(raw: &[u8], extensible: bool, out: &mut Vec<u8>) {
    let root = mime::parse(raw);
    out.push(b'(');
    bodystructure::write_part(raw, &root, false, extensible, out);
    out.push(b')');
}

/// The bytes of a section (BODY[...] / RFC822.* semantics, see [`FetchAttr::section`]), before
/// the partial range is applied: CRLF line ends, NUL sent as 0x80. `None` if the part does not
/// exist (or has no such text: `HEADER`/`TEXT` of a part that is not message/rfc822); Dovecot
/// then answers with an empty literal, `BODY[4] {0}`.
pub fn section_bytes<'a>(raw: &'a [u8], section: &Section) -> Option<Cow<'a, [u8]>> {
    section::section_bytes(raw, section)
}

/// Writes the item name as it must appear in the response: `BODY[1.2.MIME]`,
/// `BODY[HEADER.FIELDS (FROM TO)]<0>` (only the origin of a partial), `BINARY[1]`.
pub fn write_item_name(attr: &FetchAttr, out: &mut Vec<u8>) {
    let simple: &[u8] = match attr {
        FetchAttr::Uid => b"UID",
        FetchAttr::Flags => b"FLAGS",
        FetchAttr::InternalDate => b"INTERNALDATE",
        FetchAttr::Rfc822Size => b"RFC822.SIZE",
        FetchAttr::Envelope => b"ENVELOPE",
        FetchAttr::Body => b"BODY",
        FetchAttr::BodyStructure => b"BODYSTRUCTURE",
        FetchAttr::Rfc822 => b"RFC822",
        FetchAttr::Rfc822Header => b"RFC822.HEADER",
        FetchAttr::Rfc822Text => b"RFC822.TEXT",
        FetchAttr::ModSeq => b"MODSEQ",
        FetchAttr::BodySection {
            section, partial, ..
        } => {
            out.extend_from_slice(b"BODY[");
            write_section(section, out);
            out.push(b']');
            write_origin(*partial, out);
            return;
        }
        FetchAttr::Binary { part, partial, .. } => {
            out.extend_from_slice(b"BINARY[");
            write_part_numbers(part, out);
            out.push(b']');
            write_origin(*partial, out);
            return;
        }
        FetchAttr::BinarySize { part } => {
            out.extend_from_slice(b"BINARY.SIZE[");
            write_part_numbers(part, out);
            out.push(b']');
            return;
        }
    };
    out.extend_from_slice(simple);
}

fn write_origin(partial: Option<(u32, u32)>, out: &mut Vec<u8>) {
    if let Some((origin, _)) = partial {
        out.push(b'<');
        out.extend_from_slice(origin.to_string().as_bytes());
        out.push(b'>');
    }
}

fn write_part_numbers(part: &[u32], out: &mut Vec<u8>) {
    for (i, n) in part.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(n.to_string().as_bytes());
    }
}

fn write_section(section: &Section, out: &mut Vec<u8>) {
    write_part_numbers(&section.part, out);
    let Some(text) = &section.text else { return };
    if !section.part.is_empty() {
        out.push(b'.');
    }
    match text {
        SectionText::Header => out.extend_from_slice(b"HEADER"),
        SectionText::Text => out.extend_from_slice(b"TEXT"),
        SectionText::Mime => out.extend_from_slice(b"MIME"),
        SectionText::HeaderFields { not, fields } => {
            out.extend_from_slice(if *not {
                b"HEADER.FIELDS.NOT ("
            } else {
                b"HEADER.FIELDS ("
            });
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                let upper = f.to_ascii_uppercase();
                if !upper.is_empty() && upper.bytes().all(is_astring_char) {
                    out.extend_from_slice(upper.as_bytes());
                } else {
                    crate::imap::response::string(out, upper.as_bytes());
                }
            }
            out.push(b')');
        }
    }
}

/// Decoded content of a part for `BINARY[part]` (`[]` = the whole message): base64 and
/// quoted-printable bodies decoded, CRLF line ends elsewhere, NUL bytes kept. `Ok(None)` if the
/// part does not exist (Dovecot sends an empty literal); `Err` for unknown transfer encodings
/// (`NO [UNKNOWN-CTE]`) and corrupt encoded bodies (`NO [PARSE]`), also when such a part is
/// inside the one requested.
pub fn binary_bytes<'a>(raw: &'a [u8], part: &[u32]) -> Result<Option<Cow<'a, [u8]>>, FetchError> {
    section::binary_bytes(raw, part)
}

/// RFC822.SIZE as Dovecot reports it: the message size with every bare LF counted as CRLF,
/// which is the length of what `BODY[]` / RFC822 sends.
pub fn rfc822_size(raw: &[u8]) -> usize {
    mime::size_of(raw, 0, raw.len()).virtual_size
}

/// Applies `<origin.length>` to section bytes (an origin past the end gives nothing).
pub fn apply_partial(bytes: &[u8], partial: Option<(u32, u32)>) -> &[u8] {
    let Some((origin, length)) = partial else {
        return bytes;
    };
    let start = usize::try_from(origin).unwrap_or(usize::MAX);
    if start >= bytes.len() {
        return &[];
    }
    let len = usize::try_from(length).unwrap_or(usize::MAX);
    let end = start.saturating_add(len).min(bytes.len());
    &bytes[start..end]
}

#[cfg(test)]
mod tests;
