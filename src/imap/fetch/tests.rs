//! Unit tests for FETCH item parsing, item names and section contents.

use super::*;
use crate::imap::parser::parse_command;

fn parse(items: &str) -> Result<Vec<FetchAttr>, ParseError> {
    let line = format!("a FETCH 1 {items}\r\n");
    let cmd = parse_command(line.as_bytes()).expect("command");
    let mut args = cmd.args;
    args.atom().expect("sequence set");
    let attrs = parse_attrs(&mut args)?;
    args.finish()?;
    Ok(attrs)
}

fn name(attr: &FetchAttr) -> String {
    let mut out = Vec::new();
    write_item_name(attr, &mut out);
    String::from_utf8(out).expect("ascii")
}

#[test]
fn macros() {
    assert_eq!(
        parse("all").unwrap(),
        vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
            FetchAttr::Envelope
        ]
    );
    assert_eq!(parse("FAST").unwrap().len(), 3);
    assert_eq!(parse("Full").unwrap().last(), Some(&FetchAttr::Body));
    assert!(parse("(ALL)").is_err());
}

#[test]
fn single_and_lists() {
    assert_eq!(parse("uid").unwrap(), vec![FetchAttr::Uid]);
    assert_eq!(
        parse("(FLAGS rfc822.size BODYSTRUCTURE RFC822 RFC822.HEADER RFC822.TEXT INTERNALDATE)")
            .unwrap(),
        vec![
            FetchAttr::Flags,
            FetchAttr::Rfc822Size,
            FetchAttr::BodyStructure,
            FetchAttr::Rfc822,
            FetchAttr::Rfc822Header,
            FetchAttr::Rfc822Text,
            FetchAttr::InternalDate
        ]
    );
}

#[test]
fn body_peek_header_fields_partial() {
    let attrs = parse("(UID BODY.PEEK[HEADER.FIELDS (From \"X-Spam Flag\")]<0.100>)").unwrap();
    assert_eq!(
        attrs[1],
        FetchAttr::BodySection {
            peek: true,
            section: Section {
                part: vec![],
                text: Some(SectionText::HeaderFields {
                    not: false,
                    fields: vec!["From".into(), "X-Spam Flag".into()]
                })
            },
            partial: Some((0, 100)),
        }
    );
    assert_eq!(
        name(&attrs[1]),
        "BODY[HEADER.FIELDS (FROM \"X-SPAM FLAG\")]<0>"
    );
    assert!(!sets_seen(&attrs));
}

#[test]
fn sections() {
    let attrs = parse(
        "(body[] BODY[1.2.mime] body[2.HEADER] BODY[2.text] BODY[1.2] BODY[HEADER.FIELDS.NOT (Received)] BINARY.PEEK[1]<5.10> BINARY.SIZE[2] binary[])",
    )
    .unwrap();
    let names: Vec<String> = attrs.iter().map(name).collect();
    assert_eq!(
        names,
        vec![
            "BODY[]",
            "BODY[1.2.MIME]",
            "BODY[2.HEADER]",
            "BODY[2.TEXT]",
            "BODY[1.2]",
            "BODY[HEADER.FIELDS.NOT (RECEIVED)]",
            "BINARY[1]<5>",
            "BINARY.SIZE[2]",
            "BINARY[]",
        ]
    );
    assert!(sets_seen(&attrs));
    assert!(sets_seen(&[FetchAttr::Rfc822Text]));
    assert!(!sets_seen(&[FetchAttr::Rfc822Header, FetchAttr::Body]));
    assert!(sets_seen(&[FetchAttr::Binary {
        peek: false,
        part: vec![1],
        partial: None
    }]));
}

