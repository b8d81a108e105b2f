//! BODY and BODYSTRUCTURE (RFC 3501 §7.4.2), written like Dovecot's `imap-bodystructure.c`.
//!
//! Type, subtype and parameter names keep the case they have in the message (Dovecot does not
//! upper-case them); a text part without a charset parameter gets `("charset" "us-ascii")`
//! appended; a missing Content-Type is `"text" "plain"`; the encoding defaults to `"7bit"`;
//! sizes count bare LFs as CRLF. Content-* headers only count in MIME parts (a message needs
//! Mime-Version or Content-Type); the first occurrence of each wins.

use super::envelope::{Envelope, nstring_nolf};
use super::header::strdup;
use super::mime::Part;
use super::rfc822::{Params, Parser, rfc2231_parse};
use crate::imap::response::string;

const EMPTY_BODY: &[u8] = b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)";
const EMPTY_BODYSTRUCTURE: &[u8] =
    b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)";

/// The Content-* data of one part.
#[derive(Debug, Default)]
struct PartData {
    content_type: Option<Vec<u8>>,
    subtype: Option<Vec<u8>>,
    params: Params,
    id: Option<Vec<u8>>,
    md5: Option<Vec<u8>>,
    description: Option<Vec<u8>>,
    encoding: Option<Vec<u8>>,
    disposition: Option<Vec<u8>>,
    disposition_params: Params,
    language: Option<Vec<Vec<u8>>>,
    location: Option<Vec<u8>>,
}

impl PartData {
    fn parse(raw: &[u8], part: &Part) -> PartData {
        let mut data = PartData::default();
        if !part.is_mime {
            return data;
        }
        for f in part.fields(raw) {
            let Some(name) = strip_prefix_ci(f.name, b"Content-") else {
                continue;
            };
            let value = f.value.as_ref();
            if name.eq_ignore_ascii_case(b"ID") {
                data.id.get_or_insert_with(|| strdup(value).into_owned());
            } else if name.eq_ignore_ascii_case(b"MD5") {
                data.md5.get_or_insert_with(|| strdup(value).into_owned());
            } else if name.eq_ignore_ascii_case(b"Type") {
                if data.content_type.is_none() {
                    data.parse_content_type(value);
                }
            } else if name.eq_ignore_ascii_case(b"Transfer-Encoding") {
                if data.encoding.is_none() {
                    data.encoding = parse_encoding(value);
                }
            } else if name.eq_ignore_ascii_case(b"Language") {
                if data.language.is_none() {
                    data.language = parse_language(value);
                }
            } else if name.eq_ignore_ascii_case(b"Location") {
                data.location
                    .get_or_insert_with(|| strdup(value).into_owned());
            } else if name.eq_ignore_ascii_case(b"Description") {
                data.description
                    .get_or_insert_with(|| strdup(value).into_owned());
            } else if name.eq_ignore_ascii_case(b"Disposition") {
                // Dovecot re-parses while no parameters were found.
                if data.disposition_params.is_empty() {
                    data.parse_disposition(value);
                }
            }
        }
        data
    }

    fn parse_content_type(&mut self, value: &[u8]) {
        let mut p = Parser::new(value);
        p.skip_lwsp();
        let mut ct = Vec::new();
        let ret = p.parse_content_type(&mut ct);
        match ct.iter().position(|&c| c == b'/') {
            Some(slash) => {
                self.subtype = Some(ct[slash + 1..].to_vec());
                ct.truncate(slash);
            }
            None => self.subtype = Some(Vec::new()),
        }
        self.content_type = Some(ct);
        if ret >= 0 {
            self.params = rfc2231_parse(&mut p);
        }
    }

    fn parse_disposition(&mut self, value: &[u8]) {
        let mut p = Parser::new(value);
        p.skip_lwsp();
        let mut token = Vec::new();
        if p.parse_mime_token(&mut token) < 0 {
            return;
        }
        self.disposition = Some(token);
        self.disposition_params = rfc2231_parse(&mut p);
    }
}

fn strip_prefix_ci<'a>(name: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&name[prefix.len()..])
    } else {
        None
    }
}

fn parse_encoding(value: &[u8]) -> Option<Vec<u8>> {
    let mut p = Parser::new(value);
    p.skip_lwsp();
    let mut token = Vec::new();
    if p.parse_mime_token(&mut token) >= 0 && p.skip_lwsp() == 0 && !token.is_empty() {
        Some(token)
    } else {
        None
    }
}

fn parse_language(value: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut p = Parser::new(value);
    let mut langs = Vec::new();
    p.skip_lwsp();
    loop {
        let mut lang = Vec::new();
        if p.parse_atom(&mut lang) < 0 {
            break;
        }
        langs.push(lang);
        if p.at_end() || p.cur() != b',' {
            break;
        }
        p.pos += 1;
        p.skip_lwsp();
    }
    if langs.is_empty() { None } else { Some(langs) }
}

fn write_params(out: &mut Vec<u8>, params: &Params, default_charset: bool) {
    if !default_charset && params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    let mut seen_charset = false;
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        if default_charset && name.eq_ignore_ascii_case(b"charset") {
            seen_charset = true;
        }
        string(out, name);
        out.push(b' ');
        string(out, value);
    }
    if default_charset && !seen_charset {
        if !params.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\"charset\" \"us-ascii\"");
    }
    out.push(b')');
}

