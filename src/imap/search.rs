//! SEARCH (RFC 3501 §6.4.4) with the RETURN options of ESEARCH (RFC 4731): parsing the
//! criteria, evaluating them for one message, and writing the untagged answer.
//!
//! Evaluation is per message through the [`Candidate`] trait, which the session implements over
//! its view of the mailbox and the store. Cheap criteria (flags, numbers, sizes, dates) are
//! always tried before criteria that need the message's content, and content is loaded and
//! parsed at most once per message, only when the outcome still depends on it.
//!
//! String criteria are case-insensitive substring matches on decoded text: header values with
//! RFC 2047 encoded words decoded and folding removed, and the decoded text of the body parts
//! (HTML converted to text; nested messages included).

use std::borrow::Cow;
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate};
use mail_parser::decoders::html::html_to_text;
use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, Message, MessageParser, PartType};
use memchr::memmem;
use thiserror::Error;

use super::datetime::{parse_date, parse_rfc5322_date};
use super::parser::{Args, ParseError, Token};
use super::response;
use super::scanner::parse_number;
use super::sequence::{SequenceSet, write_compact};
use crate::store::flags::{self, Flags};

/// Deepest nesting of parentheses, NOT and OR accepted, so that a hostile command cannot
/// exhaust the stack during parsing, evaluation or dropping.
pub const MAX_DEPTH: usize = 64;

/// mail-parser's parser holds a table of header parsers; build it once.
pub(crate) static PARSER: LazyLock<MessageParser> = LazyLock::new(MessageParser::default);

/// Why a SEARCH command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SearchError {
    /// The CHARSET is neither UTF-8 nor US-ASCII; answer
    /// `NO [BADCHARSET (UTF-8 US-ASCII)] ...`.
    #[error("Unsupported charset {0}")]
    BadCharset(String),
    /// Bad syntax, or criteria nested deeper than [`MAX_DEPTH`]
    /// ([`ParseError::TooManyArguments`]); answer `BAD`.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// One search criterion. Strings are kept as sent (converted to UTF-8, lossily if need be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Bcc(String),
    Before(NaiveDate),
    Body(String),
    Cc(String),
    Deleted,
    Draft,
    Flagged,
    From(String),
    /// Field name, then the string to find in its value.
    Header(String, String),
    Keyword(String),
    Larger(u64),
    New,
    Not(Box<SearchKey>),
    Old,
    On(NaiveDate),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    Seen,
    SentBefore(NaiveDate),
    SentOn(NaiveDate),
    SentSince(NaiveDate),
    Since(NaiveDate),
    Smaller(u64),
    Subject(String),
    Text(String),
    To(String),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    /// A bare sequence set: message sequence numbers.
    Sequence(SequenceSet),
    /// `MODSEQ [entry-name entry-type] n` (RFC 7162 §3.1.5): mod-sequence at least `n`. hato
    /// keeps one mod-sequence per message, not per flag, so the entry is checked and ignored,
    /// as the RFC allows for servers without per-flag mod-sequences.
    ModSeq(u64),
    /// `$`, the saved search result (RFC 5182 §2.1), as a key or after `UID`. The command
    /// handler swaps it for the messages saved ([`substitute_saved`]) before evaluation.
    Saved,
    /// All of these (a parenthesised list, or several keys at the top level).
    And(Vec<SearchKey>),
}

/// An ESEARCH RETURN option (RFC 4731).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnOption {
    Min,
    Max,
    All,
    Count,
    /// SAVE (RFC 5182 §2.4): keep the result as `$`; SEARCH only.
    Save,
}

/// A parsed SEARCH command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    /// The CHARSET given, upper-cased (`UTF-8` or `US-ASCII`), if any.
    pub charset: Option<String>,
    pub key: SearchKey,
    /// `None`: classic `* SEARCH` answer. `Some`: `* ESEARCH` answer with these options
    /// (deduplicated, in the order sent); `Some(empty)` (`RETURN ()`) means ALL.
    pub ret: Option<Vec<ReturnOption>>,
}

/// Parses everything after `SEARCH` (or `UID SEARCH`): an optional `RETURN (...)`, an optional
/// `CHARSET name`, then one or more keys (implicitly ANDed). Consumes the arguments to the end.
pub fn parse(args: &mut Args<'_>) -> Result<SearchRequest, SearchError> {
    let ret = parse_return(args)?;
    let (charset, key) = parse_charset_and_keys(args, false)?;
    Ok(SearchRequest { charset, key, ret })
}

/// An optional `RETURN (...)` (RFC 4731, and RFC 5267 for SORT): `None` when absent.
pub fn parse_return(args: &mut Args<'_>) -> Result<Option<Vec<ReturnOption>>, SearchError> {
    if peek_atom_is(args, b"RETURN")? {
        args.token()?;
        return Ok(Some(parse_return_options(args)?));
    }
    Ok(None)
}

/// The charset and the search keys (implicitly ANDed) up to the end of the command. SEARCH
/// takes an optional `CHARSET name`; SORT and THREAD (RFC 5256) take a bare charset name that
/// must be there (`required`). Only UTF-8 and US-ASCII are accepted.
pub fn parse_charset_and_keys(
    args: &mut Args<'_>,
    required: bool,
) -> Result<(Option<String>, SearchKey), SearchError> {
    let mut charset = None;
    let present = required || peek_atom_is(args, b"CHARSET")?;
    if present {
        if !required {
            args.token()?;
        }
        let name = match args.token()? {
            Some(Token::Atom(a)) => Cow::Borrowed(a),
            Some(Token::String(s)) => s,
            Some(_) => return Err(ParseError::BadAtom.into()),
            None => return Err(ParseError::MissingArgument.into()),
        };
        if !(name.eq_ignore_ascii_case(b"UTF-8") || name.eq_ignore_ascii_case(b"US-ASCII")) {
            return Err(SearchError::BadCharset(
                String::from_utf8_lossy(&name).into_owned(),
            ));
        }
        charset = Some(String::from_utf8_lossy(&name).to_ascii_uppercase());
    }
    let mut keys = Vec::new();
    loop {
        match peek(args)? {
            None => break,
            Some(Token::ListClose) => return Err(ParseError::Unbalanced.into()),
            Some(_) => keys.push(parse_key(args, 0)?),
        }
    }
    let key = match keys.len() {
        0 => return Err(ParseError::MissingArgument.into()),
        1 => keys.pop().unwrap_or(SearchKey::All),
        _ => SearchKey::And(keys),
    };
    Ok((charset, key))
}

/// The next token without consuming it.
fn peek<'a>(args: &Args<'a>) -> Result<Option<Token<'a>>, ParseError> {
    args.clone().token()
}

/// Whether the next token is the atom `word` (case-insensitively).
fn peek_atom_is(args: &Args<'_>, word: &[u8]) -> Result<bool, ParseError> {
    Ok(matches!(peek(args)?, Some(Token::Atom(a)) if a.eq_ignore_ascii_case(word)))
}

/// `(` [option *(SP option)] `)` after RETURN.
fn parse_return_options(args: &mut Args<'_>) -> Result<Vec<ReturnOption>, ParseError> {
    match args.token()? {
        Some(Token::ListOpen) => {}
        None => return Err(ParseError::MissingArgument),
        Some(_) => return Err(ParseError::ExpectedList),
    }
    let mut options = Vec::new();
    loop {
        let option = match args.token()? {
            Some(Token::ListClose) => return Ok(options),
            None => return Err(ParseError::Unbalanced),
            Some(Token::Atom(a)) => match a.to_ascii_uppercase().as_slice() {
                b"MIN" => ReturnOption::Min,
                b"MAX" => ReturnOption::Max,
                b"ALL" => ReturnOption::All,
                b"COUNT" => ReturnOption::Count,
                b"SAVE" => ReturnOption::Save,
                _ => return Err(ParseError::BadAtom),
            },
            Some(_) => return Err(ParseError::BadAtom),
        };
        if !options.contains(&option) {
            options.push(option);
        }
    }
}

