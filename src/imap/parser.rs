//! Command parsing over a framed command, borrowing from the session's buffer.
//!
//! [`parse_command`] splits off the tag and the command name; [`Args`] then reads the arguments
//! one at a time as the handler asks for them (atom, astring, list...), following the RFC 3501
//! grammar. Nothing is copied unless a quoted string holds escapes, in which case that one
//! argument is unescaped into an owned buffer (`Cow::Owned`).

use std::borrow::Cow;

use memchr::memchr;
use thiserror::Error;

use super::scanner::parse_number;

/// Why a command could not be parsed. The session answers it with a tagged (or untagged) `BAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("Empty command line")]
    Empty,
    #[error("Invalid tag")]
    BadTag,
    #[error("Missing command name")]
    MissingName,
    #[error("NUL bytes are not allowed outside literals")]
    Nul,
    #[error("Missing argument")]
    MissingArgument,
    #[error("Too many arguments")]
    TooManyArguments,
    #[error("Expected a space between arguments")]
    ExpectedSpace,
    #[error("Unterminated quoted string")]
    UnterminatedQuoted,
    #[error("Invalid escape in quoted string")]
    BadEscape,
    #[error("Invalid literal")]
    BadLiteral,
    #[error("Invalid atom")]
    BadAtom,
    #[error("Expected a parenthesised list")]
    ExpectedList,
    #[error("Unbalanced parentheses")]
    Unbalanced,
    #[error("Invalid mailbox name (modified UTF-7 expected)")]
    BadMailboxName,
    /// An IMAP4rev2 session sent a name that is not UTF-8 (RFC 9051 §5.1).
    #[error("Invalid mailbox name (UTF-8 expected)")]
    BadUtf8MailboxName,
    #[error("Invalid sequence set")]
    BadSequence,
    /// RECENT (STATUS item, SEARCH keys RECENT/NEW/OLD) in an IMAP4rev2 session: RFC 9051
    /// Appendix E removed `\Recent`, so the grammar has no such item.
    #[error("RECENT, NEW and OLD do not exist in IMAP4rev2")]
    Rev2Removed,
}

/// A parsed command head; the arguments are read lazily through `args`.
#[derive(Debug)]
pub struct Command<'a> {
    pub tag: &'a [u8],
    pub name: &'a [u8],
    pub args: Args<'a>,
}

/// Splits `frame` (one complete command from the framer, CRLF included) into tag, name and
/// arguments. On error, the tag is returned when it could be read, so the answer can be tagged.
pub fn parse_command(frame: &[u8]) -> Result<Command<'_>, (Option<&[u8]>, ParseError)> {
    let line_end = memchr(b'\n', frame).unwrap_or(frame.len());
    let first_line = &frame[..line_end];
    let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
    if first_line.is_empty() {
        return Err((None, ParseError::Empty));
    }
    let tag_len = first_line
        .iter()
        .position(|&b| !is_tag_char(b))
        .unwrap_or(first_line.len());
    if tag_len == 0 {
        return Err((None, ParseError::BadTag));
    }
    let tag = &frame[..tag_len];
    match first_line.get(tag_len) {
        Some(b' ') => {}
        None => return Err((Some(tag), ParseError::MissingName)),
        Some(_) => return Err((None, ParseError::BadTag)),
    }
    if memchr(0, first_line).is_some() {
        return Err((Some(tag), ParseError::Nul));
    }
    // The name is read like an argument, starting at the space after the tag.
    let mut args = Args {
        buf: frame,
        pos: tag_len,
    };
    let name = args
        .atom()
        .map_err(|_| (Some(tag), ParseError::MissingName))?;
    Ok(Command { tag, name, args })
}

/// Reads a first token usable as a tag from rejected input (for answering an overlong line).
pub fn recover_tag(bytes: &[u8]) -> Option<&[u8]> {
    let len = bytes.iter().position(|&b| !is_tag_char(b))?;
    match bytes.get(len) {
        Some(b' ') if len > 0 => Some(&bytes[..len]),
        _ => None,
    }
}