#[test]
fn bad_input() {
    for bad in [
        "",
        "()",
        "(FLAGS",
        "XYZZY",
        "BODY[",
        "BODY[0]",
        "BODY[01]",
        "BODY[1.]",
        "BODY[MIME]",
        "BODY[HEADER.FIELDS]",
        "BODY[HEADER.FIELDS ()]",
        "BODY[HEADER.FIELDS (A]",
        "BODY[HEADER.X]",
        "BODY[TEXT (A)]",
        "BODY[]<",
        "BODY[]<1.2",
        "BODY[]<x>",
        "BODY[]<99999999999>",
        "BODY[]junk",
        "BINARY[HEADER]",
        "BINARY.SIZE[1]<0.1>",
        "\"FLAGS\"",
        "(FLAGS \"UID\")",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn sizes() {
    assert_eq!(rfc822_size(b"a\nb\r\n"), 6);
    assert_eq!(
        rfc822_size(MULTI),
        section_bytes(MULTI, &Section::default()).unwrap().len()
    );
}

#[test]
fn partial_ranges() {
    assert_eq!(apply_partial(b"0123456789", Some((2, 3))), b"234");
    assert_eq!(apply_partial(b"0123456789", Some((8, 10))), b"89");
    assert_eq!(apply_partial(b"0123456789", Some((10, 1))), b"");
    assert_eq!(
        apply_partial(b"0123456789", Some((3, u32::MAX))),
        b"3456789"
    );
    assert_eq!(apply_partial(b"01", None), b"01");
}

const MULTI: &[u8] = b"From: a@b\r\nSubject: test\r\n\tfolded\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\nReceived: x\r\n\r\n\
preamble\r\n--outer\r\nContent-Type: text/plain\r\n\r\nfirst\nline\r\n\
--outer\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: c@d\r\n\r\ninner body\r\n\
--outer--\r\n";

fn sec(s: &str) -> Option<Vec<u8>> {
    let attr = parse(&format!("BODY[{s}]")).expect("section parses");
    let section = attr[0].section().expect("a section");
    section_bytes(MULTI, &section).map(|c| c.into_owned())
}

#[test]
fn section_contents() {
    let mut crlf = MULTI.to_vec();
    crlf.splice(170..170, [b'\r']);
    assert_eq!(sec("").unwrap(), crlf);
    assert_eq!(
        sec("HEADER.FIELDS (subject FROM)").unwrap(),
        b"From: a@b\r\nSubject: test\r\n\tfolded\r\n\r\n"
    );
    assert_eq!(
        sec("HEADER.FIELDS.NOT (Subject Content-Type MIME-Version)").unwrap(),
        b"From: a@b\r\nReceived: x\r\n\r\n"
    );
    assert_eq!(sec("1").unwrap(), b"first\r\nline");
    assert_eq!(sec("1.MIME").unwrap(), b"Content-Type: text/plain\r\n\r\n");
    assert_eq!(
        sec("2.HEADER").unwrap(),
        b"Subject: inner\r\nFrom: c@d\r\n\r\n"
    );
    assert_eq!(sec("2.TEXT").unwrap(), b"inner body");
    assert_eq!(sec("2.1").unwrap(), b"inner body");
    assert_eq!(sec("2.HEADER.FIELDS (FROM)").unwrap(), b"From: c@d\r\n\r\n");
    assert!(sec("1.HEADER").is_none());
    assert!(sec("3").is_none());
    assert_eq!(sec("1.1"), sec("1"));
    assert!(sec("TEXT").unwrap().starts_with(b"preamble\r\n--outer\r\n"));
}

#[test]
fn header_fields_without_end_of_header() {
    let raw = b"From: a@b\r\nTo: c@d\r\n";
    let fields = |not| Section {
        part: vec![],
        text: Some(SectionText::HeaderFields {
            not,
            fields: vec!["to".into()],
        }),
    };
    assert_eq!(
        section_bytes(raw, &fields(false)).unwrap().as_ref(),
        b"To: c@d\r\n\r\n"
    );
    assert_eq!(
        section_bytes(raw, &fields(true)).unwrap().as_ref(),
        b"From: a@b\r\n"
    );
}

#[test]
fn binary_decoding() {
    let raw = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n\
--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n";
    assert_eq!(
        binary_bytes(raw, &[1]).unwrap().unwrap().as_ref(),
        b"caf\xc3\xa9"
    );
    assert_eq!(
        binary_bytes(raw, &[2]).unwrap().unwrap().as_ref(),
        b"\0\x01\x02"
    );
    assert_eq!(binary_bytes(raw, &[3]), Err(FetchError::UnknownCte));
    assert_eq!(binary_bytes(raw, &[4]), Ok(None));
    assert_eq!(binary_bytes(raw, &[]), Err(FetchError::UnknownCte));
    let whole = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n";
    assert_eq!(
        binary_bytes(whole, &[]).unwrap().unwrap().as_ref(),
        b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: binary\r\n\r\nhi"
    );
}

#[test]
fn envelope_and_body_of_multipart() {
    let mut out = Vec::new();
    write_envelope(MULTI, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "(NIL \"test folded\" ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)"
    );
    let mut out = Vec::new();
    write_bodystructure(MULTI, false, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 1)\
(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 39 (NIL \"inner\" ((NIL NIL \"c\" \"d\")) \
((NIL NIL \"c\" \"d\")) ((NIL NIL \"c\" \"d\")) NIL NIL NIL NIL NIL) \
(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0) 3) \"mixed\")"
    );
}
