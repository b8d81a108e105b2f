//! The MIME part tree of a message, split exactly where Dovecot's `message-parser.c` splits it.
//!
//! Every part records three offsets into the raw message: where its header starts, where its
//! body starts and where its body ends. A part's body ends at the line end that precedes the
//! boundary line closing it (that line end belongs to the enclosing multipart), or at the end of
//! the message. Boundaries match by prefix (the longest active one wins), nested multiparts with
//! missing end boundaries are closed by an outer boundary, a multipart without a boundary
//! parameter is a leaf, `message/rfc822` parts (whatever their transfer encoding) contain one
//! message part, and parts without a Content-Type are `text/plain`, or `message/rfc822` inside
//! `multipart/digest`. Sizes are what Dovecot reports: octets with bare LFs counted as CRLF.

use memchr::{memchr, memchr_iter};

use super::header::{self, Field};
use super::rfc822::{Parser, rfc2231_parse};

/// Dovecot truncates boundary parameters to this many bytes.
const BOUNDARY_MAX_LEN: usize = 80;
/// Parts may nest this deep (Dovecot's default `max_nested_mime_parts`).
const MAX_NESTED: usize = 100;
/// A message may have this many parts (Dovecot's default `max_total_mime_parts`).
const MAX_TOTAL: usize = 10_000;

/// One MIME part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Part {
    /// Offset of the first header byte.
    pub start: usize,
    /// Offset of the first body byte (the end of the header).
    pub body_start: usize,
    /// Offset just past the body.
    pub end: usize,
    /// `multipart/*` (possibly without children, when the boundary was missing).
    pub multipart: bool,
    /// `message/rfc822`, with exactly one child: the embedded message.
    pub rfc822: bool,
    /// `text/*` (or no Content-Type at all).
    pub text: bool,
    /// Had Mime-Version or Content-Type (or is a part of a multipart): Content-* headers count.
    pub is_mime: bool,
    /// `multipart/digest`: children without Content-Type default to message/rfc822.
    pub digest: bool,
    pub children: Vec<Part>,
}

/// Header and body sizes in IMAP terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Size {
    /// Octets, bare LF counted as CRLF.
    pub virtual_size: usize,
    /// Line count.
    pub lines: usize,
}

/// Size of `raw[start..end]` as Dovecot reports it.
pub(super) fn size_of(raw: &[u8], start: usize, end: usize) -> Size {
    let bytes = raw.get(start..end).unwrap_or(&[]);
    let mut size = Size {
        virtual_size: bytes.len(),
        lines: 0,
    };
    for i in memchr_iter(b'\n', bytes) {
        size.lines += 1;
        if i == 0 || bytes[i - 1] != b'\r' {
            size.virtual_size += 1;
        }
    }
    size
}

impl Part {
    pub fn header<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        raw.get(self.start..self.body_start).unwrap_or(&[])
    }

    pub fn body<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        raw.get(self.body_start..self.end).unwrap_or(&[])
    }

    pub fn body_size(&self, raw: &[u8]) -> Size {
        size_of(raw, self.body_start, self.end)
    }

    /// The header fields of this part.
    pub fn fields<'a>(&self, raw: &'a [u8]) -> Vec<Field<'a>> {
        let header = raw.get(..self.body_start).unwrap_or(raw);
        header::parse_block(header, self.start, |_| false).fields
    }
}

struct Boundary {
    text: Vec<u8>,
    /// Arena index of the multipart that owns it.
    part: usize,
    epilogue: bool,
}

struct Node {
    part: Part,
    parent: Option<usize>,
    children: Vec<usize>,
}