fn write_common(out: &mut Vec<u8>, data: &PartData) {
    out.push(b' ');
    match &data.disposition {
        None => out.extend_from_slice(b"NIL"),
        Some(d) => {
            out.push(b'(');
            string(out, d);
            out.push(b' ');
            write_params(out, &data.disposition_params, false);
            out.push(b')');
        }
    }
    out.push(b' ');
    match &data.language {
        None => out.extend_from_slice(b"NIL"),
        Some(langs) => {
            out.push(b'(');
            for (i, l) in langs.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                string(out, l);
            }
            out.push(b')');
        }
    }
    out.push(b' ');
    nstring_nolf(out, data.location.as_deref());
}

/// Writes one part's structure, without the parentheses around it.
pub(super) fn write_part(
    raw: &[u8],
    part: &Part,
    parent_digest: bool,
    ext: bool,
    out: &mut Vec<u8>,
) {
    let data = PartData::parse(raw, part);
    if part.multipart {
        if part.children.is_empty() {
            out.extend_from_slice(if ext { EMPTY_BODYSTRUCTURE } else { EMPTY_BODY });
        }
        for child in &part.children {
            out.push(b'(');
            write_part(raw, child, part.digest, ext, out);
            out.push(b')');
        }
        out.push(b' ');
        string(out, data.subtype.as_deref().unwrap_or_default());
        if ext {
            out.push(b' ');
            write_params(out, &data.params, false);
            write_common(out, &data);
        }
        return;
    }
    let text;
    if part.rfc822 {
        out.extend_from_slice(b"\"message\" \"rfc822\"");
        text = false;
    } else if is_truncated(&data, parent_digest) {
        out.extend_from_slice(b"\"application\" \"octet-stream\"");
        text = false;
    } else if let Some(ct) = &data.content_type {
        text = ct.eq_ignore_ascii_case(b"text");
        string(out, ct);
        out.push(b' ');
        string(out, data.subtype.as_deref().unwrap_or_default());
    } else {
        text = true;
        out.extend_from_slice(b"\"text\" \"plain\"");
    }
    out.push(b' ');
    write_params(out, &data.params, text);
    out.push(b' ');
    nstring_nolf(out, data.id.as_deref());
    out.push(b' ');
    nstring_nolf(out, data.description.as_deref());
    out.push(b' ');
    match &data.encoding {
        Some(e) => string(out, e),
        None => out.extend_from_slice(b"\"7bit\""),
    }
    let size = part.body_size(raw);
    out.push(b' ');
    out.extend_from_slice(size.virtual_size.to_string().as_bytes());
    if text {
        out.push(b' ');
        out.extend_from_slice(size.lines.to_string().as_bytes());
    } else if part.rfc822 {
        out.extend_from_slice(b" (");
        if let Some(child) = part.children.first() {
            Envelope::from_fields(&child.fields(raw)).write_fields(out);
            out.extend_from_slice(b") (");
            write_part(raw, child, false, ext, out);
            out.push(b')');
        } else {
            out.extend_from_slice(b"NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ");
            out.extend_from_slice(if ext { EMPTY_BODYSTRUCTURE } else { EMPTY_BODY });
        }
        out.push(b' ');
        out.extend_from_slice(size.lines.to_string().as_bytes());
    }
    if ext {
        out.push(b' ');
        nstring_nolf(out, data.md5.as_deref());
        write_common(out, &data);
    }
}

/// A message/rfc822 or multipart type without the matching structure (part limits reached),
/// or a digest child without Content-Type: Dovecot writes these as application/octet-stream.
fn is_truncated(data: &PartData, parent_digest: bool) -> bool {
    match (&data.content_type, &data.subtype) {
        (Some(t), Some(s)) => {
            (t.eq_ignore_ascii_case(b"message") && s.eq_ignore_ascii_case(b"rfc822"))
                || t.eq_ignore_ascii_case(b"multipart")
        }
        (Some(_), None) => false,
        (None, _) => parent_digest,
    }
}

#[cfg(test)]
mod tests {
    use crate::imap::fetch::write_bodystructure;

    fn bs(raw: &[u8], ext: bool) -> String {
        let mut out = Vec::new();
        write_bodystructure(raw, ext, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn plain_text_defaults() {
        let raw = b"Subject: x\r\n\r\nhello\nworld\r\n";
        assert_eq!(
            bs(raw, false),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 14 2)"
        );
        assert_eq!(
            bs(raw, true),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 14 2 NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn multipart_with_extension_data() {
        let raw = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Language: en, de\r\n\r\nhi\r\n\
--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\nContent-ID: <x@y>\r\n\r\nAAAA\r\n--b--\r\n";
        assert_eq!(
            bs(raw, true),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 2 0 NIL NIL (\"en\" \"de\") NIL)\
(\"application\" \"pdf\" (\"name\" \"a.pdf\") \"<x@y>\" NIL \"base64\" 4 NIL \
(\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)"
        );
        assert_eq!(
            bs(raw, false),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 2 0)\
(\"application\" \"pdf\" (\"name\" \"a.pdf\") \"<x@y>\" NIL \"base64\" 4) \"mixed\")"
        );
    }

    #[test]
    fn message_rfc822() {
        let raw = b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody\r\n";
        assert_eq!(
            bs(raw, false),
            "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 24 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) \
(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1) 3)"
        );
    }

    #[test]
    fn no_mime_version_ignores_content_headers() {
        let raw = b"Content-Transfer-Encoding: base64\r\n\r\nAAAA";
        assert_eq!(
            bs(raw, false),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0)"
        );
    }
}
