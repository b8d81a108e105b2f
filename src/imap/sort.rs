//! SORT (RFC 5256 §3) and SORT=DISPLAY (RFC 5957): the sort criteria, what sorting and
//! threading read from a message's header, the sort keys derived from it, and their order.
//!
//! Header reading reuses the parsers the rest of the server already uses: mail-parser (as
//! SEARCH uses it) for the unstructured fields and their RFC 2047 decoding, and the FETCH
//! ENVELOPE code for addresses, so that "the first From address" means exactly what ENVELOPE
//! reports (groups, obsolete routes and broken syntax included).
//!
//! Strings compare with i;ascii-casemap (ASCII letters upper-cased, then octet order), as RFC
//! 5256 requires; messages equal on every criterion stay in sequence-number order.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::base_subject::{self, BaseSubject};
use super::datetime::parse_rfc5322_date;
use super::fetch::write_envelope;
use super::parser::{Args, ParseError, Token, parse_command};
use super::search::{PARSER, decode_header_value, raw_value};

/// One SORT key (RFC 5256 §3, RFC 5957 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// A key and whether `REVERSE` preceded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Criterion {
    pub key: SortKey,
    pub reverse: bool,
}

/// Parses the parenthesised sort criteria: `(REVERSE DATE SUBJECT)`.
pub fn parse_criteria(args: &mut Args<'_>) -> Result<Vec<Criterion>, ParseError> {
    match args.token()? {
        Some(Token::ListOpen) => {}
        None => return Err(ParseError::MissingArgument),
        Some(_) => return Err(ParseError::ExpectedList),
    }
    let mut criteria = Vec::new();
    let mut reverse = false;
    loop {
        let atom = match args.token()? {
            Some(Token::ListClose) => break,
            Some(Token::Atom(a)) => a,
            None => return Err(ParseError::Unbalanced),
            Some(_) => return Err(ParseError::BadAtom),
        };
        let key = match atom.to_ascii_uppercase().as_slice() {
            b"REVERSE" if !reverse => {
                reverse = true;
                continue;
            }
            b"ARRIVAL" => SortKey::Arrival,
            b"CC" => SortKey::Cc,
            b"DATE" => SortKey::Date,
            b"FROM" => SortKey::From,
            b"SIZE" => SortKey::Size,
            b"SUBJECT" => SortKey::Subject,
            b"TO" => SortKey::To,
            b"DISPLAYFROM" => SortKey::DisplayFrom,
            b"DISPLAYTO" => SortKey::DisplayTo,
            _ => return Err(ParseError::BadAtom),
        };
        criteria.push(Criterion { key, reverse });
        reverse = false;
    }
    // `REVERSE` must be followed by a key, and the list must not be empty.
    if reverse || criteria.is_empty() {
        return Err(ParseError::BadAtom);
    }
    Ok(criteria)
}

/// Which parts of the header a command needs, so that nothing else is parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub subject: bool,
    pub date: bool,
    pub addresses: bool,
    pub threading: bool,
}

impl Needs {
    /// What sorting by `criteria` needs.
    pub fn for_criteria(criteria: &[Criterion]) -> Needs {
        let mut needs = Needs::default();
        for c in criteria {
            match c.key {
                SortKey::Subject => needs.subject = true,
                SortKey::Date => needs.date = true,
                SortKey::From
                | SortKey::To
                | SortKey::Cc
                | SortKey::DisplayFrom
                | SortKey::DisplayTo => needs.addresses = true,
                SortKey::Arrival | SortKey::Size => {}
            }
        }
        needs
    }

    /// What threading needs: subjects, dates and the message ID fields.
    pub fn for_threading() -> Needs {
        Needs {
            subject: true,
            date: true,
            addresses: false,
            threading: true,
        }
    }

    fn any(self) -> bool {
        self.subject || self.date || self.addresses || self.threading
    }
}

/// The first address of an address header, as ENVELOPE shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirstAddress {
    /// The display name, RFC 2047 decoded (empty when there is none).
    pub name: String,
    pub mailbox: String,
    pub domain: Option<String>,
}

impl FirstAddress {
    /// RFC 5957: the display name, or the addr-spec when there is no (non-empty) name.
    fn display(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        match &self.domain {
            Some(domain) => format!("{}@{}", self.mailbox, domain),
            None => self.mailbox.clone(),
        }
    }
}

/// What SORT and THREAD read from one message's header; absent fields are `None`/empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderFacts {
    /// The first Subject, RFC 2047 decoded, unfolded.
    pub subject: Option<String>,
    /// The first Date header's time in Unix seconds, when it parses.
    pub sent: Option<i64>,
    pub from: Option<FirstAddress>,
    pub to: Option<FirstAddress>,
    pub cc: Option<FirstAddress>,
    pub message_id: Option<String>,
    /// The valid message IDs of the first References header, in order.
    pub references: Vec<String>,
    /// The first valid message ID of the first In-Reply-To header.
    pub in_reply_to: Option<String>,
}