/// Finds the active boundary that the line at `pos` starts, if any (Dovecot's
/// `boundary_line_find` + `boundary_find`). Returns its index in `boundaries`.
fn boundary_at(raw: &[u8], pos: usize, boundaries: &mut [Boundary]) -> Option<usize> {
    let rest = raw.get(pos..)?;
    let data = rest.strip_prefix(b"--")?;
    let mut trailing_dashes = false;
    let find_size = match memchr(b'\n', data) {
        Some(lf) => {
            let mut n = lf;
            if n > 0 && data[n - 1] == b'\r' {
                n -= 1;
            }
            if n > 2 && data[n - 1] == b'-' && data[n - 2] == b'-' {
                trailing_dashes = true;
            }
            n
        }
        None => data.len(),
    };
    let mut best: Option<usize> = None;
    for (i, b) in boundaries.iter().enumerate().rev() {
        let len = b.text.len();
        if len <= find_size
            && data[..len] == b.text[..]
            && best.is_none_or(|k| boundaries[k].text.len() < len)
        {
            best = Some(i);
            if len == find_size || (trailing_dashes && len + 2 == find_size) {
                break;
            }
        }
    }
    let i = best?;
    let len = boundaries[i].text.len();
    boundaries[i].epilogue = data.get(len..len + 2) == Some(b"--");
    Some(i)
}

/// What the header of a part says about its type.
struct HeaderInfo {
    is_mime: bool,
    seen_content_type: bool,
    multipart: bool,
    rfc822: bool,
    text: bool,
    digest: bool,
    boundary: Option<Vec<u8>>,
}

fn header_info(fields: &[Field<'_>], is_mime: bool) -> HeaderInfo {
    let mut info = HeaderInfo {
        is_mime,
        seen_content_type: false,
        multipart: false,
        rfc822: false,
        text: false,
        digest: false,
        boundary: None,
    };
    for f in fields {
        if f.name.eq_ignore_ascii_case(b"Mime-Version") {
            info.is_mime = true;
        } else if f.name.eq_ignore_ascii_case(b"Content-Type") {
            info.is_mime = true;
            if info.seen_content_type {
                continue;
            }
            info.seen_content_type = true;
            let mut p = Parser::new(&f.value);
            p.skip_lwsp();
            let mut ct = Vec::new();
            let ret = p.parse_content_type(&mut ct);
            if ct.eq_ignore_ascii_case(b"message/rfc822") {
                info.rfc822 = true;
            } else if ct.len() >= 4
                && ct[..4].eq_ignore_ascii_case(b"text")
                && (ct.len() == 4 || ct[4] == b'/')
            {
                info.text = true;
            } else if ct.len() >= 10 && ct[..10].eq_ignore_ascii_case(b"multipart/") {
                info.multipart = true;
                if ct[10..].eq_ignore_ascii_case(b"digest") {
                    info.digest = true;
                }
            }
            if ret < 0 || !info.multipart {
                continue;
            }
            if let Some((_, v)) = rfc2231_parse(&mut p)
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(b"boundary"))
            {
                let mut v = v;
                v.truncate(BOUNDARY_MAX_LEN);
                info.boundary = Some(v);
            }
        }
    }
    info
}