/// A string argument (atom, quoted or literal) as UTF-8.
fn string_arg(args: &mut Args<'_>) -> Result<String, ParseError> {
    match args.token()? {
        Some(Token::Atom(a)) => Ok(String::from_utf8_lossy(a).into_owned()),
        Some(Token::String(s)) => Ok(String::from_utf8_lossy(&s).into_owned()),
        Some(_) => Err(ParseError::BadAtom),
        None => Err(ParseError::MissingArgument),
    }
}

/// A date argument, bare or quoted.
fn date_arg(args: &mut Args<'_>) -> Result<NaiveDate, ParseError> {
    let date = match args.token()? {
        Some(Token::Atom(a)) => parse_date(a),
        Some(Token::String(s)) => parse_date(&s),
        Some(_) => return Err(ParseError::BadAtom),
        None => return Err(ParseError::MissingArgument),
    };
    date.ok_or(ParseError::BadAtom)
}

/// An atom argument (numbers, sequence sets, keywords).
fn atom_arg<'a>(args: &mut Args<'a>) -> Result<&'a [u8], ParseError> {
    match args.token()? {
        Some(Token::Atom(a)) => Ok(a),
        Some(_) => Err(ParseError::BadAtom),
        None => Err(ParseError::MissingArgument),
    }
}

/// The arguments of MODSEQ (RFC 7162 §3.1.5): `["/flags/<flag>" priv|shared|all] <n>`, `n` a
/// `mod-sequence-valzer`.
fn modseq_arg(args: &mut Args<'_>) -> Result<u64, ParseError> {
    let value = match args.token()? {
        Some(Token::String(entry)) => {
            let prefix = b"/flags/";
            let named_flag =
                entry.len() > prefix.len() && entry[..prefix.len()].eq_ignore_ascii_case(prefix);
            let kind = atom_arg(args)?;
            let known_kind = [&b"priv"[..], b"shared", b"all"]
                .iter()
                .any(|k| kind.eq_ignore_ascii_case(k));
            if !named_flag || !known_kind {
                return Err(ParseError::BadAtom);
            }
            atom_arg(args)?
        }
        Some(Token::Atom(a)) => a,
        Some(_) => return Err(ParseError::BadAtom),
        None => return Err(ParseError::MissingArgument),
    };
    crate::imap::condstore::parse_modseq(value, true)
}

/// Whether `key` uses MODSEQ anywhere: the search is then a CONDSTORE enabling command and
/// its answer carries the highest mod-sequence of the matches (RFC 7162 §3.1.5, §3.1.6).
pub fn uses_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq(_) => true,
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::And(keys) => keys.iter().any(uses_modseq),
        _ => false,
    }
}

/// One search key (possibly a parenthesised list), `depth` levels deep.
fn parse_key(args: &mut Args<'_>, depth: usize) -> Result<SearchKey, SearchError> {
    if depth >= MAX_DEPTH {
        return Err(ParseError::TooManyArguments.into());
    }
    let atom = match args.token()? {
        None => return Err(ParseError::MissingArgument.into()),
        Some(Token::ListClose) => return Err(ParseError::Unbalanced.into()),
        Some(Token::String(_)) => return Err(ParseError::BadAtom.into()),
        Some(Token::ListOpen) => {
            let mut keys = Vec::new();
            loop {
                match peek(args)? {
                    None => return Err(ParseError::Unbalanced.into()),
                    Some(Token::ListClose) => {
                        args.token()?;
                        break;
                    }
                    Some(_) => keys.push(parse_key(args, depth + 1)?),
                }
            }
            return match keys.len() {
                0 => Err(ParseError::MissingArgument.into()),
                1 => Ok(keys.pop().unwrap_or(SearchKey::All)),
                _ => Ok(SearchKey::And(keys)),
            };
        }
        Some(Token::Atom(a)) => a,
    };
    if atom == b"$" {
        return Ok(SearchKey::Saved);
    }
    if matches!(atom.first(), Some(b'0'..=b'9' | b'*')) {
        return Ok(SearchKey::Sequence(SequenceSet::parse(atom)?));
    }
    let key = match atom.to_ascii_uppercase().as_slice() {
        b"ALL" => SearchKey::All,
        b"ANSWERED" => SearchKey::Answered,
        b"BCC" => SearchKey::Bcc(string_arg(args)?),
        b"BEFORE" => SearchKey::Before(date_arg(args)?),
        b"BODY" => SearchKey::Body(string_arg(args)?),
        b"CC" => SearchKey::Cc(string_arg(args)?),
        b"DELETED" => SearchKey::Deleted,
        b"DRAFT" => SearchKey::Draft,
        b"FLAGGED" => SearchKey::Flagged,
        b"FROM" => SearchKey::From(string_arg(args)?),
        b"HEADER" => {
            let name = string_arg(args)?;
            SearchKey::Header(name, string_arg(args)?)
        }
        b"KEYWORD" => SearchKey::Keyword(String::from_utf8_lossy(atom_arg(args)?).into_owned()),
        b"MODSEQ" => SearchKey::ModSeq(modseq_arg(args)?),
        b"LARGER" => SearchKey::Larger(parse_number(atom_arg(args)?).ok_or(ParseError::BadAtom)?),
        b"NEW" => SearchKey::New,
        b"NOT" => SearchKey::Not(Box::new(parse_key(args, depth + 1)?)),
        b"OLD" => SearchKey::Old,
        b"ON" => SearchKey::On(date_arg(args)?),
        b"OR" => {
            let a = parse_key(args, depth + 1)?;
            let b = parse_key(args, depth + 1)?;
            SearchKey::Or(Box::new(a), Box::new(b))
        }
        b"RECENT" => SearchKey::Recent,
        b"SEEN" => SearchKey::Seen,
        b"SENTBEFORE" => SearchKey::SentBefore(date_arg(args)?),
        b"SENTON" => SearchKey::SentOn(date_arg(args)?),
        b"SENTSINCE" => SearchKey::SentSince(date_arg(args)?),
        b"SINCE" => SearchKey::Since(date_arg(args)?),
        b"SMALLER" => SearchKey::Smaller(parse_number(atom_arg(args)?).ok_or(ParseError::BadAtom)?),
        b"SUBJECT" => SearchKey::Subject(string_arg(args)?),
        b"TEXT" => SearchKey::Text(string_arg(args)?),
        b"TO" => SearchKey::To(string_arg(args)?),
        b"UID" => match atom_arg(args)? {
            b"$" => SearchKey::Saved,
            set => SearchKey::Uid(SequenceSet::parse(set)?),
        },
        b"UNANSWERED" => SearchKey::Unanswered,
        b"UNDELETED" => SearchKey::Undeleted,
        b"UNDRAFT" => SearchKey::Undraft,
        b"UNFLAGGED" => SearchKey::Unflagged,
        b"UNKEYWORD" => SearchKey::Unkeyword(String::from_utf8_lossy(atom_arg(args)?).into_owned()),
        b"UNSEEN" => SearchKey::Unseen,
        _ => return Err(ParseError::BadAtom.into()),
    };
    Ok(key)
}

