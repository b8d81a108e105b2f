//! Header block parsing with Dovecot's `message-header-parser.c` rules.
//!
//! A header field is its first line plus the continuation lines that start with a space or tab.
//! A line without a colon is a field with an empty name. The block ends at the first empty line
//! (the end of header, kept with the header), at the end of the input, or where the caller's
//! `stop` check says a MIME boundary line begins.
//!
//! Values are assembled the way Dovecot's message parser sees them (`SKIP_INITIAL_LWSP` and
//! `DROP_CR`): whitespace after the colon skipped, continuation lines joined with a bare `\n`.

use std::borrow::Cow;

use memchr::memchr;

/// Dovecot treats longer "names" as values of a nameless field.
const MAX_NAME_LEN: usize = 1000;

/// One header field.
#[derive(Debug, Clone)]
pub(super) struct Field<'a> {
    /// Absolute offset of the first line.
    pub start: usize,
    /// Absolute offset just after the last line's line end.
    pub end: usize,
    /// The field name, whitespace before the colon removed; empty for lines without a colon.
    pub name: &'a [u8],
    /// The full (unfolded with `\n`) value.
    pub value: Cow<'a, [u8]>,
}

/// A parsed header block.
#[derive(Debug, Default)]
pub(super) struct Block<'a> {
    pub fields: Vec<Field<'a>>,
    /// The empty line ending the header, when there was one (absolute range).
    pub eoh: Option<(usize, usize)>,
    /// Where the header ends (start of the body). When `interrupted`, the line end of the last
    /// field is not part of the header (Dovecot gives it to the boundary that follows).
    pub end: usize,
    /// The header was cut short by a boundary line starting at `stream_pos`.
    pub interrupted: bool,
    /// Where parsing stopped in the input (the boundary line start, or `end`).
    pub stream_pos: usize,
}

/// One physical line: content end (before CR LF / LF) and the position after the line end.
struct Line {
    content_end: usize,
    next: usize,
    has_newline: bool,
}

fn line_at(raw: &[u8], pos: usize) -> Line {
    match memchr(b'\n', &raw[pos..]) {
        Some(i) => {
            let lf = pos + i;
            let content_end = if lf > pos && raw[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            Line {
                content_end,
                next: lf + 1,
                has_newline: true,
            }
        }
        None => Line {
            content_end: raw.len(),
            next: raw.len(),
            has_newline: false,
        },
    }
}

fn is_lwsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Parses the header block starting at `start`. `stop(pos)` is asked before every line that
/// could start a field; returning true ends the header there.
pub(super) fn parse_block<'a>(
    raw: &'a [u8],
    start: usize,
    mut stop: impl FnMut(usize) -> bool,
) -> Block<'a> {
    let mut block = Block::default();
    let mut pos = start.min(raw.len());
    let mut last_newline = 0usize;
    loop {
        if pos >= raw.len() {
            block.end = pos;
            block.stream_pos = pos;
            return block;
        }
        if stop(pos) {
            block.interrupted = true;
            block.stream_pos = pos;
            block.end = pos - last_newline;
            return block;
        }
        let line = line_at(raw, pos);
        if line.content_end == pos && line.has_newline {
            block.eoh = Some((pos, line.next));
            block.end = line.next;
            block.stream_pos = line.next;
            return block;
        }
        let content = &raw[pos..line.content_end];
        let (name, first_value): (&[u8], &[u8]) = match memchr(b':', content) {
            None => (&[], content),
            Some(colon) => {
                let mut name_end = colon;
                while name_end > 0 && is_lwsp(content[name_end - 1]) {
                    name_end -= 1;
                }
                if name_end > MAX_NAME_LEN {
                    (&[], content)
                } else {
                    let value = &content[colon + 1..];
                    let skip = value.iter().take_while(|&&c| is_lwsp(c)).count();
                    let skip = if skip == value.len() && skip > 0 {
                        1
                    } else {
                        skip
                    };
                    (&content[..name_end], &value[skip..])
                }
            }
        };
        let mut value = Cow::Borrowed(first_value);
        let mut end = line.next;
        last_newline = line.next - line.content_end;
        let mut has_newline = line.has_newline;
        while has_newline && end < raw.len() && is_lwsp(raw[end]) {
            let cont = line_at(raw, end);
            let v = value.to_mut();
            v.push(b'\n');
            v.extend_from_slice(&raw[end..cont.content_end]);
            last_newline = cont.next - cont.content_end;
            has_newline = cont.has_newline;
            end = cont.next;
        }
        block.fields.push(Field {
            start: pos,
            end,
            name,
            value,
        });
        pos = end;
    }
}

/// Replaces NUL bytes with U+FFFD (Dovecot's `message_header_strdup`).
pub(super) fn strdup(value: &[u8]) -> Cow<'_, [u8]> {
    if memchr(0, value).is_none() {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len() + 2);
    for &b in value {
        if b == 0 {
            out.extend_from_slice(super::rfc822::NUL_REPLACEMENT);
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_folding() {
        let raw = b"Subject:  hello\r\n\tworld\r\nX-No-Colon\r\nTo : a@b\n\r\nbody";
        let block = parse_block(raw, 0, |_| false);
        assert_eq!(block.fields.len(), 3);
        assert_eq!(block.fields[0].name, b"Subject");
        assert_eq!(block.fields[0].value.as_ref(), b"hello\n\tworld");
        assert_eq!(block.fields[1].name, b"");
        assert_eq!(block.fields[1].value.as_ref(), b"X-No-Colon");
        assert_eq!(block.fields[2].name, b"To");
        assert_eq!(block.fields[2].value.as_ref(), b"a@b");
        assert_eq!(
            &raw[block.fields[2].start..block.fields[2].end],
            b"To : a@b\n"
        );
        assert_eq!(block.eoh, Some((46, 48)));
        assert_eq!(&raw[block.end..], b"body");
    }

    #[test]
    fn header_without_end() {
        let raw = b"A: 1\r\nB: 2";
        let block = parse_block(raw, 0, |_| false);
        assert_eq!(block.fields.len(), 2);
        assert!(block.eoh.is_none());
        assert_eq!(block.end, raw.len());
    }

    #[test]
    fn interrupted_by_boundary() {
        let raw = b"A: 1\r\n--b\r\n";
        let block = parse_block(raw, 0, |p| raw[p..].starts_with(b"--b"));
        assert!(block.interrupted);
        assert_eq!(block.end, 4);
        assert_eq!(block.stream_pos, 6);
    }

    #[test]
    fn whitespace_only_value_keeps_all_but_one() {
        let block = parse_block(b"X:   \r\n\r\n", 0, |_| false);
        assert_eq!(block.fields[0].value.as_ref(), b"  ");
    }
}
