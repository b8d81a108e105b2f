//! RFC 822 / MIME header value tokenizer, behaving like Dovecot's `rfc822-parser.c` and
//! `rfc2231-parser.c` so that ENVELOPE and BODYSTRUCTURE come out byte-identical.
//!
//! Every parse function returns Dovecot's tri-state: `1` more input follows, `0` the input ended
//! (a value may still have been produced), `-1` invalid input. Reading past the end yields a NUL
//! byte, like the NUL terminator Dovecot's C code relies on.

/// What NUL bytes become inside parsed values (U+FFFD, as Dovecot's `RFC822_NUL_REPLACEMENT_STR`).
pub(super) const NUL_REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Dovecot's `rfc822_atext_chars`: 1 = atext, 2 = alpha/digit/8-bit, 4 = atext but MIME tspecial.
fn atext_class(c: u8) -> u8 {
    match c {
        b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' | 0x80..=0xff => 2,
        b'/' | b'=' | b'?' => 4,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'^' | b'_' | b'`'
        | b'{' | b'|' | b'}' | b'~' => 1,
        _ => 0,
    }
}

/// `IS_ATEXT`.
pub(super) fn is_atext(c: u8) -> bool {
    atext_class(c) != 0
}

/// `IS_ATEXT_NON_TSPECIAL`.
fn is_token_char(c: u8) -> bool {
    atext_class(c) & 3 != 0
}

/// A cursor over one header value.
pub(super) struct Parser<'a> {
    data: &'a [u8],
    pub(super) pos: usize,
    /// When set, the text of the last skipped comment (used for `addr (Name)` display names).
    pub(super) last_comment: Option<Vec<u8>>,
    /// Replace NUL bytes inside quoted strings, comments and domain literals.
    pub(super) nul_replacement: bool,
}

