//! A corpus of tricky messages for the FETCH oracle test (`tests/fetch_oracle.rs`).
//!
//! Each message is built from lines joined with CRLF (or LF where a message tests bare line
//! feeds) and targets one area where IMAP servers tend to differ: MIME nesting, boundaries,
//! message/rfc822 parts, encoded words, address syntax, header folding, parameter
//! continuations, transfer encodings, missing headers and degenerate messages.

/// Joins lines with CRLF, with a final CRLF.
fn crlf(lines: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    out
}

fn base64_lines(data: &[u8]) -> Vec<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                encoded.push(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// The corpus: the hand-written messages, then `random` generated ones from `seed`.
pub fn messages(random: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();

    out.push((
        "simple_plain",
        crlf(&[
            "Return-Path: <alice@example.com>",
            "Received: from mx.example.com (mx.example.com [192.0.2.1])",
            "\tby imap.example.org with ESMTP id 12345",
            "\tfor <bob@example.org>; Mon, 1 Jan 2024 10:00:00 +0000",
            "Date: Mon, 1 Jan 2024 10:00:00 +0000",
            "From: Alice Example <alice@example.com>",
            "To: Bob <bob@example.org>",
            "Subject: Hello there",
            "Message-ID: <simple-1@example.com>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8; format=flowed",
            "",
            "Hi Bob,",
            "",
            "just a plain message.",
            "-- ",
            "Alice",
        ]),
    ));

    let png = base64_lines(&(0u8..=255).cycle().take(700).collect::<Vec<u8>>());
    let pdf = base64_lines(b"%PDF-1.4 fake pdf content for the corpus, not a real document\n");
    let mut nested = vec![
        "Date: Tue, 2 Jan 2024 11:30:00 +0100",
        "From: \"Carol, the Sender\" <carol@example.net>",
        "To: dave@example.org, \"Eve \\\"E\\\" Smith\" <eve@example.org>",
        "Cc: Frank <frank@example.org>",
        "Subject: Nested multipart",
        "Message-ID: <nested-2@example.net>",
        "In-Reply-To: <simple-1@example.com>",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=\"=_outer_boundary\"",
        "",
        "This is a multi-part message in MIME format.",
        "",
        "--=_outer_boundary",
        "Content-Type: multipart/alternative; boundary=\"=_alt\"",
        "",
        "--=_alt",
        "Content-Type: text/plain; charset=\"us-ascii\"",
        "Content-Transfer-Encoding: 7bit",
        "",
        "Plain version.",
        "",
        "--=_alt",
        "Content-Type: multipart/related; boundary=\"=_rel\"; type=\"text/html\"",
        "",
        "--=_rel",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "<html><body><p>HTML version =E2=9C=93</p><img src=3D\"cid:img1@example.net\">=",
        "</body></html>",
        "--=_rel",
        "Content-Type: image/png; name=\"pixel.png\"",
        "Content-Transfer-Encoding: base64",
        "Content-ID: <img1@example.net>",
        "Content-Disposition: inline; filename=\"pixel.png\"",
        "",
    ];
    nested.extend(png.iter().map(String::as_str));
    nested.extend([
        "--=_rel--",
        "",
        "--=_alt--",
        "",
        "--=_outer_boundary",
        "Content-Type: application/pdf; name=\"report.pdf\"",
        "Content-Transfer-Encoding: base64",
        "Content-Disposition: attachment; filename=\"report.pdf\"; size=61",
        "Content-Description: Quarterly report",
        "",
    ]);
    nested.extend(pdf.iter().map(String::as_str));
    nested.extend(["--=_outer_boundary--", "epilogue text"]);
    out.push(("nested_multipart", crlf(&nested)));

    out.push((
        "rfc822_attachment",
        crlf(&[
            "Date: Wed, 3 Jan 2024 09:00:00 -0500",
            "From: gina@example.com",
            "To: hank@example.com",
            "Subject: Fwd: the original",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=fwd",
            "",
            "--fwd",
            "Content-Type: text/plain",
            "",
            "See the attached message.",
            "--fwd",
            "Content-Type: message/rfc822; name=\"original.eml\"",
            "Content-Disposition: attachment; filename=\"original.eml\"",
            "",
            "Date: Tue, 2 Jan 2024 08:00:00 -0500",
            "From: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <joerg@example.de>",
            "To: gina@example.com",
            "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus Berlin",
            "Message-ID: <inner-3@example.de>",
            "MIME-Version: 1.0",
            "Content-Type: multipart/alternative; boundary=\"inner-alt\"",
            "",
            "--inner-alt",
            "Content-Type: text/plain; charset=iso-8859-1",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            "Gr=FC=DFe!",
            "--inner-alt",
            "Content-Type: text/html; charset=iso-8859-1",
            "",
            "<b>Hallo</b>",
            "--inner-alt--",
            "",
            "--fwd--",
        ]),
    ));

    out.push((
        "encoded_words",
        crlf(&[
            "Date: Thu, 4 Jan 2024 12:00:00 +0900",
            "From: =?utf-8?q?=E5=B1=B1=E7=94=B0_=E5=A4=AA=E9=83=8E?= <taro@example.jp>",
            "Reply-To: =?iso-2022-jp?B?GyRCJUYlOSVIGyhC?= <reply@example.jp>",
            "To: \"Doe, John\" <john@example.com>, =?UTF-8?B?w4lsb2TDrWU=?= <elodie@example.fr>",
            "Subject: =?UTF-8?B?w4lsw6hWZSDigJQgdGVzdA==?= =?UTF-8?Q?_and_more?=",
            "Message-ID: <encoded-4@example.jp>",
            "",
            "Body.",
        ]),
    ));

    out.push((
        "missing_headers",
        crlf(&[
            "To: nobody@example.com",
            "X-Mailer: corpus",
            "",
            "No From, no Date, no Subject.",
        ]),
    ));

    let mut eight_bit = crlf(&[
        "Date: Fri, 5 Jan 2024 08:00:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]);
    eight_bit.extend_from_slice("From: Zoë Ünïcode <zoe@example.com>\r\n".as_bytes());
    eight_bit.extend_from_slice("Subject: Grüße und Küsse — 8-bit\r\n\r\n".as_bytes());
    eight_bit.extend_from_slice("Schöne Grüße aus Köln. ✓\r\n".as_bytes());
    out.push(("eight_bit", eight_bit));

    let long_line = "x".repeat(5000);
    let long_subject = (0..40)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    out.push((
        "long_lines",
        crlf(&[
            "From: long@example.com",
            "To: lines@example.com",
            &format!("Subject: {long_subject}"),
            &format!("X-Long: {}", "y".repeat(1500)),
            "Content-Type: text/plain",
            "",
            &long_line,
            "short",
            &long_line,
        ]),
    ));

    out.push((
        "folded_headers",
        crlf(&[
            "Date: Sat, 6 Jan 2024",
            "  14:00:00 +0000",
            "From: Folded",
            "\tSender <folded@example.com>",
            "To: a@example.com,",
            "  b@example.com,",
            "\tc@example.com",
            "Subject: This subject",
            "\tis folded   over",
            "    three lines",
            "Message-ID:",
            " <folded-8@example.com>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain;",
            "\tcharset=\"iso-8859-1\";",
            "  format=flowed",
            "",
            "Body of the folded message.",
        ]),
    ));

    out.push((
        "group_syntax",
        crlf(&[
            "From: Mailing List: list@example.com;",
            "Sender: owner@example.com (List Owner)",
            "To: undisclosed-recipients:;",
            "Cc: Team: alice@example.com, \"B. Smith\" <b@example.com>;, solo@example.com",
            "Bcc: <@relay1.example,@relay2.example:route@example.com>",
            "Reply-To: broken address without at, \"quoted\"@example.com, @nomailbox, <>",
            "Subject: Groups and odd addresses",
            "",
            "Body.",
        ]),
    ));

    out.push((
        "header_only",
        crlf(&[
            "From: headers@example.com",
            "To: only@example.com",
            "Subject: No body and no blank line",
        ]),
    ));

    out.push((
        "empty_body",
        crlf(&["From: empty@example.com", "Subject: Empty body", ""]),
    ));

    out.push((
        "rfc2231_params",
        crlf(&[
            "From: params@example.com",
            "Subject: Parameter continuations",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=\"p\"",
            "",
            "--p",
            "Content-Type: application/octet-stream;",
            " name*=utf-8''%E2%82%AC%20rates.txt",
            "Content-Disposition: attachment;",
            " filename*0*=utf-8''very%20long%20;",
            " filename*1*=file%20name;",
            " filename*2=\".txt\"",
            "Content-Transfer-Encoding: base64",
            "",
            "aGVsbG8gd29ybGQK",
            "--p",
            "Content-Type: text/plain; title*0=\"part one \"; title*1=\"part two\";",
            "  charset=us-ascii",
            "Content-Language: en-GB, de",
            "Content-Location: http://example.com/x",
            "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
            "Content-ID: <part2@example.com>",
            "",
            "text",
            "--p--",
        ]),
    ));

    out.push((
        "qp_and_base64",
        crlf(&[
            "From: enc@example.com",
            "Subject: Encodings",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=enc",
            "",
            "--enc",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "Content-Description: QP text",
            "",
            "Soft line =",
            "break, equals =3D sign, trailing spaces   ",
            "caf=C3=A9 and =E2=82=AC",
            "--enc",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: BASE64",
            "",
            "SGVsbG8sIGJhc2U2NCB0ZXh0IQ0KU2Vjb25kIGxpbmUuDQo=",
            "--enc",
            "Content-Type: application/x-stuff",
            "Content-Transfer-Encoding: x-uuencode",
            "",
            "begin 644 x",
            "end",
            "--enc--",
        ]),
    ));

    out.push((
        "bare_lf",
        b"From: lf@example.com\nSubject: Bare LF line ends\nMIME-Version: 1.0\n\
Content-Type: multipart/alternative; boundary=lf\n\n--lf\nContent-Type: text/plain\n\n\
line one\nline two\n--lf\nContent-Type: text/html\n\n<p>x</p>\n--lf--\n"
            .to_vec(),
    ));

    out.push((
        "digest",
        crlf(&[
            "From: digest@example.com",
            "Subject: A digest",
            "MIME-Version: 1.0",
            "Content-Type: multipart/digest; boundary=dig",
            "",
            "--dig",
            "",
            "From: one@example.com",
            "Subject: first digest entry",
            "",
            "Entry one.",
            "--dig",
            "Content-Type: text/plain",
            "",
            "Not a message.",
            "--dig",
            "",
            "From: two@example.com",
            "Subject: second digest entry",
            "Content-Type: text/plain; charset=utf-8",
            "",
            "Entry two.",
            "--dig--",
        ]),
    ));

    out.push((
        "no_boundary",
        crlf(&[
            "From: nob@example.com",
            "Subject: Multipart without boundary",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed",
            "",
            "--x",
            "Content-Type: text/plain",
            "",
            "hello",
            "--x--",
        ]),
    ));

    out.push((
        "missing_end_boundary",
        crlf(&[
            "From: meb@example.com",
            "Subject: Inner end boundary missing",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=abc",
            "",
            "preamble line",
            "--abc",
            "Content-Type: multipart/alternative; boundary=abcdef",
            "",
            "--abcdef",
            "Content-Type: text/plain",
            "",
            "inner one",
            "--abcdef",
            "Content-Type: text/plain",
            "Content-Transfer-Encoding: 7bit",
            "--abc",
            "Content-Type: text/plain",
            "",
            "outer two",
            "--abc--",
            "epilogue",
        ]),
    ));

    out.push((
        "repeated_headers",
        crlf(&[
            "Date: Sun, 7 Jan 2024 00:00:00 +0000",
            "Date: Mon, 8 Jan 2024 00:00:00 +0000",
            "From: first@example.com",
            "From: second@example.com",
            "To: t1@example.com",
            "To: t2@example.com",
            "Subject: first subject",
            "Subject: second subject",
            "Subject : spaced colon",
            "X-No-Colon-Line",
            "Message-ID: <a@x> <b@y>",
            "In-Reply-To: <parent1@x>",
            " <parent2@x>",
            "",
            "Body.",
        ]),
    ));

    out.push((
        "rfc822_base64_and_broken_types",
        crlf(&[
            "From: types@example.com",
            "Subject: Odd content types",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=\"odd\"",
            "",
            "--odd",
            "Content-Type: message/rfc822",
            "Content-Transfer-Encoding: base64",
            "",
            "U3ViamVjdDogZW5jb2RlZCBpbm5lcg0KDQpib2R5DQo=",
            "--odd",
            "Content-Type: text",
            "",
            "type without subtype",
            "--odd",
            "Content-Type: text/plain garbage",
            "",
            "broken type",
            "--odd",
            "Content-Type:",
            "",
            "empty type",
            "--odd",
            "Content-Type: TEXT/HTML; CHARSET=UTF-8",
            "Content-Transfer-Encoding: 7bit ; junk",
            "",
            "<i>upper</i>",
            "--odd",
            "Content-Type: message/rfc822",
            "",
            "--odd--",
        ]),
    ));

    out.push((
        "no_mime_version",
        crlf(&[
            "From: nomime@example.com",
            "Subject: Content headers without MIME-Version",
            "Content-Transfer-Encoding: quoted-printable",
            "Content-Disposition: inline",
            "",
            "caf=C3=A9",
        ]),
    ));

    out.push(("no_headers", crlf(&["", "A body without any header."])));

    out.push((
        "header_no_newline",
        b"From: eof@example.com\r\nSubject: header ends at EOF".to_vec(),
    ));

    let mut nul = crlf(&[
        "From: nul@example.com",
        "Subject: NUL byte",
        "Content-Type: text/plain",
        "",
    ]);
    nul.extend_from_slice(b"before\0after\r\n");
    out.push(("nul_byte", nul));

    out.push((
        "header_interrupted_by_boundary",
        crlf(&[
            "From: hib@example.com",
            "Subject: Part header cut by a boundary",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=cut",
            "",
            "--cut",
            "Content-Type: text/plain",
            "--cut",
            "Content-Type: message/rfc822",
            "",
            "Subject: inner without end of header",
            "--cut",
            "",
            "last",
            "--cut--",
        ]),
    ));

    out.push((
        "address_zoo",
        crlf(&[
            "From: \"Joe Q. Public\" <john.q.public@example.com>",
            "Sender: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
            "To: Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
            "Cc: <boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>",
            "Bcc: A Group(Some people):Chris Jones <c@(Chris's host.)public.example>,",
            "    joe@example.org,",
            "  John <jdoe@one.test> (my dear friend); (the end of the group)",
            "Reply-To: (Empty list)(start)Hidden recipients  :(nobody(that I know))  ;",
            "Subject: Tabs\tand  \"quotes\" and \\backslashes\\ and \"more\" \"quotes\"",
            "Date: Thu,",
            "      13",
            "        Feb",
            "          1969",
            "      23:32",
            "               -0330 (Newfoundland Time)",
            "Message-ID:              <testabcd.1234@silly.test>",
            "",
            "Testing.",
        ]),
    ));

    out.push((
        "address_oddities",
        crlf(&[
            "From: user@[192.0.2.1], \"quoted local\"@example.com, john..doe@example.com",
            "To: @example.com, <>, a@b@c, first.last@sub.example.com., Name <x@y",
            "Cc: \"unterminated <x@y>",
            "Bcc: ,, lonely@example.com ,",
            "Reply-To: =?utf-8?q?Encoded_Group?=: member@example.com;",
            "Sender: \"\" <empty-name@example.com>",
            "Subject: odd addresses",
            "In-Reply-To: <a@b>\r (lone CR)",
            "",
            "x",
        ]),
    ));

    out.push((
        "param_oddities",
        crlf(&[
            "From: p@example.com",
            "Subject: parameter oddities",
            "Mime-Version: 1.0",
            "Content-Type: multipart/mixed;",
            " boundary=\"with space and (parens)\"; foo=\"a \\\"quoted\\\" \\\\value\"",
            "",
            "--with space and (parens)",
            "Content-Type: application/octet-stream; name==?utf-8?b?w6kudHh0?=",
            "Content-Disposition: attachment",
            "Content-Disposition: inline; filename=second.txt",
            "",
            "data",
            "--with space and (parens)",
            "Content-Type: text/plain; ;charset=utf-8;; empty=; =novalue; broken=\"unterminated",
            "Content-ID:",
            " <folded-id@example.com>",
            "Content-Location: http://example.com/",
            " very/long/path",
            "",
            "text",
            "--with space and (parens)",
            "Content-Type: text/plain; title*0=\"a\"; title*2=\"c\"; x*=us-ascii'en'%41",
            "Content-Disposition: attachment; FileName=\"\\\\server\\share\"; size=1",
            "",
            "more",
            "--with space and (parens)--",
        ]),
    ));

    let long_boundary = "L".repeat(90);
    out.push((
        "boundary_edges",
        crlf(&[
            "From: b@example.com",
            "Subject: boundary edge cases",
            "MIME-Version: 1.0",
            &format!("Content-Type: multipart/mixed; boundary={long_boundary}"),
            "",
            &format!("--{long_boundary}"),
            "Content-Type: multipart/alternative; boundary=b",
            "",
            "--b   ",
            "Content-Type: text/plain",
            "",
            "a line that looks like a boundary follows",
            "--bxyz is a boundary by prefix",
            "",
            "after the prefix boundary",
            "--b--trailing",
            "epilogue of b",
            &format!("--{long_boundary}--"),
        ]),
    ));

    out.push((
        "deep_nesting",
        crlf(&[
            "From: deep@example.com",
            "Subject: deep nesting",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=l1",
            "",
            "--l1",
            "Content-Type: message/rfc822",
            "",
            "Subject: level 2",
            "From: two@example.com",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=l3",
            "",
            "--l3",
            "Content-Type: message/rfc822",
            "",
            "Subject: level 4",
            "Content-Type: multipart/digest; boundary=l5",
            "",
            "--l5",
            "",
            "Subject: digest entry",
            "",
            "entry",
            "--l5--",
            "--l3",
            "Content-Type: text/plain",
            "",
            "level 3 text",
            "--l3--",
            "--l1",
            "Content-Type: text/plain",
            "",
            "level 1 text",
            "--l1--",
        ]),
    ));

    out.push((
        "content_type_without_mime_version",
        crlf(&[
            "From: nmv@example.com",
            "Subject: multipart without MIME-Version",
            "Content-Type: multipart/alternative; boundary=nmv",
            "Content-Transfer-Encoding: 7bit",
            "",
            "--nmv",
            "Content-Type: text/plain; charset=us-ascii",
            "",
            "plain",
            "--nmv--",
        ]),
    ));

    out.push((
        "binary_encodings",
        crlf(&[
            "From: bin@example.com",
            "Subject: transfer encodings for BINARY",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=bb",
            "",
            "--bb",
            "Content-Type: text/plain",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            "bad escapes =ZZ and =4 and = space",
            "soft break at the very end=",
            "--bb",
            "Content-Type: application/octet-stream",
            "Content-Transfer-Encoding: base64",
            "",
            "AAECAwQF",
            "BgcICQoL",
            "--bb",
            "Content-Type: application/octet-stream",
            "Content-Transfer-Encoding: binary",
            "",
            "raw binary-ish content",
            "--bb",
            "Content-Type: text/plain",
            "Content-Transfer-Encoding: 8bit",
            "",
            "eight bit",
            "--bb",
            "Content-Type: text/plain",
            "Content-Transfer-Encoding: base64",
            "",
            "--bb--",
        ]),
    ));

    out.push(("empty_file", Vec::new()));
    out.push(("only_newline", b"\r\n".to_vec()));

    let mut all: Vec<(String, Vec<u8>)> = out
        .into_iter()
        .map(|(name, raw)| (name.to_owned(), raw))
        .collect();
    all.extend(random_messages(seed, random));
    all
}

/// A small deterministic generator (xorshift64*), so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const WORDS: &[&str] = &[
    "alpha", "beta", "gamma", "delta", "--", "=", "x:", "(c)", "\"q\"", "naïve", "über", "end",
];

const ADDRESSES: &[&str] = &[
    "a@example.com",
    "\"Last, First\" <first.last@example.org>",
    "=?utf-8?q?R=C3=A9mi?= <remi@example.fr>",
    "Group: m1@example.com, m2@example.com;",
    "undisclosed-recipients:;",
    "<route@example.net>",
    "plain name only",
    "x@[10.0.0.1] (comment name)",
];

fn random_words(rng: &mut Rng, max: usize) -> String {
    let n = 1 + rng.below(max);
    (0..n)
        .map(|_| rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Appends the header and body lines of one random MIME entity.
fn random_entity(
    rng: &mut Rng,
    depth: usize,
    lines: &mut Vec<String>,
    boundaries: &mut Vec<String>,
) {
    let kind = if depth >= 3 {
        rng.below(3)
    } else {
        rng.below(6)
    };
    match kind {
        // Leaf parts: text, html or an encoded attachment.
        0..=2 => {
            let (ct, cte) = match kind {
                0 => (
                    rng.pick(&[
                        "",
                        "Content-Type: text/plain",
                        "Content-Type: text/plain; charset=utf-8",
                        "Content-Type: TEXT/Plain; Charset=\"ISO-8859-1\"; format=flowed",
                    ]),
                    rng.pick(&["", "Content-Transfer-Encoding: 7bit", "Content-Transfer-Encoding: 8bit"]),
                ),
                1 => (
                    "Content-Type: text/html; charset=us-ascii",
                    "Content-Transfer-Encoding: quoted-printable",
                ),
                _ => (
                    rng.pick(&[
                        "Content-Type: application/octet-stream",
                        "Content-Type: image/png; name=\"a b.png\"",
                        "Content-Type: application/pdf;\r\n name*0=\"long \";\r\n name*1=\"name.pdf\"",
                    ]),
                    "Content-Transfer-Encoding: base64",
                ),
            };
            for h in [ct, cte] {
                if !h.is_empty() {
                    lines.extend(h.split("\r\n").map(str::to_owned));
                }
            }
            if rng.chance(30) {
                lines.push(format!("Content-ID: <id{}@example.com>", rng.below(1000)));
            }
            if rng.chance(30) {
                lines.push(
                    rng.pick(&[
                        "Content-Disposition: attachment; filename=\"f.bin\"",
                        "Content-Disposition: inline",
                        "Content-Disposition: attachment;\r\n filename*=utf-8''%C3%A9t%C3%A9.txt",
                    ])
                    .replace("\r\n", "\n"),
                );
                // Keep folded values as separate lines.
                if let Some(last) = lines.pop() {
                    lines.extend(last.split('\n').map(str::to_owned));
                }
            }
            if rng.chance(20) {
                lines.push(format!("Content-Description: {}", random_words(rng, 4)));
            }
            if rng.chance(15) {
                lines.push("Content-Language: en, fr".to_owned());
            }
            lines.push(String::new());
            match kind {
                1 => {
                    for _ in 0..rng.below(4) {
                        lines.push(format!(
                            "<p>{} =3D x</p>=",
                            random_words(rng, 6).replace('=', "=3D")
                        ));
                    }
                    lines.push("<br>".to_owned());
                }
                2 => {
                    let len = rng.below(200);
                    let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    lines.extend(base64_lines(&data));
                }
                _ => {
                    for _ in 0..rng.below(5) {
                        if rng.chance(10) {
                            lines.push("y".repeat(1200));
                        } else {
                            lines.push(random_words(rng, 8));
                        }
                    }
                }
            }
        }
        // message/rfc822.
        3 => {
            lines.push("Content-Type: message/rfc822".to_owned());
            lines.push(String::new());
            random_message_headers(rng, lines);
            random_entity(rng, depth + 1, lines, boundaries);
        }
        // multipart.
        _ => {
            let sub = rng.pick(&["mixed", "alternative", "related", "digest", "MIXED"]);
            // Sometimes a boundary that has the enclosing one as prefix, or the other way.
            let boundary = match boundaries.last() {
                Some(outer) if rng.chance(15) => format!("{outer}x"),
                _ => format!("b{}_{}", depth, rng.below(10_000)),
            };
            let quoted = rng.chance(50);
            lines.push(if quoted {
                format!("Content-Type: multipart/{sub}; boundary=\"{boundary}\"")
            } else {
                format!("Content-Type: multipart/{sub};\r\n\tboundary={boundary}")
                    .replace("\r\n", "\n")
            });
            if let Some(last) = lines.pop() {
                lines.extend(last.split('\n').map(str::to_owned));
            }
            lines.push(String::new());
            if rng.chance(40) {
                lines.push(random_words(rng, 6));
            }
            boundaries.push(boundary.clone());
            let children = rng.below(4);
            for _ in 0..children {
                lines.push(format!("--{boundary}"));
                if sub == "digest" && rng.chance(50) {
                    // No Content-Type in a digest: message/rfc822.
                    lines.push(String::new());
                    random_message_headers(rng, lines);
                    lines.push(String::new());
                    lines.push(random_words(rng, 5));
                } else {
                    random_entity(rng, depth + 1, lines, boundaries);
                }
            }
            boundaries.pop();
            if children == 0 || rng.chance(85) {
                lines.push(format!("--{boundary}--"));
                if rng.chance(30) {
                    lines.push(random_words(rng, 4));
                }
            }
        }
    }
}

fn random_message_headers(rng: &mut Rng, lines: &mut Vec<String>) {
    if rng.chance(80) {
        lines.push(format!("From: {}", rng.pick(ADDRESSES)));
    }
    if rng.chance(70) {
        lines.push(format!(
            "To: {}, {}",
            rng.pick(ADDRESSES),
            rng.pick(ADDRESSES)
        ));
    }
    if rng.chance(30) {
        lines.push(format!("Cc: {}", rng.pick(ADDRESSES)));
    }
    if rng.chance(70) {
        lines.push(format!("Subject: {}", random_words(rng, 6)));
        if rng.chance(30) {
            lines.push(format!("\t{}", random_words(rng, 3)));
        }
    }
    if rng.chance(60) {
        lines.push("Date: Wed, 10 Jan 2024 10:10:10 +0100".to_owned());
    }
    if rng.chance(50) {
        lines.push(format!("Message-ID: <r{}@example.com>", rng.below(100_000)));
    }
    if rng.chance(70) {
        lines.push("MIME-Version: 1.0".to_owned());
    }
}

/// `count` random but well-formed-ish MIME messages (every header ends with an empty line,
/// every transfer encoding is valid), mixing the structures of the hand-written corpus.
pub fn random_messages(seed: u64, count: usize) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(seed | 1);
    (0..count)
        .map(|i| {
            let mut lines = vec![format!("X-Random: {i}")];
            random_message_headers(&mut rng, &mut lines);
            random_entity(&mut rng, 0, &mut lines, &mut Vec::new());
            let eol: &[u8] = if rng.chance(20) { b"\n" } else { b"\r\n" };
            let mut raw = Vec::new();
            for l in &lines {
                raw.extend_from_slice(l.as_bytes());
                raw.extend_from_slice(eol);
            }
            (format!("random_{i}"), raw)
        })
        .collect()
}