/// Parses the part tree of a message.
pub(super) fn parse(raw: &[u8]) -> Part {
    let mut nodes: Vec<Node> = vec![Node {
        part: Part::default(),
        parent: None,
        children: Vec::new(),
    }];
    let mut boundaries: Vec<Boundary> = Vec::new();
    let mut cur = 0usize;
    let mut nested = 0usize;
    let mut total = 1usize;
    // `pos` is where reading continues; `acct` is where the current part's accounted bytes end.
    // They differ only after a header cut short by a boundary: the line end before the
    // boundary line is then accounted to the multipart owning the boundary.
    let mut pos = 0usize;
    let mut acct = 0usize;
    let mut in_header = true;
    // The part whose header lost its last line end to the boundary that follows: it (and
    // anything inside it) ends before that line end, its ancestors after it.
    let mut split: Option<usize> = None;

    loop {
        if in_header {
            let node_start = acct;
            nodes[cur].part.start = node_start;
            let part_is_mime = nodes[cur].part.is_mime;
            let block = header::parse_block(raw, pos, |p| {
                total < MAX_TOTAL
                    && boundary_at(raw, p, &mut boundaries)
                        .is_some_and(|b| boundaries[b].part != cur)
            });
            let mut info = header_info(&block.fields, part_is_mime);
            // A header cut short before its first line is empty; otherwise `block.end`
            // already excludes the line end that the boundary takes.
            let mut header_end = if block.interrupted && block.fields.is_empty() {
                node_start
            } else {
                block.end
            };
            let mut interrupted = block.interrupted;
            if interrupted && !block.fields.is_empty() {
                split = Some(cur);
            }
            let mut multipart_started = false;
            if block.eoh.is_some()
                && info.is_mime
                && let Some(text) = info.boundary.take()
            {
                if nested + 1 >= MAX_NESTED {
                    info.multipart = false;
                } else {
                    boundaries.push(Boundary {
                        text,
                        part: cur,
                        epilogue: false,
                    });
                    multipart_started = true;
                }
            }
            // Dovecot looks for a boundary once more after the empty line that ends the
            // header (with this part's own boundary already active, and ignored): when
            // another part's boundary follows, the empty line goes to the parent.
            if let (false, Some((eoh_start, _))) = (interrupted, block.eoh)
                && total < MAX_TOTAL
                && boundary_at(raw, block.stream_pos, &mut boundaries)
                    .is_some_and(|b| boundaries[b].part != cur)
            {
                interrupted = true;
                header_end = eoh_start;
                split = Some(cur);
            }
            if !info.is_mime {
                info.multipart = false;
                info.rfc822 = false;
                info.text = false;
                info.digest = false;
            }
            if !info.seen_content_type || !info.is_mime {
                let parent_digest = nodes[cur].parent.is_some_and(|p| nodes[p].part.digest);
                if parent_digest {
                    info.rfc822 = true;
                } else {
                    info.text = true;
                }
            }
            let part = &mut nodes[cur].part;
            part.is_mime = info.is_mime;
            part.multipart = info.multipart;
            part.rfc822 = info.rfc822;
            part.text = info.text;
            part.digest = info.digest;
            part.body_start = header_end;
            pos = block.stream_pos;
            acct = if interrupted { header_end } else { block.end };
            if multipart_started || !info.rfc822 {
                in_header = false;
                continue;
            }
            if nested + 1 < MAX_NESTED && total < MAX_TOTAL {
                cur = append(&mut nodes, cur, false);
                nested += 1;
                total += 1;
                continue;
            }
            nodes[cur].part.rfc822 = false;
            in_header = false;
            continue;
        }

        // Body: find the next boundary line, starting with the line at `pos`.
        let mut found: Option<(usize, usize)> = None;
        if !boundaries.is_empty() && total < MAX_TOTAL {
            let mut line = pos;
            loop {
                if line > raw.len() {
                    break;
                }
                if let Some(b) = boundary_at(raw, line, &mut boundaries) {
                    found = Some((line, b));
                    break;
                }
                match raw.get(line..).and_then(|r| memchr(b'\n', r)) {
                    Some(i) => line += i + 1,
                    None => break,
                }
            }
        }
        let Some((line, b)) = found else {
            // The message ends: every open part ends with it.
            let mut n = Some(cur);
            while let Some(i) = n {
                nodes[i].part.end = raw.len();
                n = nodes[i].parent;
            }
            break;
        };
        let first_line = line == pos;
        let mut content_end = if first_line {
            acct
        } else if line >= pos + 2 && raw[line - 2] == b'\r' {
            line - 2
        } else {
            line - 1
        };
        let owner = boundaries[b].part;
        while cur != owner {
            nodes[cur].part.end = content_end;
            if first_line && split == Some(cur) {
                content_end = line;
            }
            match nodes[cur].parent {
                Some(p) => {
                    cur = p;
                    nested = nested.saturating_sub(1);
                }
                None => break,
            }
        }
        split = None;
        if boundaries[b].epilogue {
            boundaries.truncate(b);
        } else {
            boundaries.truncate(b + 1);
        }
        pos = match memchr(b'\n', &raw[line..]) {
            Some(i) => line + i + 1,
            None => raw.len(),
        };
        acct = pos;
        if boundaries.last().is_some_and(|top| top.part == cur) {
            cur = append(&mut nodes, cur, true);
            nested += 1;
            total += 1;
            in_header = true;
        }
    }
    build(&mut nodes, 0)
}