impl HeaderFacts {
    /// Reads what `needs` asks for from `header` (the message's header block; the body may
    /// follow, it is ignored).
    pub fn parse(header: &[u8], needs: Needs) -> HeaderFacts {
        let mut facts = HeaderFacts::default();
        if !needs.any() {
            return facts;
        }
        if (needs.subject || needs.date || needs.threading)
            && let Some(message) = PARSER.parse_headers(header)
        {
            // The first field of each name, as Dovecot's sorting and threading read them.
            let first = |name: &str| {
                message
                    .headers()
                    .iter()
                    .find(|h| h.name().eq_ignore_ascii_case(name))
                    .and_then(|h| raw_value(&message, h))
            };
            if needs.subject {
                facts.subject = first("Subject").map(|v| decode_header_value(v).into_owned());
            }
            if needs.date {
                facts.sent = first("Date")
                    .and_then(parse_rfc5322_date)
                    .map(|d| d.timestamp());
            }
            if needs.threading {
                facts.message_id = first("Message-ID").and_then(|v| message_ids(v).next());
                facts.references = first("References")
                    .map(|v| message_ids(v).collect())
                    .unwrap_or_default();
                facts.in_reply_to = first("In-Reply-To").and_then(|v| message_ids(v).next());
            }
        }
        if needs.addresses {
            let [from, to, cc] = first_addresses(header);
            facts.from = from;
            facts.to = to;
            facts.cc = cc;
        }
        facts
    }

    /// The base subject (of an empty subject when there is none).
    pub fn base_subject(&self) -> BaseSubject {
        base_subject::extract(self.subject.as_deref().unwrap_or(""))
    }

    /// The sent date (RFC 5256 §2.2): the Date header, else the internal date.
    pub fn sent_or(&self, internal_date: i64) -> i64 {
        self.sent.unwrap_or(internal_date)
    }
}

/// The message IDs (`<...>`, without the brackets) in a header value, in order. An ID must
/// hold an `@`; text outside brackets (comments, phrases of old mailers) is skipped.
pub fn message_ids(value: &[u8]) -> impl Iterator<Item = String> + '_ {
    let mut rest = value;
    std::iter::from_fn(move || {
        loop {
            let open = memchr::memchr(b'<', rest)?;
            let after = &rest[open + 1..];
            let Some(close) = memchr::memchr(b'>', after) else {
                rest = &[];
                return None;
            };
            let inside = &after[..close];
            rest = &after[close + 1..];
            // Folding inside an ID is not part of it.
            let id: Vec<u8> = inside
                .iter()
                .copied()
                .filter(|&b| !matches!(b, b'\r' | b'\n'))
                .collect();
            // An ID broken by a second `<` restarts at that one.
            if let Some(inner) = memchr::memrchr(b'<', &id) {
                let tail = &id[inner + 1..];
                if memchr::memchr(b'@', tail).is_some() {
                    return Some(String::from_utf8_lossy(tail).into_owned());
                }
                continue;
            }
            if !id.is_empty() && memchr::memchr(b'@', &id).is_some() {
                return Some(String::from_utf8_lossy(&id).into_owned());
            }
        }
    })
}

/// A value read back from an ENVELOPE.
enum Value<'a> {
    Nil,
    Str(Cow<'a, [u8]>),
    List(Vec<Value<'a>>),
}

/// Reads one value; ENVELOPE nests three levels deep, so `depth` never grows beyond that for
/// what [`write_envelope`] produces, and anything deeper is refused rather than followed.
fn read_value<'a>(args: &mut Args<'a>, depth: usize) -> Option<Value<'a>> {
    match args.token().ok()?? {
        Token::ListOpen if depth < 4 => {
            let mut items = Vec::new();
            loop {
                if matches!(args.clone().token().ok()?, Some(Token::ListClose)) {
                    args.token().ok()?;
                    return Some(Value::List(items));
                }
                items.push(read_value(args, depth + 1)?);
            }
        }
        Token::Atom(a) if a.eq_ignore_ascii_case(b"NIL") => Some(Value::Nil),
        Token::Atom(a) => Some(Value::Str(Cow::Borrowed(a))),
        Token::String(s) => Some(Value::Str(s)),
        _ => None,
    }
}

fn text(v: &Value<'_>) -> Option<String> {
    match v {
        Value::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
        _ => None,
    }
}