/// What evaluation needs to know about one message. The session implements it over its view
/// and the store.
pub trait Candidate {
    /// Message sequence number.
    fn msn(&self) -> u32;
    fn uid(&self) -> u32;
    fn flags(&self) -> Flags;
    /// Whether the message is `\Recent` in this session.
    fn recent(&self) -> bool;
    /// RFC822.SIZE.
    fn size(&self) -> u64;
    /// INTERNALDATE in unix seconds.
    fn internal_date(&self) -> i64;
    /// The mod-sequence (RFC 7162).
    fn modseq(&self) -> u64;
    /// Whether the message carries the keyword `name` (resolved through the mailbox's keyword
    /// list; `false` for keywords the mailbox does not know).
    fn has_keyword(&self, name: &str) -> bool;
    /// The raw message, loaded on first use (only for header, date-header and text keys).
    /// `None` if it cannot be read; then those keys do not match.
    fn content(&mut self) -> Option<&[u8]>;
}

/// Whether `key` uses RECENT, NEW or OLD, which IMAP4rev2 removed with `\Recent` (RFC 9051
/// Appendix E; its search-key grammar has none of them).
pub fn uses_recent(key: &SearchKey) -> bool {
    match key {
        SearchKey::Recent | SearchKey::New | SearchKey::Old => true,
        SearchKey::Not(k) => uses_recent(k),
        SearchKey::Or(a, b) => uses_recent(a) || uses_recent(b),
        SearchKey::And(keys) => keys.iter().any(uses_recent),
        _ => false,
    }
}

/// Replaces every `$` in `key` with the messages of the saved result (`saved`: UIDs,
/// ascending). `$` names messages, so `$` and `UID $` mean the same (RFC 5182 §2.1); an empty
/// result matches nothing.
pub fn substitute_saved(key: &mut SearchKey, saved: &[u32]) {
    match key {
        SearchKey::Saved => {
            *key = if saved.is_empty() {
                SearchKey::Not(Box::new(SearchKey::All))
            } else {
                SearchKey::Uid(SequenceSet::of_ascending(saved))
            };
        }
        SearchKey::Not(k) => substitute_saved(k, saved),
        SearchKey::Or(a, b) => {
            substitute_saved(a, saved);
            substitute_saved(b, saved);
        }
        SearchKey::And(keys) => keys.iter_mut().for_each(|k| substitute_saved(k, saved)),
        _ => {}
    }
}

/// The matches (ascending) to keep as `$` for the RETURN options `ret` (RFC 5182 §2.4): only
/// MIN and/or MAX (with SAVE) keep those messages; otherwise all of them are kept.
pub fn saved_part(ret: &[ReturnOption], matches: &[u32]) -> Vec<u32> {
    let min_max_only = ret.iter().all(|o| {
        matches!(
            o,
            ReturnOption::Min | ReturnOption::Max | ReturnOption::Save
        )
    }) && ret
        .iter()
        .any(|o| matches!(o, ReturnOption::Min | ReturnOption::Max));
    if !min_max_only {
        return matches.to_vec();
    }
    let mut kept = Vec::new();
    if ret.contains(&ReturnOption::Min)
        && let Some(&min) = matches.iter().min()
    {
        kept.push(min);
    }
    if ret.contains(&ReturnOption::Max)
        && let Some(&max) = matches.iter().max()
        && !kept.contains(&max)
    {
        kept.push(max);
    }
    kept
}

/// True when evaluating `key` never needs the message's content, so a session can skip loading.
pub fn needs_content(key: &SearchKey) -> bool {
    match key {
        SearchKey::Bcc(_)
        | SearchKey::Body(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::Header(..)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_)
        | SearchKey::Subject(_)
        | SearchKey::Text(_)
        | SearchKey::To(_) => true,
        SearchKey::Not(k) => needs_content(k),
        SearchKey::Or(a, b) => needs_content(a) || needs_content(b),
        SearchKey::And(keys) => keys.iter().any(needs_content),
        _ => false,
    }
}

/// True when `key` looks into message bodies (BODY, TEXT), not only headers.
fn needs_body(key: &SearchKey) -> bool {
    match key {
        SearchKey::Body(_) | SearchKey::Text(_) => true,
        SearchKey::Not(k) => needs_body(k),
        SearchKey::Or(a, b) => needs_body(a) || needs_body(b),
        SearchKey::And(keys) => keys.iter().any(needs_body),
        _ => false,
    }
}

/// Calls `each` for every KEYWORD / UNKEYWORD name in `key`.
fn for_each_keyword<'k>(key: &'k SearchKey, each: &mut dyn FnMut(&'k str)) {
    match key {
        SearchKey::Keyword(k) | SearchKey::Unkeyword(k) => each(k),
        SearchKey::Not(k) => for_each_keyword(k, each),
        SearchKey::Or(a, b) => {
            for_each_keyword(a, each);
            for_each_keyword(b, each);
        }
        SearchKey::And(keys) => keys.iter().for_each(|k| for_each_keyword(k, each)),
        _ => {}
    }
}

/// Evaluates `key` for one message; `largest_msn` and `largest_uid` give `*` its value.
pub fn matches(key: &SearchKey, c: &mut dyn Candidate, largest_msn: u32, largest_uid: u32) -> bool {
    // Everything but the content is read up front, so that the candidate can then be handed
    // over for content loading (which borrows it for as long as the content is in use).
    let mut keywords: Vec<(&str, bool)> = Vec::new();
    for_each_keyword(key, &mut |name| {
        if !keywords.iter().any(|(n, _)| *n == name) {
            keywords.push((name, c.has_keyword(name)));
        }
    });
    let facts = Facts {
        msn: c.msn(),
        uid: c.uid(),
        flags: c.flags(),
        recent: c.recent(),
        size: c.size(),
        internal_date: DateTime::from_timestamp(c.internal_date(), 0).map(|d| d.date_naive()),
        modseq: c.modseq(),
        keywords,
        largest_msn,
        largest_uid,
    };
    let mut content = Content::Pending {
        candidate: c,
        with_body: needs_body(key),
    };
    facts.eval(key, &mut content)
}

/// The cheap facts about a message.
struct Facts<'k> {
    msn: u32,
    uid: u32,
    flags: Flags,
    recent: bool,
    size: u64,
    /// The internal date's day in UTC (`None` if out of chrono's range).
    internal_date: Option<NaiveDate>,
    modseq: u64,
    keywords: Vec<(&'k str, bool)>,
    largest_msn: u32,
    largest_uid: u32,
}

