//! Fuzz check for the FETCH message functions (`hato::imap::fetch`): the input is one byte that
//! picks a part path, that path, then the message. Shared by `fuzz/fuzz_targets/mime.rs` and
//! `tests/fuzz_regressions.rs`.
//!
//! Properties: nothing panics; BODYSTRUCTURE, BODY and ENVELOPE are each one well-formed IMAP
//! value (balanced lists of NIL, numbers, quoted strings and NUL-free literals); section
//! contents have CRLF line ends and no NUL; RFC822.SIZE is the length of `BODY[]`.

use hato::imap::fetch::{
    FetchAttr, apply_partial, binary_bytes, parse_attrs, rfc822_size, section_bytes,
    write_bodystructure, write_envelope,
};
use hato::imap::parser::parse_command;

/// What follows the part path in the `BODY[...]` sections asked for (besides the bare path).
const TEXTS: &[&str] = &[
    "MIME",
    "HEADER",
    "TEXT",
    "HEADER.FIELDS (From Content-Type \"X-Y\")",
    "HEADER.FIELDS.NOT (Subject)",
];

/// Checks one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let depth = usize::from(first & 7).min(rest.len());
    let (path_bytes, raw) = rest.split_at(depth);
    let path: Vec<String> = path_bytes
        .iter()
        .map(|&b| match b {
            0xff => u32::MAX.to_string(),
            _ => (u32::from(b % 16) + 1).to_string(),
        })
        .collect();

    for extensible in [false, true] {
        let mut out = Vec::new();
        write_bodystructure(raw, extensible, &mut out);
        assert_one_value(&out, "BODYSTRUCTURE");
    }
    let mut out = Vec::new();
    write_envelope(raw, &mut out);
    assert_one_value(&out, "ENVELOPE");

    let whole = section_bytes(raw, &section("")).expect("BODY[] always exists");
    assert_eq!(rfc822_size(raw), whole.len(), "RFC822.SIZE vs BODY[]");

    let offset = u32::from(first >> 3);
    for n in 0..=path.len() {
        let spec = path[..n].join(".");
        let dot = if spec.is_empty() { "" } else { "." };
        let specs =
            std::iter::once(spec.clone()).chain(TEXTS.iter().map(|t| format!("{spec}{dot}{t}")));
        for spec in specs {
            if spec == "MIME" {
                continue; // MIME needs a part number
            }
            if let Some(bytes) = section_bytes(raw, &section(&spec)) {
                assert_crlf_no_nul(&bytes, &spec);
                let part = apply_partial(&bytes, Some((offset, 7)));
                assert!(part.len() <= 7);
            }
        }
        let FetchAttr::Binary { part, .. } = &attr(&format!("BINARY[{spec}]")) else {
            unreachable!("BINARY[] parses as Binary")
        };
        if let Ok(Some(bytes)) = binary_bytes(raw, part) {
            let _ = apply_partial(&bytes, Some((offset, u32::MAX)));
        }
    }
}

/// One FETCH item, through the same parser as a FETCH command.
fn attr(item: &str) -> FetchAttr {
    let line = format!("f FETCH 1 {item}\r\n");
    let mut args = parse_command(line.as_bytes()).expect("command").args;
    args.atom().expect("sequence set");
    let attrs = parse_attrs(&mut args).unwrap_or_else(|e| panic!("{item}: {e}"));
    attrs.into_iter().next().expect("one item")
}

fn section(spec: &str) -> hato::imap::fetch::Section {
    attr(&format!("BODY[{spec}]"))
        .section()
        .expect("a BODY section")
}

fn assert_crlf_no_nul(bytes: &[u8], what: &str) {
    assert!(!bytes.contains(&0), "NUL in BODY[{what}]");
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert!(
                i > 0 && bytes[i - 1] == b'\r',
                "bare LF in BODY[{what}] at {i}"
            );
        }
    }
}

/// Asserts that `out` is exactly one IMAP value (see the module doc).
fn assert_one_value(out: &[u8], what: &str) {
    let mut pos = 0;
    if let Err(e) = value(out, &mut pos) {
        panic!("{what}: {e} at {pos} in {:?}", String::from_utf8_lossy(out));
    }
    assert_eq!(
        pos,
        out.len(),
        "{what}: trailing bytes in {:?}",
        String::from_utf8_lossy(out)
    );
}

fn value(out: &[u8], pos: &mut usize) -> Result<(), &'static str> {
    match out.get(*pos) {
        None => Err("missing value"),
        Some(b'(') => {
            *pos += 1;
            let mut first = true;
            loop {
                match out.get(*pos) {
                    None => return Err("unclosed list"),
                    Some(b')') => {
                        *pos += 1;
                        return Ok(());
                    }
                    Some(b' ') if !first => {
                        *pos += 1;
                        if matches!(out.get(*pos), Some(b' ' | b')')) {
                            return Err("stray space");
                        }
                    }
                    // Multipart bodies are written `(part)(part) "subtype"`.
                    Some(b'(') if !first && out[*pos - 1] == b')' => {}
                    Some(_) if !first => return Err("expected a space"),
                    Some(_) => {}
                }
                first = false;
                value(out, pos)?;
            }
        }
        Some(b'"') => {
            *pos += 1;
            loop {
                match out.get(*pos) {
                    None => return Err("unterminated quoted string"),
                    Some(b'"') => {
                        *pos += 1;
                        return Ok(());
                    }
                    Some(b'\\') => match out.get(*pos + 1) {
                        Some(b'"' | b'\\') => *pos += 2,
                        _ => return Err("bad escape"),
                    },
                    Some(&c) if c == 0 || c == b'\r' || c == b'\n' || c >= 0x80 => {
                        return Err("quoted string holds a byte that needs a literal");
                    }
                    Some(_) => *pos += 1,
                }
            }
        }
        Some(b'{') => {
            let close = out[*pos..]
                .iter()
                .position(|&c| c == b'}')
                .ok_or("unterminated literal length")?;
            let digits = &out[*pos + 1..*pos + close];
            let len: usize = std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|d| d.parse().ok())
                .ok_or("bad literal length")?;
            *pos += close + 1;
            if out.get(*pos..*pos + 2) != Some(b"\r\n") {
                return Err("literal length not followed by CRLF");
            }
            *pos += 2;
            let body = out.get(*pos..*pos + len).ok_or("literal past the end")?;
            if body.contains(&0) {
                return Err("NUL in a literal");
            }
            *pos += len;
            Ok(())
        }
        Some(_) => {
            let start = *pos;
            while out.get(*pos).is_some_and(|c| c.is_ascii_alphanumeric()) {
                *pos += 1;
            }
            let atom = &out[start..*pos];
            if atom == b"NIL" || (!atom.is_empty() && atom.iter().all(u8::is_ascii_digit)) {
                Ok(())
            } else {
                Err("expected NIL or a number")
            }
        }
    }
}