impl<'a> Parser<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Parser {
            data,
            pos: 0,
            last_comment: None,
            nul_replacement: false,
        }
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The current byte, or NUL at the end.
    pub(super) fn cur(&self) -> u8 {
        self.data.get(self.pos).copied().unwrap_or(0)
    }

    fn more(&self) -> i32 {
        if self.at_end() { 0 } else { 1 }
    }

    fn slice(&self, start: usize, end: usize) -> &'a [u8] {
        self.data.get(start..end).unwrap_or(&[])
    }

    /// Skips a comment; the cursor is on `(`.
    pub(super) fn skip_comment(&mut self) -> i32 {
        let mut level = 1;
        if let Some(c) = self.last_comment.as_mut() {
            c.clear();
        }
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 if self.nul_replacement => {
                    let part = self.slice(start, self.pos);
                    if let Some(c) = self.last_comment.as_mut() {
                        c.extend_from_slice(part);
                        c.extend_from_slice(NUL_REPLACEMENT);
                        start = self.pos + 1;
                    }
                }
                b'(' => level += 1,
                b')' => {
                    level -= 1;
                    if level == 0 {
                        let part = self.slice(start, self.pos);
                        if let Some(c) = self.last_comment.as_mut() {
                            c.extend_from_slice(part);
                        }
                        self.pos += 1;
                        return self.more();
                    }
                }
                b'\n' if self.last_comment.is_some() => {
                    let mut part = self.slice(start, self.pos);
                    if let Some(p) = part.strip_suffix(b"\r") {
                        part = p;
                    }
                    if let Some(c) = self.last_comment.as_mut() {
                        c.extend_from_slice(part);
                    }
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return -1;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        self.pos -= 1;
                    } else {
                        let part = self.slice(start, self.pos - 1);
                        if let Some(c) = self.last_comment.as_mut() {
                            c.extend_from_slice(part);
                        }
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    /// Skips whitespace, line ends and comments.
    pub(super) fn skip_lwsp(&mut self) -> i32 {
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    if self.skip_comment() < 0 {
                        return -1;
                    }
                }
                _ => break,
            }
        }
        self.more()
    }

    pub(super) fn parse_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() || !is_atext(self.cur()) {
            return -1;
        }
        let start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            if !is_atext(self.data[self.pos]) {
                out.extend_from_slice(self.slice(start, self.pos));
                return self.skip_lwsp();
            }
            self.pos += 1;
        }
        out.extend_from_slice(self.slice(start, self.pos));
        0
    }

    pub(super) fn parse_dot_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() || !is_atext(self.cur()) {
            return -1;
        }
        let mut start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            if is_atext(self.data[self.pos]) {
                self.pos += 1;
                continue;
            }
            if start == self.pos {
                return -1;
            }
            out.extend_from_slice(self.slice(start, self.pos));
            let ret = self.skip_lwsp();
            if ret <= 0 {
                return ret;
            }
            if self.cur() != b'.' {
                return 1;
            }
            self.pos += 1;
            out.push(b'.');
            if self.skip_lwsp() <= 0 {
                return -1;
            }
            start = self.pos;
        }
        out.extend_from_slice(self.slice(start, self.pos));
        0
    }

    pub(super) fn parse_mime_token(&mut self, out: &mut Vec<u8>) -> i32 {
        let start = self.pos;
        while self.pos < self.data.len() {
            let c = self.data[self.pos];
            if is_token_char(c) || c == b'.' {
                self.pos += 1;
                continue;
            }
            out.extend_from_slice(self.slice(start, self.pos));
            return self.skip_lwsp();
        }
        out.extend_from_slice(self.slice(start, self.pos));
        0
    }

    /// Parses a quoted string; the cursor is on `"`.
    pub(super) fn parse_quoted_string(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 if self.nul_replacement => {
                    out.extend_from_slice(self.slice(start, self.pos));
                    out.extend_from_slice(NUL_REPLACEMENT);
                    start = self.pos + 1;
                }
                b'"' => {
                    out.extend_from_slice(self.slice(start, self.pos));
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut part = self.slice(start, self.pos);
                    if let Some(p) = part.strip_suffix(b"\r") {
                        part = p;
                    }
                    out.extend_from_slice(part);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return -1;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        self.pos -= 1;
                    } else {
                        out.extend_from_slice(self.slice(start, self.pos - 1));
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    fn parse_atom_or_dot(&mut self, out: &mut Vec<u8>) -> i32 {
        let start = self.pos;
        while self.pos < self.data.len() {
            let c = self.data[self.pos];
            if is_atext(c) || c == b'.' {
                self.pos += 1;
                continue;
            }
            out.extend_from_slice(self.slice(start, self.pos));
            return self.skip_lwsp();
        }
        out.extend_from_slice(self.slice(start, self.pos));
        0
    }

    /// phrase = 1*word / obs-phrase; words are joined with single spaces.
    pub(super) fn parse_phrase(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() {
            return 0;
        }
        if self.cur() == b'.' {
            return -1;
        }
        loop {
            let ret = if self.cur() == b'"' {
                self.parse_quoted_string(out)
            } else {
                self.parse_atom_or_dot(out)
            };
            if ret <= 0 {
                return ret;
            }
            let c = self.cur();
            if !is_atext(c) && c != b'"' && c != b'.' {
                break;
            }
            out.push(b' ');
        }
        self.skip_lwsp()
    }

    /// Parses a domain literal; the cursor is on `[`.
    fn parse_domain_literal(&mut self, out: &mut Vec<u8>) -> i32 {
        let mut start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 if self.nul_replacement => {
                    out.extend_from_slice(self.slice(start, self.pos));
                    out.extend_from_slice(NUL_REPLACEMENT);
                    start = self.pos + 1;
                }
                b'[' => return -1,
                b']' => {
                    out.extend_from_slice(self.slice(start, self.pos + 1));
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut part = self.slice(start, self.pos);
                    if let Some(p) = part.strip_suffix(b"\r") {
                        part = p;
                    }
                    out.extend_from_slice(part);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return -1;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        out.extend_from_slice(self.slice(start, self.pos));
                        start = self.pos;
                        self.pos -= 1;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    /// Parses `@domain`; the cursor is on `@`.
    pub(super) fn parse_domain(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.cur() == b'[' {
            self.parse_domain_literal(out)
        } else {
            self.parse_dot_atom(out)
        }
    }

    /// Parses `type/subtype` into `out` (truncated to what was valid).
    pub(super) fn parse_content_type(&mut self, out: &mut Vec<u8>) -> i32 {
        let pos0 = out.len();
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.parse_mime_token(out) <= 0 || out.len() == pos0 {
            return -1;
        }
        if self.cur() != b'/' {
            out.truncate(pos0);
            return -1;
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            out.truncate(pos0);
            return -1;
        }
        out.push(b'/');
        let sub_pos = out.len();
        let ret = self.parse_mime_token(out);
        if ret < 0 || out.len() == sub_pos || (!self.at_end() && self.cur() != b';') {
            out.truncate(pos0);
            return -1;
        }
        ret
    }

    /// Parses one `; key=value` parameter. Returns 0 at the end, 1 with `key` set, -1 when broken.
    fn parse_content_param(&mut self, key: &mut Vec<u8>, value: &mut Vec<u8>) -> i32 {
        key.clear();
        value.clear();
        if self.at_end() {
            return 0;
        }
        if self.cur() != b';' {
            return -1;
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.parse_mime_token(key) <= 0 {
            return -1;
        }
        if self.cur() != b'=' {
            return -1;
        }
        self.pos += 1;
        let mut ret = self.skip_lwsp();
        if ret <= 0 {
            // broken / no value
        } else if self.cur() == b'"' {
            ret = self.parse_quoted_string(value);
        } else if self.cur() == b'=' {
            // Workaround for broken input: name==?utf-8?b?...?=
            // The bytes are copied raw, but Dovecot then reads the value as a C string: it ends
            // at a NUL (which could not go out in a literal anyway).
            let mut nul = false;
            while self.pos < self.data.len()
                && !matches!(self.data[self.pos], b';' | b' ' | b'\t' | b'\r' | b'\n')
            {
                nul |= self.data[self.pos] == 0;
                if !nul {
                    value.push(self.data[self.pos]);
                }
                self.pos += 1;
            }
        } else {
            ret = self.parse_mime_token(value);
        }
        if ret < 0 { -1 } else { 1 }
    }
}

/// A parameter list, in Dovecot's order: plain parameters as they appear, then the merged
/// RFC 2231 ones sorted by name.
pub(super) type Params = Vec<(Vec<u8>, Vec<u8>)>;

struct Rfc2231Param {
    key: Vec<u8>,
    value: Vec<u8>,
    idx: u32,
    extended: bool,
}

/// Parses the `; key=value` list that follows a content type or disposition, merging RFC 2231
/// continuations (`title*0*=...; title*1*=...`) into one `title*` parameter like Dovecot.
pub(super) fn rfc2231_parse(p: &mut Parser<'_>) -> Params {
    let saved = p.nul_replacement;
    p.nul_replacement = true;
    let mut result: Params = Vec::new();
    let mut continued: Vec<Rfc2231Param> = Vec::new();
    let mut key = Vec::new();
    let mut value = Vec::new();
    // Dovecot reuses one struct for every parameter, so a bare `key*` inherits the index and
    // flags of the previous continuation. Mirror that.
    let mut idx: u32 = 0;
    loop {
        let ret = p.parse_content_param(&mut key, &mut value);
        if ret == 0 {
            break;
        }
        if ret < 0 {
            if p.at_end() {
                break;
            }
            p.pos += 1;
            continue;
        }
        let mut plain = true;
        if let Some(star) = key.iter().position(|&c| c == b'*') {
            let mut q = star;
            if key.get(star + 1).is_some() {
                q += 1;
                idx = 0;
                while let Some(d @ b'0'..=b'9') = key.get(q).copied() {
                    idx = idx.wrapping_mul(10).wrapping_add(u32::from(d - b'0'));
                    q += 1;
                }
            }
            let extended = key.get(q) == Some(&b'*');
            if extended {
                q += 1;
            }
            if q >= key.len() {
                plain = false;
                continued.push(Rfc2231Param {
                    key: key[..star].to_vec(),
                    value: value.clone(),
                    idx,
                    extended,
                });
            }
        }
        if plain {
            result.push((key.clone(), value.clone()));
        }
    }
    p.nul_replacement = saved;
    if continued.is_empty() {
        return result;
    }
    continued.sort_by(|a, b| a.key.cmp(&b.key).then(a.idx.cmp(&b.idx)));
    let mut i = 0;
    while i < continued.len() {
        let mut ok = true;
        let mut have_extended = false;
        let mut next_idx = 0u32;
        let mut j = i;
        while j < continued.len() {
            if !continued[i].key.eq_ignore_ascii_case(&continued[j].key) {
                break;
            }
            if continued[j].idx != next_idx {
                ok = false;
            }
            if continued[j].extended {
                have_extended = true;
            }
            next_idx = next_idx.wrapping_add(1);
            j += 1;
        }
        let next = j;
        if !ok {
            for c in &continued[i..next] {
                let mut k = c.key.clone();
                k.push(b'*');
                k.extend_from_slice(c.idx.to_string().as_bytes());
                if c.extended {
                    k.push(b'*');
                }
                result.push((k, c.value.clone()));
            }
        } else {
            let mut v = Vec::new();
            if !continued[i].extended && have_extended {
                v.extend_from_slice(b"''");
            }
            for c in &continued[i..next] {
                if !c.extended && have_extended {
                    for &b in &c.value {
                        if b == b'%' {
                            v.extend_from_slice(b"%25");
                        } else {
                            v.push(b);
                        }
                    }
                } else {
                    v.extend_from_slice(&c.value);
                }
            }
            let mut k = continued[i].key.clone();
            if have_extended {
                k.push(b'*');
            }
            result.push((k, v));
        }
        i = next;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_and_params() {
        let mut p = Parser::new(b" text/plain; charset=\"utf-8\" (c); format=flowed");
        let mut ct = Vec::new();
        assert_eq!(p.parse_content_type(&mut ct), 1);
        assert_eq!(ct, b"text/plain");
        let params = rfc2231_parse(&mut p);
        assert_eq!(
            params,
            vec![
                (b"charset".to_vec(), b"utf-8".to_vec()),
                (b"format".to_vec(), b"flowed".to_vec())
            ]
        );
    }

    #[test]
    fn broken_content_type_is_truncated() {
        let mut ct = Vec::new();
        assert_eq!(
            Parser::new(b"text/plain junk").parse_content_type(&mut ct),
            -1
        );
        assert_eq!(ct, b"");
        ct.clear();
        assert_eq!(Parser::new(b"text").parse_content_type(&mut ct), -1);
        assert_eq!(ct, b"text");
    }

    #[test]
    fn broken_encoded_word_value_ends_at_nul() {
        // The `name==?...` workaround copies raw bytes; Dovecot keeps them up to a NUL (C
        // string), and a NUL could not be sent in BODYSTRUCTURE anyway (found by cargo fuzz).
        let mut p = Parser::new(b"; name==?ut\xff\x02\0\x01From:; z=1");
        assert_eq!(
            rfc2231_parse(&mut p),
            vec![
                (b"name".to_vec(), b"=?ut\xff\x02".to_vec()),
                (b"z".to_vec(), b"1".to_vec())
            ]
        );
    }

    #[test]
    fn rfc2231_continuations_merge() {
        let mut p =
            Parser::new(b"; title*1*=%20b; title*0*=us-ascii'en'a; name*0=x; name*1=y%; z=1");
        let params = rfc2231_parse(&mut p);
        assert_eq!(
            params,
            vec![
                (b"z".to_vec(), b"1".to_vec()),
                (b"name".to_vec(), b"xy%".to_vec()),
                (b"title*".to_vec(), b"us-ascii'en'a%20b".to_vec()),
            ]
        );
        let mut p = Parser::new(b"; a*1=x");
        assert_eq!(
            rfc2231_parse(&mut p),
            vec![(b"a*1".to_vec(), b"x".to_vec())]
        );
    }

    #[test]
    fn phrase_joins_words() {
        let mut p = Parser::new(b"John  \"Q.\r\n Public\" Doe <x@y>");
        let mut out = Vec::new();
        assert_eq!(p.parse_phrase(&mut out), 1);
        assert_eq!(out, b"John Q. Public Doe");
        assert_eq!(p.cur(), b'<');
    }
}