impl Facts<'_> {
    fn keyword(&self, name: &str) -> bool {
        self.keywords
            .iter()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, has)| *has)
    }

    fn eval(&self, key: &SearchKey, content: &mut Content<'_>) -> bool {
        let seen = self.flags.has(flags::SEEN);
        match key {
            SearchKey::All => true,
            SearchKey::Answered => self.flags.has(flags::ANSWERED),
            SearchKey::Unanswered => !self.flags.has(flags::ANSWERED),
            SearchKey::Deleted => self.flags.has(flags::DELETED),
            SearchKey::Undeleted => !self.flags.has(flags::DELETED),
            SearchKey::Draft => self.flags.has(flags::DRAFT),
            SearchKey::Undraft => !self.flags.has(flags::DRAFT),
            SearchKey::Flagged => self.flags.has(flags::FLAGGED),
            SearchKey::Unflagged => !self.flags.has(flags::FLAGGED),
            SearchKey::Seen => seen,
            SearchKey::Unseen => !seen,
            SearchKey::Recent => self.recent,
            // Always replaced by `substitute_saved` first; an unreplaced `$` names nothing.
            SearchKey::Saved => false,
            SearchKey::New => self.recent && !seen,
            SearchKey::Old => !self.recent,
            SearchKey::Keyword(k) => self.keyword(k),
            SearchKey::Unkeyword(k) => !self.keyword(k),
            SearchKey::Larger(n) => self.size > *n,
            SearchKey::Smaller(n) => self.size < *n,
            SearchKey::Before(d) => self.internal_date.is_some_and(|day| day < *d),
            SearchKey::On(d) => self.internal_date.is_some_and(|day| day == *d),
            SearchKey::Since(d) => self.internal_date.is_some_and(|day| day >= *d),
            SearchKey::Uid(set) => set.contains(self.uid, self.largest_uid),
            SearchKey::Sequence(set) => set.contains(self.msn, self.largest_msn),
            SearchKey::ModSeq(n) => self.modseq >= *n,
            SearchKey::Not(k) => !self.eval(k, content),
            SearchKey::Or(a, b) => {
                // The cheap side first: it may make loading the content unnecessary.
                let (first, second) = if needs_content(a) && !needs_content(b) {
                    (b, a)
                } else {
                    (a, b)
                };
                self.eval(first, content) || self.eval(second, content)
            }
            SearchKey::And(keys) => {
                keys.iter()
                    .filter(|k| !needs_content(k))
                    .all(|k| self.eval(k, content))
                    && keys
                        .iter()
                        .filter(|k| needs_content(k))
                        .all(|k| self.eval(k, content))
            }
            SearchKey::SentBefore(d) => content.sent_date().is_some_and(|day| day < *d),
            SearchKey::SentOn(d) => content.sent_date().is_some_and(|day| day == *d),
            SearchKey::SentSince(d) => content.sent_date().is_some_and(|day| day >= *d),
            SearchKey::Bcc(s) => content.header_contains("Bcc", s),
            SearchKey::Cc(s) => content.header_contains("Cc", s),
            SearchKey::From(s) => content.header_contains("From", s),
            SearchKey::To(s) => content.header_contains("To", s),
            SearchKey::Subject(s) => content.header_contains("Subject", s),
            SearchKey::Header(name, s) => content.header_contains(name, s),
            SearchKey::Body(s) => content.body_contains(s),
            SearchKey::Text(s) => content.text_contains(s),
        }
    }
}

/// A message's content: not yet loaded, or loaded and parsed with lazily built search texts.
enum Content<'c> {
    Pending {
        candidate: &'c mut dyn Candidate,
        with_body: bool,
    },
    /// The content could not be read.
    Missing,
    Loaded(Box<Parsed<'c>>),
}

/// A parsed message and the lower-cased texts built from it so far.
struct Parsed<'c> {
    /// `None` when mail-parser found no header at all; the raw bytes are then the body.
    message: Option<Message<'c>>,
    raw: &'c [u8],
    /// Decoded top-level header fields, `name: value` lines, lower-cased (for TEXT).
    header_text: Option<String>,
    /// Decoded text of all body parts, lower-cased (for BODY and TEXT).
    body_text: Option<String>,
}

impl<'c> Content<'c> {
    fn parsed(&mut self) -> Option<&mut Parsed<'c>> {
        if let Content::Pending { .. } = self {
            let Content::Pending {
                candidate,
                with_body,
            } = std::mem::replace(self, Content::Missing)
            else {
                return None;
            };
            if let Some(raw) = candidate.content() {
                let message = if with_body {
                    PARSER.parse(raw)
                } else {
                    PARSER.parse_headers(raw)
                };
                *self = Content::Loaded(Box::new(Parsed {
                    message,
                    raw,
                    header_text: None,
                    body_text: None,
                }));
            }
        }
        match self {
            Content::Loaded(parsed) => Some(parsed),
            _ => None,
        }
    }

    /// The day of the `Date:` header, in the header's own time zone.
    fn sent_date(&mut self) -> Option<NaiveDate> {
        let parsed = self.parsed()?;
        let message = parsed.message.as_ref()?;
        let value = message
            .headers()
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case("Date"))
            .and_then(|h| raw_value(message, h))?;
        parse_rfc5322_date(value).map(|dt| dt.date_naive())
    }

    /// Whether a top-level header field `name` exists whose decoded value contains `needle`.
    fn header_contains(&mut self, name: &str, needle: &str) -> bool {
        let Some(message) = self.parsed().and_then(|p| p.message.as_ref()) else {
            return false;
        };
        let needle = needle.to_lowercase();
        message
            .headers()
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(name))
            .any(|h| {
                needle.is_empty()
                    || raw_value(message, h).is_some_and(|raw| {
                        contains(&decode_header_value(raw).to_lowercase(), &needle)
                    })
            })
    }

    fn body_contains(&mut self, needle: &str) -> bool {
        let Some(parsed) = self.parsed() else {
            return false;
        };
        let needle = needle.to_lowercase();
        contains(parsed.body_text(), &needle)
    }

    fn text_contains(&mut self, needle: &str) -> bool {
        let Some(parsed) = self.parsed() else {
            return false;
        };
        let needle = needle.to_lowercase();
        contains(parsed.header_text(), &needle) || contains(parsed.body_text(), &needle)
    }
}

impl Parsed<'_> {
    fn header_text(&mut self) -> &str {
        if self.header_text.is_none() {
            let mut text = String::new();
            if let Some(message) = &self.message {
                append_headers(message, &mut text);
            }
            self.header_text = Some(text.to_lowercase());
        }
        self.header_text.as_deref().unwrap_or_default()
    }

    fn body_text(&mut self) -> &str {
        if self.body_text.is_none() {
            let mut text = String::new();
            match &self.message {
                Some(message) => append_bodies(message, &mut text),
                None => text.push_str(&String::from_utf8_lossy(self.raw)),
            }
            self.body_text = Some(text.to_lowercase());
        }
        self.body_text.as_deref().unwrap_or_default()
    }
}

/// Case-sensitive substring search (both sides are already lower-cased).
fn contains(haystack: &str, needle: &str) -> bool {
    memmem::find(haystack.as_bytes(), needle.as_bytes()).is_some()
}

/// The raw (still folded and encoded) value of a header field of `message`.
pub(crate) fn raw_value<'m>(
    message: &'m Message<'_>,
    header: &mail_parser::Header<'_>,
) -> Option<&'m [u8]> {
    let start = usize::try_from(header.offset_start).ok()?;
    let end = usize::try_from(header.offset_end).ok()?;
    message.raw_message.get(start..end)
}

/// Unfolds a raw header value and decodes its RFC 2047 encoded words.
pub(crate) fn decode_header_value(raw: &[u8]) -> Cow<'_, str> {
    // mail-parser's unstructured parser ends a value at a line end, so make sure there is one.
    let owned;
    let raw = if raw.ends_with(b"\n") {
        raw
    } else {
        owned = [raw, b"\r\n"].concat();
        &owned
    };
    match MessageStream::new(raw).parse_unstructured() {
        HeaderValue::Text(text) => Cow::Owned(text.into_owned()),
        _ => Cow::Borrowed(""),
    }
}

/// Appends the decoded top-level header fields of `message` as `name: value` lines.
fn append_headers(message: &Message<'_>, out: &mut String) {
    for header in message.headers() {
        out.push_str(header.name());
        out.push_str(": ");
        if let Some(raw) = raw_value(message, header) {
            out.push_str(&decode_header_value(raw));
        }
        out.push('\n');
    }
}

/// Appends the decoded text of every text part of `message`, including the headers and text
/// of attached messages (walked without recursion, however deep they nest).
fn append_bodies(message: &Message<'_>, out: &mut String) {
    let mut pending = vec![message];
    while let Some(message) = pending.pop() {
        for part in &message.parts {
            match &part.body {
                PartType::Text(text) => out.push_str(text),
                PartType::Html(html) => out.push_str(&html_to_text(html)),
                PartType::Message(nested) => {
                    append_headers(nested, out);
                    pending.push(nested);
                }
                PartType::Binary(_) | PartType::InlineBinary(_) | PartType::Multipart(_) => {
                    continue;
                }
            }
            out.push('\n');
        }
    }
}