fn append(nodes: &mut Vec<Node>, parent: usize, is_mime: bool) -> usize {
    let id = nodes.len();
    nodes.push(Node {
        part: Part {
            is_mime,
            ..Part::default()
        },
        parent: Some(parent),
        children: Vec::new(),
    });
    nodes[parent].children.push(id);
    id
}

fn build(nodes: &mut [Node], id: usize) -> Part {
    let children = std::mem::take(&mut nodes[id].children);
    let mut part = std::mem::take(&mut nodes[id].part);
    part.children = children.into_iter().map(|c| build(nodes, c)).collect();
    part
}

/// Finds a part by IMAP section number (Dovecot's `imap_msgpart_find`): `[]` is the message
/// itself, a non-multipart part has only the part `1` (itself), and the numbers after a
/// message/rfc822 part address the parts of the embedded message.
pub(super) fn find<'p>(root: &'p Part, path: &[u32]) -> Option<&'p Part> {
    let mut part = root;
    for (i, &num) in path.iter().enumerate() {
        if num == 0 {
            return None;
        }
        let more = i + 1 < path.len();
        if part.multipart {
            part = part.children.get(num as usize - 1)?;
        } else if num != 1 || (more && !part.rfc822) {
            return None;
        }
        if more && part.rfc822 {
            part = part.children.first()?;
        }
    }
    Some(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(raw: &[u8]) -> Part {
        parse(raw)
    }

    #[test]
    fn single_part() {
        let raw = b"Subject: x\r\n\r\nhello\r\n";
        let p = parts(raw);
        assert!(p.text && !p.multipart && p.children.is_empty());
        assert_eq!(p.header(raw), b"Subject: x\r\n\r\n");
        assert_eq!(p.body(raw), b"hello\r\n");
        assert_eq!(
            p.body_size(raw),
            Size {
                virtual_size: 7,
                lines: 1
            }
        );
    }

    #[test]
    fn multipart_offsets() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n\r\none\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>\r\n--b--\r\nepi\r\n";
        let p = parts(raw);
        assert!(p.multipart);
        assert_eq!(p.children.len(), 2);
        assert_eq!(p.children[0].header(raw), b"\r\n");
        assert_eq!(p.children[0].body(raw), b"one");
        assert_eq!(p.children[1].body(raw), b"<p>");
        assert!(p.children[1].text);
        assert_eq!(p.end, raw.len());
    }

    #[test]
    fn nested_rfc822_and_lookup() {
        let raw = b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\r\na\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--i\r\n\r\ny\r\n--i--\r\n--o--\r\n";
        let p = parts(raw);
        let m = find(&p, &[2]).expect("2");
        assert!(m.rfc822);
        assert_eq!(m.children.len(), 1);
        assert!(m.children[0].multipart);
        assert_eq!(find(&p, &[2, 2]).expect("2.2").body(raw), b"y");
        assert_eq!(find(&p, &[1]).expect("1").body(raw), b"a");
        assert!(find(&p, &[3]).is_none());
        // Like Dovecot, a leaf part also answers to `.1`.
        assert_eq!(find(&p, &[1, 1]), find(&p, &[1]));
        // A single-part message has part 1, itself.
        let single = parts(b"\r\nbody");
        assert_eq!(find(&single, &[1]), Some(&single));
        assert!(find(&single, &[2]).is_none());
    }

    #[test]
    fn missing_inner_end_boundary() {
        let raw = b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--o\r\n\r\nz\r\n--o--\r\n";
        let p = parts(raw);
        assert_eq!(p.children.len(), 2);
        assert_eq!(p.children[0].children.len(), 1);
        assert_eq!(p.children[0].children[0].body(raw), b"x");
        assert_eq!(p.children[1].body(raw), b"z");
    }

    #[test]
    fn multipart_without_boundary_is_a_leaf() {
        let raw = b"Content-Type: multipart/mixed\r\n\r\nbody\r\n";
        let p = parts(raw);
        assert!(p.multipart && p.children.is_empty());
        assert_eq!(p.body(raw), b"body\r\n");
    }

    #[test]
    fn bare_lf_sizes() {
        assert_eq!(
            size_of(b"a\nb\r\n", 0, 5),
            Size {
                virtual_size: 6,
                lines: 2
            }
        );
    }
}