/// A token of the argument list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token<'a> {
    Atom(&'a [u8]),
    String(Cow<'a, [u8]>),
    ListOpen,
    ListClose,
}

/// The arguments of a command, read left to right.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Args<'a> {
    /// The unread rest, CRLF included.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// True when only the line end is left.
    pub fn at_end(&self) -> bool {
        matches!(self.rest(), b"" | b"\r\n" | b"\n")
    }

    /// Succeeds when every argument was consumed.
    pub fn finish(&self) -> Result<(), ParseError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(ParseError::TooManyArguments)
        }
    }

    /// Consumes the single space that separates arguments (tolerating extra ones).
    fn separator(&mut self) -> Result<(), ParseError> {
        if self.at_end() {
            return Err(ParseError::MissingArgument);
        }
        if self.peek() != Some(b' ') {
            return Err(ParseError::ExpectedSpace);
        }
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        if self.at_end() {
            return Err(ParseError::MissingArgument);
        }
        Ok(())
    }

    /// Reads a space then an atom (brackets may enclose spaces, as in `BODY[HEADER.FIELDS (A)]`).
    pub fn atom(&mut self) -> Result<&'a [u8], ParseError> {
        self.separator()?;
        self.raw_atom()
    }

    fn raw_atom(&mut self) -> Result<&'a [u8], ParseError> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b'[' => depth += 1,
                b']' if depth > 0 => depth -= 1,
                b' ' | b'(' | b')' if depth == 0 => break,
                b'\r' | b'\n' => break,
                // A backslash may only start an atom (a flag such as `\Seen`).
                b'\\' if depth == 0 && self.pos == start => {}
                b'{' | b'"' | b'\\' if depth == 0 => break,
                b if b < 0x20 || b == 0x7f => return Err(ParseError::BadAtom),
                _ => {}
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(ParseError::BadAtom);
        }
        Ok(&self.buf[start..self.pos])
    }

    /// Reads a space then an astring: atom, quoted string or literal.
    pub fn astring(&mut self) -> Result<Cow<'a, [u8]>, ParseError> {
        self.separator()?;
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal().map(Cow::Borrowed),
            _ => self.raw_atom().map(Cow::Borrowed),
        }
    }

    /// Reads a space then a string (quoted or literal), or `NIL` as `None`.
    pub fn nstring(&mut self) -> Result<Option<Cow<'a, [u8]>>, ParseError> {
        self.separator()?;
        self.raw_nstring()
    }

    fn raw_nstring(&mut self) -> Result<Option<Cow<'a, [u8]>>, ParseError> {
        match self.peek() {
            Some(b'"') => self.quoted().map(Some),
            Some(b'{') => self.literal().map(|l| Some(Cow::Borrowed(l))),
            _ => {
                let atom = self.raw_atom()?;
                if atom.eq_ignore_ascii_case(b"NIL") {
                    Ok(None)
                } else {
                    Err(ParseError::BadAtom)
                }
            }
        }
    }

    /// Reads a space then either `NIL` (as `None`) or a parenthesised list of nstrings, calling
    /// `each` for every element (used by ID).
    pub fn nstring_list(
        &mut self,
        mut each: impl FnMut(Option<Cow<'a, [u8]>>),
    ) -> Result<bool, ParseError> {
        self.separator()?;
        if self.peek() != Some(b'(') {
            return match self.raw_atom()? {
                a if a.eq_ignore_ascii_case(b"NIL") => Ok(false),
                _ => Err(ParseError::ExpectedList),
            };
        }
        self.pos += 1;
        let mut first = true;
        loop {
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    return Ok(true);
                }
                None | Some(b'\r') | Some(b'\n') => return Err(ParseError::Unbalanced),
                _ => {}
            }
            if !first {
                if self.peek() != Some(b' ') {
                    return Err(ParseError::ExpectedSpace);
                }
                self.pos += 1;
            }
            first = false;
            each(self.raw_nstring()?);
        }
    }

    /// Reads the next token of any kind; `None` at the end of the command.
    pub fn token(&mut self) -> Result<Option<Token<'a>>, ParseError> {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        if self.at_end() {
            return Ok(None);
        }
        Ok(Some(match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                Token::ListOpen
            }
            Some(b')') => {
                self.pos += 1;
                Token::ListClose
            }
            Some(b'"') => Token::String(self.quoted()?),
            Some(b'{') => Token::String(Cow::Borrowed(self.literal()?)),
            // literal8 (RFC 3516 BINARY): `~{n}`, the same framing, any octets.
            Some(b'~') if self.rest().get(1) == Some(&b'{') => {
                self.pos += 1;
                Token::String(Cow::Borrowed(self.literal()?))
            }
            _ => Token::Atom(self.raw_atom()?),
        }))
    }

    fn quoted(&mut self) -> Result<Cow<'a, [u8]>, ParseError> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        let start = self.pos + 1;
        let mut owned: Option<Vec<u8>> = None;
        let mut i = start;
        loop {
            match self.buf.get(i).copied() {
                None | Some(b'\r') | Some(b'\n') => return Err(ParseError::UnterminatedQuoted),
                Some(b'"') => break,
                Some(b'\\') => {
                    let escaped = match self.buf.get(i + 1).copied() {
                        Some(c @ (b'"' | b'\\')) => c,
                        _ => return Err(ParseError::BadEscape),
                    };
                    owned
                        .get_or_insert_with(|| self.buf[start..i].to_vec())
                        .push(escaped);
                    i += 2;
                    continue;
                }
                Some(0) => return Err(ParseError::Nul),
                Some(c) => {
                    if let Some(o) = owned.as_mut() {
                        o.push(c);
                    }
                }
            }
            i += 1;
        }
        self.pos = i + 1;
        Ok(match owned {
            Some(v) => Cow::Owned(v),
            None => Cow::Borrowed(&self.buf[start..i]),
        })
    }

    fn literal(&mut self) -> Result<&'a [u8], ParseError> {
        let rest = self.rest();
        let close = memchr(b'}', rest).ok_or(ParseError::BadLiteral)?;
        let mut digits = &rest[1..close];
        if let Some(d) = digits.strip_suffix(b"+") {
            digits = d;
        }
        let len = parse_number(digits).ok_or(ParseError::BadLiteral)?;
        let after = &rest[close + 1..];
        let skip = if after.starts_with(b"\r\n") {
            2
        } else if after.starts_with(b"\n") {
            1
        } else {
            return Err(ParseError::BadLiteral);
        };
        let body_start = self.pos + close + 1 + skip;
        let len = usize::try_from(len).map_err(|_| ParseError::BadLiteral)?;
        let body_end = body_start
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or(ParseError::BadLiteral)?;
        self.pos = body_end;
        Ok(&self.buf[body_start..body_end])
    }
}