/// Writes the untagged answer for `matches` (message sequence numbers, or UIDs for UID SEARCH;
/// expected ascending).
///
/// With `ret` `None`, the classic `* SEARCH 2 5 9`. Otherwise the RFC 4731 form
/// `* ESEARCH (TAG "a1") UID MIN 2 MAX 9 COUNT 3 ALL 2,5,9` (`UID` when `uid`), with the
/// requested options in that order; an empty `ret` means ALL. MIN, MAX and ALL are left out
/// when nothing matched; COUNT is always written when requested.
///
/// `modseqs` (the mod-sequence of each match, in the same order) is given when the search used
/// MODSEQ: a non-empty answer then ends with the highest mod-sequence of the messages it
/// returns, `(MODSEQ n)` in the classic form (RFC 7162 §3.1.6) and `MODSEQ n` in ESEARCH
/// (§3.1.10), where with only MIN and/or MAX the messages returned are those two.
pub fn write_results(
    tag: &[u8],
    uid: bool,
    ret: Option<&[ReturnOption]>,
    matches: &[u32],
    modseqs: Option<&[u64]>,
    out: &mut Vec<u8>,
) {
    // RFC 5182 §2.4: SAVE alone asks for no ESEARCH response; with other options it changes
    // nothing in the answer.
    let without_save: Vec<ReturnOption>;
    let ret = match ret {
        Some(options) if options.contains(&ReturnOption::Save) => {
            without_save = options
                .iter()
                .copied()
                .filter(|&o| o != ReturnOption::Save)
                .collect();
            if without_save.is_empty() {
                return;
            }
            Some(without_save.as_slice())
        }
        other => other,
    };
    let Some(ret) = ret else {
        out.extend_from_slice(b"* SEARCH");
        for n in matches {
            out.push(b' ');
            out.extend_from_slice(n.to_string().as_bytes());
        }
        if let Some(highest) = modseqs.and_then(|m| m.iter().max()) {
            out.extend_from_slice(b" (MODSEQ ");
            out.extend_from_slice(highest.to_string().as_bytes());
            out.push(b')');
        }
        out.extend_from_slice(b"\r\n");
        return;
    };
    let wants = |option| (ret.is_empty() && option == ReturnOption::All) || ret.contains(&option);
    out.extend_from_slice(b"* ESEARCH (TAG ");
    response::string(out, tag);
    out.push(b')');
    if uid {
        out.extend_from_slice(b" UID");
    }
    let min = matches.iter().enumerate().min_by_key(|&(_, n)| n);
    let max = matches.iter().enumerate().max_by_key(|&(_, n)| n);
    if wants(ReturnOption::Min)
        && let Some((_, min)) = min
    {
        out.extend_from_slice(b" MIN ");
        out.extend_from_slice(min.to_string().as_bytes());
    }
    if wants(ReturnOption::Max)
        && let Some((_, max)) = max
    {
        out.extend_from_slice(b" MAX ");
        out.extend_from_slice(max.to_string().as_bytes());
    }
    if wants(ReturnOption::Count) {
        out.extend_from_slice(b" COUNT ");
        out.extend_from_slice(matches.len().to_string().as_bytes());
    }
    if wants(ReturnOption::All) && !matches.is_empty() {
        out.extend_from_slice(b" ALL ");
        if matches.windows(2).all(|w| w[0] < w[1]) {
            write_compact(matches, out);
        } else {
            let mut sorted = matches.to_vec();
            sorted.sort_unstable();
            write_compact(&sorted, out);
        }
    }
    if let Some(modseqs) = modseqs {
        let highest = if wants(ReturnOption::All) || wants(ReturnOption::Count) {
            modseqs.iter().max().copied()
        } else {
            // Only MIN and/or MAX: the messages returned are those.
            [
                min.filter(|_| wants(ReturnOption::Min)),
                max.filter(|_| wants(ReturnOption::Max)),
            ]
            .into_iter()
            .flatten()
            .filter_map(|(i, _)| modseqs.get(i).copied())
            .max()
        };
        if let Some(highest) = highest {
            out.extend_from_slice(b" MODSEQ ");
            out.extend_from_slice(highest.to_string().as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::parser::parse_command;

    fn req(args: &str) -> Result<SearchRequest, SearchError> {
        let frame = format!("a1 SEARCH {args}\r\n");
        let mut cmd = parse_command(frame.as_bytes()).expect("command head parses");
        parse(&mut cmd.args)
    }

    fn key(args: &str) -> SearchKey {
        req(args).expect("valid search").key
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid test date")
    }

    fn seq(s: &str) -> SequenceSet {
        SequenceSet::parse(s.as_bytes()).expect("valid set")
    }

    #[derive(Default)]
    struct Fake {
        msn: u32,
        uid: u32,
        flags: Flags,
        recent: bool,
        size: u64,
        internal_date: i64,
        modseq: u64,
        keywords: Vec<&'static str>,
        content: Option<Vec<u8>>,
        loads: usize,
    }

    impl Candidate for Fake {
        fn msn(&self) -> u32 {
            self.msn
        }
        fn uid(&self) -> u32 {
            self.uid
        }
        fn flags(&self) -> Flags {
            self.flags
        }
        fn recent(&self) -> bool {
            self.recent
        }
        fn size(&self) -> u64 {
            self.size
        }
        fn internal_date(&self) -> i64 {
            self.internal_date
        }
        fn modseq(&self) -> u64 {
            self.modseq
        }
        fn has_keyword(&self, name: &str) -> bool {
            self.keywords.iter().any(|k| k.eq_ignore_ascii_case(name))
        }
        fn content(&mut self) -> Option<&[u8]> {
            self.loads += 1;
            self.content.as_deref()
        }
    }

    fn with_flags(system: u8) -> Fake {
        Fake {
            msn: 1,
            uid: 1,
            flags: Flags {
                system,
                keywords: 0,
            },
            ..Fake::default()
        }
    }

    fn with_content(raw: &str) -> Fake {
        Fake {
            msn: 1,
            uid: 1,
            content: Some(raw.as_bytes().to_vec()),
            ..Fake::default()
        }
    }

    /// Parses `args` and evaluates them for `c` with `*` = 10 (MSN) and 100 (UID).
    fn hit(args: &str, c: &mut Fake) -> bool {
        matches(&key(args), c, 10, 100)
    }

    #[test]
    fn saved_result_variable() {
        // `$` as a key and after UID (RFC 5182 §2.1), also inside other keys.
        assert_eq!(key("$"), SearchKey::Saved);
        assert_eq!(key("UID $"), SearchKey::Saved);
        let mut k = key("OR $ DELETED");
        substitute_saved(&mut k, &[3, 4, 5, 9]);
        let SearchKey::Or(a, _) = &k else {
            panic!("OR expected: {k:?}");
        };
        assert_eq!(
            **a,
            SearchKey::Uid(SequenceSet::of_ascending(&[3, 4, 5, 9]))
        );
        // An empty (or never saved) result matches nothing.
        let mut k = key("$");
        substitute_saved(&mut k, &[]);
        let mut any = Fake::default();
        assert!(!matches(&k, &mut any, 10, 100));
        assert!(!matches(&SearchKey::Saved, &mut any, 10, 100));
        // RETURN (SAVE), alone or with others.
        let r = req("RETURN (SAVE MIN) ALL").expect("valid");
        assert_eq!(r.ret, Some(vec![ReturnOption::Save, ReturnOption::Min]));
        assert_eq!(
            saved_part(&[ReturnOption::Save, ReturnOption::Min], &[4, 7, 9]),
            vec![4]
        );
        assert_eq!(
            saved_part(
                &[ReturnOption::Save, ReturnOption::Min, ReturnOption::Max],
                &[4, 7, 9]
            ),
            vec![4, 9]
        );
        assert_eq!(
            saved_part(
                &[ReturnOption::Save, ReturnOption::Max, ReturnOption::Count],
                &[4, 7]
            ),
            vec![4, 7]
        );
        assert_eq!(saved_part(&[ReturnOption::Save], &[4, 7]), vec![4, 7]);
        assert!(saved_part(&[ReturnOption::Save, ReturnOption::Min], &[]).is_empty());
    }

    #[test]
    fn save_alone_answers_nothing_and_rev2_keys() {
        let mut out = Vec::new();
        write_results(
            b"t",
            false,
            Some(&[ReturnOption::Save][..]),
            &[1, 2],
            None,
            &mut out,
        );
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        write_results(
            b"t",
            true,
            Some(&[ReturnOption::Save, ReturnOption::Count][..]),
            &[1, 2],
            None,
            &mut out,
        );
        assert_eq!(out, b"* ESEARCH (TAG \"t\") UID COUNT 2\r\n");
        assert!(uses_recent(&key("NOT OR SEEN (NEW)")));
        assert!(uses_recent(&key("OLD")));
        assert!(!uses_recent(&key("UNSEEN $")));
    }

    const MAIL: &str = "Date: Tue, 1 Jul 2003 23:52:37 -0700\r\n\
        From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\r\n\
        To: Alice <alice@example.com>,\r\n Bob <bob@example.net>\r\n\
        Cc: carol@example.com\r\n\
        Subject: =?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n \
        =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=\r\n\
        X-Empty:\r\n\
        X-Mailer: Hato Test\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
        \r\n\
        --b1\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        Gr=C3=BC=C3=9Fe aus K=C3=B6ln, meet at noon.\r\n\
        --b1\r\n\
        Content-Type: text/html; charset=utf-8\r\n\
        Content-Transfer-Encoding: base64\r\n\
        \r\n\
        PGh0bWw+PGJvZHk+PHA+U2VjcmV0IDxiPnBhc3N3b3JkPC9iPiBpbnNpZGU8L3A+PC9ib2R5PjwvaHRtbD4=\r\n\
        --b1--\r\n";

    #[test]
    fn parses_simple_keys_and_arguments() {
        assert_eq!(key("ALL"), SearchKey::All);
        assert_eq!(key("unseen"), SearchKey::Unseen);
        assert_eq!(key("FROM joe"), SearchKey::From("joe".into()));
        assert_eq!(key("SUBJECT \"a b\""), SearchKey::Subject("a b".into()));
        assert_eq!(key("BODY {5}\r\nx y z"), SearchKey::Body("x y z".into()));
        assert_eq!(
            key("HEADER X-Mailer \"\""),
            SearchKey::Header("X-Mailer".into(), String::new())
        );
        assert_eq!(key("SINCE 1-Feb-1994"), SearchKey::Since(date(1994, 2, 1)));
        assert_eq!(
            key("BEFORE \"01-Feb-1994\""),
            SearchKey::Before(date(1994, 2, 1))
        );
        assert_eq!(key("LARGER 1024"), SearchKey::Larger(1024));
        assert_eq!(
            key("KEYWORD $Forwarded"),
            SearchKey::Keyword("$Forwarded".into())
        );
        assert_eq!(key("UID 1:*"), SearchKey::Uid(seq("1:*")));
        assert_eq!(key("2,4:*"), SearchKey::Sequence(seq("2,4:*")));
        assert_eq!(key("*"), SearchKey::Sequence(seq("*")));
        assert_eq!(
            key("UNSEEN FROM x"),
            SearchKey::And(vec![SearchKey::Unseen, SearchKey::From("x".into())])
        );
    }

    #[test]
    fn parses_nesting() {
        assert_eq!(
            key("OR (SEEN FLAGGED) NOT (DELETED)"),
            SearchKey::Or(
                Box::new(SearchKey::And(vec![SearchKey::Seen, SearchKey::Flagged])),
                Box::new(SearchKey::Not(Box::new(SearchKey::Deleted)))
            )
        );
        assert_eq!(
            key("NOT OR 1 UID 5 ((ALL))"),
            SearchKey::And(vec![
                SearchKey::Not(Box::new(SearchKey::Or(
                    Box::new(SearchKey::Sequence(seq("1"))),
                    Box::new(SearchKey::Uid(seq("5")))
                ))),
                SearchKey::All,
            ])
        );
    }

    #[test]
    fn return_and_charset() {
        let r = req("ALL").expect("valid");
        assert_eq!((r.charset, r.ret), (None, None));
        let r = req("RETURN () ALL").expect("valid");
        assert_eq!(r.ret, Some(vec![]));
        let r = req("RETURN (min MAX COUNT MIN) CHARSET utf-8 ALL").expect("valid");
        assert_eq!(
            r.ret,
            Some(vec![
                ReturnOption::Min,
                ReturnOption::Max,
                ReturnOption::Count
            ])
        );
        assert_eq!(r.charset.as_deref(), Some("UTF-8"));
        let r = req("CHARSET \"US-ASCII\" TEXT x").expect("valid");
        assert_eq!(r.charset.as_deref(), Some("US-ASCII"));
        assert_eq!(r.key, SearchKey::Text("x".into()));
        assert_eq!(
            req("CHARSET ISO-8859-1 TEXT x"),
            Err(SearchError::BadCharset("ISO-8859-1".into()))
        );
        let r = req("CHARSET UTF-8 SUBJECT {5}\r\nK\u{f6}ln").expect("literal utf-8");
        assert_eq!(r.key, SearchKey::Subject("K\u{f6}ln".into()));
    }

    #[test]
    fn syntax_errors() {
        let parse_err = |args: &str| match req(args) {
            Err(SearchError::Parse(e)) => e,
            other => panic!("{args:?} gave {other:?}"),
        };
        assert_eq!(parse_err(""), ParseError::MissingArgument);
        assert_eq!(parse_err("CHARSET UTF-8"), ParseError::MissingArgument);
        assert_eq!(parse_err("(SEEN"), ParseError::Unbalanced);
        assert_eq!(parse_err("SEEN)"), ParseError::Unbalanced);
        assert_eq!(parse_err("(SEEN))"), ParseError::Unbalanced);
        assert_eq!(parse_err("()"), ParseError::MissingArgument);
        assert_eq!(parse_err("FROM"), ParseError::MissingArgument);
        assert_eq!(parse_err("HEADER X-Foo"), ParseError::MissingArgument);
        assert_eq!(parse_err("OR SEEN"), ParseError::MissingArgument);
        assert_eq!(parse_err("NOT"), ParseError::MissingArgument);
        assert_eq!(parse_err("SINCE 31-Feb-2020"), ParseError::BadAtom);
        assert_eq!(parse_err("SINCE yesterday"), ParseError::BadAtom);
        assert_eq!(parse_err("LARGER big"), ParseError::BadAtom);
        assert_eq!(parse_err("UID 0"), ParseError::BadAtom);
        assert_eq!(parse_err("1:x"), ParseError::BadAtom);
        assert_eq!(parse_err("FROBNICATE"), ParseError::BadAtom);
        assert_eq!(parse_err("\"ALL\""), ParseError::BadAtom);
        assert_eq!(parse_err("FROM (x)"), ParseError::BadAtom);
        assert_eq!(parse_err("RETURN (PARTIAL 1:10) ALL"), ParseError::BadAtom);
        assert_eq!(parse_err("RETURN ALL"), ParseError::ExpectedList);
        assert_eq!(parse_err("RETURN (MIN"), ParseError::Unbalanced);
        assert_eq!(parse_err("SUBJECT \"x"), ParseError::UnterminatedQuoted);
        let deep = format!("{}ALL", "NOT ".repeat(MAX_DEPTH + 1));
        assert_eq!(parse_err(&deep), ParseError::TooManyArguments);
        let deep = format!("{}ALL{}", "(".repeat(500), ")".repeat(500));
        assert_eq!(parse_err(&deep), ParseError::TooManyArguments);
        assert!(req(&format!("{}ALL", "NOT ".repeat(MAX_DEPTH - 1))).is_ok());
    }

    #[test]
    fn flag_keys() {
        use flags::{ANSWERED, DELETED, DRAFT, FLAGGED, SEEN};
        let cases: [(&str, &str, u8); 5] = [
            ("ANSWERED", "UNANSWERED", ANSWERED),
            ("DELETED", "UNDELETED", DELETED),
            ("DRAFT", "UNDRAFT", DRAFT),
            ("FLAGGED", "UNFLAGGED", FLAGGED),
            ("SEEN", "UNSEEN", SEEN),
        ];
        for (set, unset, bit) in cases {
            assert!(hit(set, &mut with_flags(bit)), "{set}");
            assert!(!hit(unset, &mut with_flags(bit)), "{unset}");
            assert!(!hit(set, &mut with_flags(!bit & 0x1f)), "{set}");
            assert!(hit(unset, &mut with_flags(!bit & 0x1f)), "{unset}");
        }
        assert!(hit("ALL", &mut with_flags(0)));
    }

    #[test]
    fn recent_new_old() {
        let mut recent_unseen = Fake {
            recent: true,
            ..with_flags(0)
        };
        let mut recent_seen = Fake {
            recent: true,
            ..with_flags(flags::SEEN)
        };
        let mut old = with_flags(0);
        assert!(hit("RECENT", &mut recent_unseen));
        assert!(hit("NEW", &mut recent_unseen));
        assert!(!hit("NEW", &mut recent_seen));
        assert!(!hit("OLD", &mut recent_seen));
        assert!(hit("OLD", &mut old));
        assert!(!hit("NEW", &mut old));
        assert!(!hit("RECENT", &mut old));
    }

    #[test]
    fn keyword_keys() {
        let mut c = Fake {
            keywords: vec!["$Forwarded", "Work"],
            ..with_flags(0)
        };
        assert!(hit("KEYWORD $Forwarded", &mut c));
        assert!(hit("KEYWORD work", &mut c));
        assert!(!hit("KEYWORD $Junk", &mut c));
        assert!(hit("UNKEYWORD $Junk", &mut c));
        assert!(!hit("UNKEYWORD Work", &mut c));
        assert!(hit("OR KEYWORD $Junk NOT UNKEYWORD Work", &mut c));
    }

    #[test]
    fn size_and_internal_date_keys() {
        // 2003-07-02 06:52:37 UTC, which is 1 Jul 23:52:37 -0700.
        let mut c = Fake {
            size: 1000,
            internal_date: 1_057_128_757,
            ..with_flags(0)
        };
        assert!(hit("LARGER 999", &mut c));
        assert!(!hit("LARGER 1000", &mut c));
        assert!(hit("SMALLER 1001", &mut c));
        assert!(!hit("SMALLER 1000", &mut c));
        assert!(hit("ON 2-Jul-2003", &mut c));
        assert!(!hit("ON 1-Jul-2003", &mut c));
        assert!(hit("SINCE 2-Jul-2003", &mut c));
        assert!(hit("SINCE 1-Jul-2003", &mut c));
        assert!(!hit("SINCE 3-Jul-2003", &mut c));
        assert!(hit("BEFORE 3-Jul-2003", &mut c));
        assert!(!hit("BEFORE 2-Jul-2003", &mut c));
        assert_eq!(c.loads, 0, "no key here needs the content");
    }

    #[test]
    fn sequence_and_uid_keys() {
        let mut c = Fake {
            msn: 10,
            uid: 100,
            ..Fake::default()
        };
        assert!(hit("*", &mut c));
        assert!(hit("UID *", &mut c));
        assert!(hit("5:*", &mut c));
        assert!(hit("UID 500:*", &mut c), "n:* holds the largest UID");
        assert!(!hit("1:9", &mut c));
        assert!(!hit("UID 1:99", &mut c));
        let mut c = Fake {
            msn: 3,
            uid: 42,
            ..Fake::default()
        };
        assert!(hit("1,3,5", &mut c));
        assert!(hit("UID 40:45", &mut c));
        assert!(!hit("*", &mut c));
        assert!(!hit("UID *", &mut c));
    }

    #[test]
    fn header_keys_decode_encoded_words() {
        let mut c = with_content(MAIL);
        assert!(hit("FROM \"j\u{f6}rg m\u{fc}ller\"", &mut c));
        assert!(hit("FROM JOERG@EXAMPLE", &mut c));
        assert!(!hit("FROM alice", &mut c));
        assert!(hit("TO bob@example.net", &mut c), "folded To");
        assert!(hit("CC carol", &mut c));
        assert!(!hit("BCC carol", &mut c));
        assert!(
            hit("SUBJECT \"you can read this you understand\"", &mut c),
            "encoded words joined"
        );
        assert!(hit("HEADER x-mailer \"hato\"", &mut c));
        assert!(hit("HEADER X-Mailer \"\"", &mut c));
        assert!(hit("HEADER X-Empty \"\"", &mut c));
        assert!(!hit("HEADER X-Missing \"\"", &mut c));
        assert!(!hit("HEADER X-Mailer other", &mut c));
        assert!(!hit("SUBJECT meet", &mut c), "body text is not the subject");
    }

    #[test]
    fn body_and_text_keys_use_decoded_parts() {
        let mut c = with_content(MAIL);
        assert!(
            hit("BODY \"gr\u{fc}\u{df}e aus k\u{f6}ln\"", &mut c),
            "quoted-printable"
        );
        assert!(
            hit("BODY \"secret password\"", &mut c),
            "base64 HTML as text"
        );
        assert!(!hit("BODY \"<b>\"", &mut c), "HTML markup is not text");
        assert!(!hit("BODY joerg", &mut c), "headers are not the body");
        assert!(hit("TEXT joerg", &mut c));
        assert!(hit("TEXT \"x-mailer: hato\"", &mut c));
        assert!(hit("TEXT noon", &mut c));
        assert!(!hit("TEXT nowhere", &mut c));
        assert!(hit("BODY \"\"", &mut c));
    }

    #[test]
    fn nested_messages_are_searched() {
        let raw = "From: a@example.com\r\n\
            Subject: outer\r\n\
            Content-Type: multipart/mixed; boundary=\"x\"\r\n\
            \r\n\
            --x\r\n\
            Content-Type: text/plain\r\n\
            \r\n\
            see attached\r\n\
            --x\r\n\
            Content-Type: message/rfc822\r\n\
            \r\n\
            From: inner@example.com\r\n\
            Subject: =?utf-8?q?inner_subj=C3=A9ct?=\r\n\
            \r\n\
            the inner body\r\n\
            --x--\r\n";
        let mut c = with_content(raw);
        assert!(hit("BODY \"inner body\"", &mut c));
        assert!(hit("BODY \"inner subj\u{e9}ct\"", &mut c));
        assert!(hit("TEXT \"see attached\"", &mut c));
        assert!(!hit("SUBJECT inner", &mut c), "top-level headers only");
        assert!(!hit("FROM inner", &mut c));
    }

    #[test]
    fn sent_date_keys() {
        let mut c = with_content(MAIL);
        // The header's own day (1 Jul), not the UTC day (2 Jul).
        assert!(hit("SENTON 1-Jul-2003", &mut c));
        assert!(!hit("SENTON 2-Jul-2003", &mut c));
        assert!(hit("SENTSINCE 1-Jul-2003", &mut c));
        assert!(!hit("SENTSINCE 2-Jul-2003", &mut c));
        assert!(hit("SENTBEFORE 2-Jul-2003", &mut c));
        assert!(!hit("SENTBEFORE 1-Jul-2003", &mut c));
        let mut undated = with_content("Subject: x\r\n\r\nbody\r\n");
        assert!(!hit("SENTSINCE 1-Jan-1970", &mut undated));
        assert!(!hit("SENTBEFORE 1-Jan-2100", &mut undated));
    }

    #[test]
    fn content_loaded_once_and_only_when_needed() {
        let mut c = Fake {
            content: Some(MAIL.as_bytes().to_vec()),
            ..with_flags(flags::SEEN)
        };
        assert!(!hit("BODY noon UNSEEN", &mut c));
        assert!(hit("OR BODY nothing SEEN", &mut c));
        assert!(hit("NOT (FROM x UNSEEN)", &mut c));
        assert_eq!(c.loads, 0);
        assert!(hit(
            "FROM joerg SUBJECT example BODY noon TEXT hato SENTON 1-Jul-2003",
            &mut c
        ));
        assert_eq!(c.loads, 1);
        assert!(!needs_content(&key("OR SEEN NOT (UID 1 LARGER 5)")));
        assert!(needs_content(&key("OR SEEN NOT (UID 1 HEADER a b)")));
    }

    #[test]
    fn unreadable_content_matches_no_text_key() {
        let mut c = with_flags(0);
        assert!(!hit("BODY x", &mut c));
        assert!(!hit("HEADER Subject \"\"", &mut c));
        assert!(!hit("SENTBEFORE 1-Jan-2100", &mut c));
        assert!(hit("NOT TEXT x", &mut c));
    }

    #[test]
    fn headerless_content_is_body() {
        let mut c = with_content("\r\njust a body line\r\n");
        assert!(hit("BODY \"just a body\"", &mut c));
        assert!(!hit("HEADER Subject \"\"", &mut c));
    }

    #[test]
    fn nested_boolean_logic() {
        let mut c = Fake {
            msn: 4,
            uid: 40,
            size: 50,
            ..with_flags(flags::FLAGGED)
        };
        assert!(hit("OR SEEN FLAGGED", &mut c));
        assert!(!hit("OR SEEN DELETED", &mut c));
        assert!(hit("NOT NOT FLAGGED", &mut c));
        assert!(hit("(FLAGGED (UNSEEN (4)))", &mut c));
        assert!(!hit("(FLAGGED (UNSEEN (5)))", &mut c));
        assert!(hit("OR (SEEN DELETED) (FLAGGED SMALLER 51)", &mut c));
        assert!(hit("NOT OR SEEN OR DELETED LARGER 50", &mut c));
        assert!(!hit("NOT OR SEEN OR DELETED LARGER 49", &mut c));
        assert!(hit("UID 1:40 NOT UID 1:39 4", &mut c));
    }

    fn results(uid: bool, ret: Option<&[ReturnOption]>, matches: &[u32]) -> String {
        let mut out = Vec::new();
        write_results(b"a1", uid, ret, matches, None, &mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn classic_results() {
        assert_eq!(results(false, None, &[2, 5, 9]), "* SEARCH 2 5 9\r\n");
        assert_eq!(results(true, None, &[]), "* SEARCH\r\n");
    }

    #[test]
    fn esearch_results() {
        use ReturnOption::{All, Count, Max, Min};
        assert_eq!(
            results(true, Some(&[Min, Max, Count, All]), &[2, 5, 9]),
            "* ESEARCH (TAG \"a1\") UID MIN 2 MAX 9 COUNT 3 ALL 2,5,9\r\n"
        );
        assert_eq!(
            results(false, Some(&[All, Min]), &[1, 2, 3, 7, 9, 10]),
            "* ESEARCH (TAG \"a1\") MIN 1 ALL 1:3,7,9:10\r\n"
        );
        assert_eq!(
            results(false, Some(&[]), &[4, 5]),
            "* ESEARCH (TAG \"a1\") ALL 4:5\r\n"
        );
        assert_eq!(
            results(true, Some(&[Min, Max, Count, All]), &[]),
            "* ESEARCH (TAG \"a1\") UID COUNT 0\r\n"
        );
        assert_eq!(
            results(false, Some(&[Min, Max]), &[]),
            "* ESEARCH (TAG \"a1\")\r\n"
        );
        assert_eq!(
            results(false, Some(&[Count]), &[3, 1]),
            "* ESEARCH (TAG \"a1\") COUNT 2\r\n"
        );
        assert_eq!(
            results(false, Some(&[All]), &[9, 1, 2]),
            "* ESEARCH (TAG \"a1\") ALL 1:2,9\r\n"
        );
    }

    #[test]
    fn modseq_criterion() {
        assert_eq!(key("MODSEQ 20"), SearchKey::ModSeq(20));
        assert_eq!(key("MODSEQ 0"), SearchKey::ModSeq(0));
        assert_eq!(
            key("MODSEQ \"/flags/\\\\draft\" all 620162338 SEEN"),
            SearchKey::And(vec![SearchKey::ModSeq(620162338), SearchKey::Seen])
        );
        for bad in [
            "MODSEQ",
            "MODSEQ x",
            "MODSEQ 9223372036854775808",
            "MODSEQ \"/flags/\\\\seen\" mine 5",
            "MODSEQ \"/other/x\" all 5",
            "MODSEQ \"/flags/\\\\seen\" all",
        ] {
            assert!(req(bad).is_err(), "{bad}");
        }
        assert!(uses_modseq(&key("OR SEEN NOT MODSEQ 4")));
        assert!(!uses_modseq(&key("OR SEEN DELETED")));
        let mut m = Fake {
            modseq: 7,
            ..Fake::default()
        };
        assert!(matches(&key("MODSEQ 7"), &mut m, 1, 1));
        assert!(!matches(&key("MODSEQ 8"), &mut m, 1, 1));
    }

    #[test]
    fn results_carry_the_highest_modseq() {
        let write = |ret: Option<&[ReturnOption]>, ids: &[u32], modseqs: &[u64]| {
            let mut out = Vec::new();
            write_results(b"t", false, ret, ids, Some(modseqs), &mut out);
            String::from_utf8(out).expect("ascii")
        };
        assert_eq!(
            write(None, &[2, 5, 6], &[10, 40, 20]),
            "* SEARCH 2 5 6 (MODSEQ 40)\r\n"
        );
        assert_eq!(write(None, &[], &[]), "* SEARCH\r\n");
        assert_eq!(
            write(Some(&[]), &[2, 5, 6], &[10, 40, 20]),
            "* ESEARCH (TAG \"t\") ALL 2,5:6 MODSEQ 40\r\n"
        );
        // MIN and MAX return messages 2 and 6: the highest of their two.
        assert_eq!(
            write(
                Some(&[ReturnOption::Min, ReturnOption::Max]),
                &[2, 5, 6],
                &[10, 40, 20]
            ),
            "* ESEARCH (TAG \"t\") MIN 2 MAX 6 MODSEQ 20\r\n"
        );
        assert_eq!(
            write(Some(&[ReturnOption::Count]), &[2, 5], &[10, 40]),
            "* ESEARCH (TAG \"t\") COUNT 2 MODSEQ 40\r\n"
        );
        assert_eq!(
            write(Some(&[ReturnOption::Count]), &[], &[]),
            "* ESEARCH (TAG \"t\") COUNT 0\r\n"
        );
    }
}