/// The first From, To and Cc addresses, taken from the header's ENVELOPE.
fn first_addresses(header: &[u8]) -> [Option<FirstAddress>; 3] {
    let mut frame = b"e X ".to_vec();
    write_envelope(header, &mut frame);
    frame.extend_from_slice(b"\r\n");
    let Ok(command) = parse_command(&frame) else {
        return [None, None, None];
    };
    let mut args = command.args;
    let Some(Value::List(fields)) = read_value(&mut args, 0) else {
        return [None, None, None];
    };
    // (date subject from sender reply-to to cc bcc in-reply-to message-id)
    [2, 5, 6].map(|i| {
        let Some(Value::List(list)) = fields.get(i) else {
            return None;
        };
        let Some(Value::List(parts)) = list.first() else {
            return None;
        };
        let name = parts
            .first()
            .and_then(text)
            .map(|n| decode_header_value(n.as_bytes()).into_owned())
            .unwrap_or_default();
        Some(FirstAddress {
            name,
            mailbox: parts.get(2).and_then(text).unwrap_or_default(),
            domain: parts.get(3).and_then(text),
        })
    })
}

/// One message to sort.
#[derive(Debug, Clone)]
pub struct SortItem {
    /// Message sequence number: the final tie breaker.
    pub msn: u32,
    /// What the answer names the message by (the MSN, or the UID for UID SORT).
    pub id: u32,
    pub internal_date: i64,
    /// RFC822.SIZE.
    pub size: u64,
    pub header: HeaderFacts,
}

/// A computed sort key value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum KeyValue {
    Number(i64),
    Text(String),
}

/// i;ascii-casemap: ASCII letters upper-cased; everything else compares as octets.
fn casemap(s: &str) -> String {
    s.to_ascii_uppercase()
}

fn key_value(item: &SortItem, key: SortKey) -> KeyValue {
    let address = |a: &Option<FirstAddress>| {
        KeyValue::Text(a.as_ref().map(|a| casemap(&a.mailbox)).unwrap_or_default())
    };
    let display = |a: &Option<FirstAddress>| {
        KeyValue::Text(
            a.as_ref()
                .map(|a| casemap(&a.display()))
                .unwrap_or_default(),
        )
    };
    match key {
        SortKey::Arrival => KeyValue::Number(item.internal_date),
        SortKey::Date => KeyValue::Number(item.header.sent_or(item.internal_date)),
        SortKey::Size => KeyValue::Number(i64::try_from(item.size).unwrap_or(i64::MAX)),
        SortKey::Subject => KeyValue::Text(item.header.base_subject().key),
        SortKey::From => address(&item.header.from),
        SortKey::To => address(&item.header.to),
        SortKey::Cc => address(&item.header.cc),
        SortKey::DisplayFrom => display(&item.header.from),
        SortKey::DisplayTo => display(&item.header.to),
    }
}