/// tag = 1*<any ASTRING-CHAR except "+">
fn is_tag_char(b: u8) -> bool {
    (is_atom_char(b) && b != b'+') || b == b']'
}

/// ATOM-CHAR: any CHAR except atom-specials.
pub fn is_atom_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
        && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tag_name_and_args() {
        let cmd = parse_command(b"a001 LOGIN joe \"se\\\"cret\"\r\n").expect("parses");
        assert_eq!(cmd.tag, b"a001");
        assert_eq!(cmd.name, b"LOGIN");
        let mut args = cmd.args;
        assert_eq!(args.astring().unwrap().as_ref(), b"joe");
        let pw = args.astring().unwrap();
        assert_eq!(pw.as_ref(), b"se\"cret");
        assert!(matches!(pw, Cow::Owned(_)));
        args.finish().unwrap();
    }

    #[test]
    fn unescaped_quoted_is_borrowed() {
        let cmd = parse_command(b"t LOGIN \"a b\" \"\"\r\n").unwrap();
        let mut args = cmd.args;
        assert!(matches!(args.astring().unwrap(), Cow::Borrowed(b"a b")));
        assert!(matches!(args.astring().unwrap(), Cow::Borrowed(b"")));
        assert!(args.at_end());
    }

    #[test]
    fn literal_arguments() {
        let frame = b"x LOGIN {3}\r\nfoo {4+}\r\nb r\n\r\n";
        let mut args = parse_command(frame).unwrap().args;
        assert_eq!(args.astring().unwrap().as_ref(), b"foo");
        assert_eq!(args.astring().unwrap().as_ref(), b"b r\n");
        args.finish().unwrap();
    }

    #[test]
    fn errors_keep_the_tag() {
        assert_eq!(
            parse_command(b"\r\n").unwrap_err(),
            (None, ParseError::Empty)
        );
        assert_eq!(
            parse_command(b"abc\r\n").unwrap_err(),
            (Some(&b"abc"[..]), ParseError::MissingName)
        );
        assert_eq!(
            parse_command(b"a\0b NOOP\r\n").unwrap_err(),
            (None, ParseError::BadTag)
        );
        assert_eq!(
            parse_command(b"ab NO\0OP\r\n").unwrap_err(),
            (Some(&b"ab"[..]), ParseError::Nul)
        );
        assert_eq!(
            parse_command(b"+x NOOP\r\n").unwrap_err().1,
            ParseError::BadTag
        );
        assert_eq!(
            parse_command(b"* NOOP\r\n").unwrap_err().1,
            ParseError::BadTag
        );
    }

    #[test]
    fn unbalanced_quote_is_an_error() {
        let mut args = parse_command(b"a LOGIN \"joe pw\r\n").unwrap().args;
        assert_eq!(args.astring().unwrap_err(), ParseError::UnterminatedQuoted);
        let mut args = parse_command(b"a LOGIN \"j\\x\"\r\n").unwrap().args;
        assert_eq!(args.astring().unwrap_err(), ParseError::BadEscape);
    }

    #[test]
    fn missing_and_extra_arguments() {
        let mut args = parse_command(b"a LOGIN joe\r\n").unwrap().args;
        args.astring().unwrap();
        assert_eq!(args.astring().unwrap_err(), ParseError::MissingArgument);
        let mut args = parse_command(b"a LOGIN joe pw extra\r\n").unwrap().args;
        args.astring().unwrap();
        args.astring().unwrap();
        assert_eq!(args.finish().unwrap_err(), ParseError::TooManyArguments);
    }

    #[test]
    fn bad_literal_lengths() {
        for frame in [
            &b"a LOGIN {99}\r\nab\r\n"[..],
            b"a LOGIN {x}\r\nab\r\n",
            b"a LOGIN {2}ab\r\n",
            b"a LOGIN {99999999999999999999999}\r\n",
        ] {
            let mut args = parse_command(frame).unwrap().args;
            assert_eq!(
                args.astring().unwrap_err(),
                ParseError::BadLiteral,
                "{frame:?}"
            );
        }
    }

    #[test]
    fn nstring_list_for_id() {
        let mut args = parse_command(b"a ID (\"name\" \"x\" \"os\" NIL)\r\n")
            .unwrap()
            .args;
        let mut seen = Vec::new();
        assert!(
            args.nstring_list(|v| seen.push(v.map(|c| c.into_owned())))
                .unwrap()
        );
        assert_eq!(
            seen,
            vec![
                Some(b"name".to_vec()),
                Some(b"x".to_vec()),
                Some(b"os".to_vec()),
                None
            ]
        );
        let mut args = parse_command(b"a ID NIL\r\n").unwrap().args;
        assert!(!args.nstring_list(|_| {}).unwrap());
        let mut args = parse_command(b"a ID (\"name\"\r\n").unwrap().args;
        assert_eq!(
            args.nstring_list(|_| {}).unwrap_err(),
            ParseError::Unbalanced
        );
    }

    #[test]
    fn tokens_with_brackets() {
        let mut args = parse_command(b"a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM)])\r\n")
            .unwrap()
            .args;
        let mut toks = Vec::new();
        while let Some(t) = args.token().unwrap() {
            toks.push(t);
        }
        assert_eq!(
            toks,
            vec![
                Token::Atom(b"1:*"),
                Token::ListOpen,
                Token::Atom(b"FLAGS"),
                Token::Atom(b"BODY.PEEK[HEADER.FIELDS (FROM)]"),
                Token::ListClose,
            ]
        );
    }

    #[test]
    fn literal8_token() {
        let mut args = parse_command(b"a APPEND INBOX ~{3}\r\na\0b\r\n")
            .unwrap()
            .args;
        assert_eq!(args.token().unwrap(), Some(Token::Atom(b"INBOX")));
        assert_eq!(
            args.token().unwrap(),
            Some(Token::String(Cow::Borrowed(b"a\0b")))
        );
        assert!(args.at_end());
    }

    #[test]
    fn recover_tag_from_rejected_bytes() {
        assert_eq!(recover_tag(b"a12 APPEND x"), Some(&b"a12"[..]));
        assert_eq!(recover_tag(b"xxxxxxxx"), None);
        assert_eq!(recover_tag(b" NOOP"), None);
    }
}