/// Sorts `items` by `criteria` and returns their ids in that order.
pub fn sort(items: Vec<SortItem>, criteria: &[Criterion]) -> Vec<u32> {
    let mut keyed: Vec<(Vec<KeyValue>, u32, u32)> = items
        .iter()
        .map(|item| {
            let keys = criteria.iter().map(|c| key_value(item, c.key)).collect();
            (keys, item.msn, item.id)
        })
        .collect();
    keyed.sort_by(|a, b| {
        for (i, c) in criteria.iter().enumerate() {
            let order = a.0[i].cmp(&b.0[i]);
            let order = if c.reverse { order.reverse() } else { order };
            if order != Ordering::Equal {
                return order;
            }
        }
        a.1.cmp(&b.1)
    });
    keyed.into_iter().map(|(_, _, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criteria(s: &str) -> Result<Vec<Criterion>, ParseError> {
        let frame = format!("t SORT {s} UTF-8 ALL\r\n");
        let mut args = parse_command(frame.as_bytes()).expect("frame").args;
        parse_criteria(&mut args)
    }

    #[test]
    fn parses_criteria() {
        let c = criteria("(REVERSE date subject displayFROM)").expect("valid");
        assert_eq!(
            c,
            vec![
                Criterion {
                    key: SortKey::Date,
                    reverse: true
                },
                Criterion {
                    key: SortKey::Subject,
                    reverse: false
                },
                Criterion {
                    key: SortKey::DisplayFrom,
                    reverse: false
                },
            ]
        );
        assert_eq!(criteria("()"), Err(ParseError::BadAtom));
        assert_eq!(criteria("(REVERSE)"), Err(ParseError::BadAtom));
        assert_eq!(criteria("(REVERSE REVERSE DATE)"), Err(ParseError::BadAtom));
        assert_eq!(criteria("(COLOUR)"), Err(ParseError::BadAtom));
        assert_eq!(criteria("DATE"), Err(ParseError::ExpectedList));
        assert_eq!(criteria("(DATE"), Err(ParseError::BadAtom));
    }

    fn item(msn: u32, header: &str, internal_date: i64, size: u64) -> SortItem {
        let needs = Needs {
            subject: true,
            date: true,
            addresses: true,
            threading: true,
        };
        SortItem {
            msn,
            id: msn * 10,
            internal_date,
            size,
            header: HeaderFacts::parse(header.as_bytes(), needs),
        }
    }

    fn by(items: &[SortItem], c: &str) -> Vec<u32> {
        sort(items.to_vec(), &criteria(c).expect("criteria"))
    }

    #[test]
    fn reads_header_facts() {
        let h = HeaderFacts::parse(
            b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\tworld\r\n\
From: =?utf-8?q?J=C3=B6rg?= <Joerg@Example.COM>, b@c\r\n\
To: Group: x@y, z@w;\r\nCc: <cc@d>\r\n\
Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
Message-ID: <m1@x>\r\nReferences: <a@x> junk <b@x>\r\n <c@x>\r\n\
In-Reply-To: <c@x> (comment) <d@x>\r\n\r\nbody <e@x>\r\n",
            Needs {
                subject: true,
                date: true,
                addresses: true,
                threading: true,
            },
        );
        assert_eq!(h.subject.as_deref(), Some("Grüße world"));
        assert_eq!(h.sent, Some(1_057_049_557));
        let from = h.from.expect("from");
        assert_eq!(
            (from.name.as_str(), from.mailbox.as_str()),
            ("Jörg", "Joerg")
        );
        assert_eq!(h.to.expect("to").mailbox, "Group");
        assert_eq!(h.cc.expect("cc").mailbox, "cc");
        assert_eq!(h.message_id.as_deref(), Some("m1@x"));
        assert_eq!(h.references, vec!["a@x", "b@x", "c@x"]);
        assert_eq!(h.in_reply_to.as_deref(), Some("c@x"));
        let none = HeaderFacts::parse(b"X-Other: 1\r\n\r\n", Needs::for_threading());
        assert_eq!(none, HeaderFacts::default());
    }

    #[test]
    fn message_id_edge_cases() {
        let ids: Vec<String> = message_ids(b"<no-at> <a@b> <<c@d> <e@f").collect();
        assert_eq!(ids, vec!["a@b", "c@d"]);
        assert_eq!(message_ids(b"").count(), 0);
    }

    #[test]
    fn sorts_with_ties_and_reverse() {
        let items = vec![
            item(1, "Subject: b\r\nFrom: x@a\r\n\r\n", 300, 10),
            item(2, "Subject: Re: A\r\nFrom: Y@a\r\n\r\n", 100, 30),
            item(3, "Subject: a\r\nFrom: y@b\r\n\r\n", 100, 20),
            item(4, "From: \"Zed\" <a@a>\r\n\r\n", 200, 20),
        ];
        assert_eq!(by(&items, "(ARRIVAL)"), vec![20, 30, 40, 10]);
        // REVERSE turns the key around, but ties stay in sequence order.
        assert_eq!(by(&items, "(REVERSE ARRIVAL)"), vec![10, 40, 20, 30]);
        assert_eq!(by(&items, "(SIZE)"), vec![10, 30, 40, 20]);
        assert_eq!(by(&items, "(REVERSE SIZE)"), vec![20, 30, 40, 10]);
        // No subject sorts as empty, first.
        assert_eq!(by(&items, "(SUBJECT)"), vec![40, 20, 30, 10]);
        assert_eq!(
            by(&items, "(SUBJECT REVERSE ARRIVAL)"),
            vec![40, 20, 30, 10]
        );
        assert_eq!(by(&items, "(SUBJECT SIZE)"), vec![40, 30, 20, 10]);
        // The mailbox part, case-insensitively; then by sequence.
        assert_eq!(by(&items, "(FROM)"), vec![40, 10, 20, 30]);
        assert_eq!(by(&items, "(DISPLAYFROM)"), vec![10, 20, 30, 40]);
        // No Date header: the internal date.
        assert_eq!(by(&items, "(DATE)"), vec![20, 30, 40, 10]);
        assert_eq!(by(&items, "(TO)"), vec![10, 20, 30, 40]);
    }

    #[test]
    fn date_prefers_the_header() {
        let items = vec![
            item(1, "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n", 50, 1),
            item(2, "Date: garbage\r\n\r\n", 1_800_000_000, 1),
            item(3, "Date: Sun, 31 Dec 2023 23:00:00 -0200\r\n\r\n", 0, 1),
        ];
        assert_eq!(by(&items, "(DATE)"), vec![10, 30, 20]);
        assert_eq!(by(&items, "(REVERSE DATE)"), vec![20, 30, 10]);
    }
}
