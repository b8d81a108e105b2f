//! Mailbox names on the wire: modified UTF-7 (RFC 3501 §5.1.3) to and from UTF-8.
//!
//! Printable ASCII stands for itself, except `&`, written `&-`. Anything else is written as
//! `&` + the UTF-16BE code units in base64 (with `,` for `/`, no padding) + `-`. Decoding is
//! strict, because a lenient decoder lets two different wire names reach the same folder: it
//! refuses raw 8-bit or control bytes, a shift that encodes printable ASCII, an unterminated
//! or empty shift, non-zero padding bits, adjacent shifts that should have been one, and broken
//! surrogate pairs.
//!
//! A session that enabled IMAP4rev2 sends and receives names as UTF-8 instead (RFC 9051 §5.1,
//! the name part of RFC 6855 UTF8=ACCEPT): [`decode_utf8`] and [`for_wire`]. On disk nothing
//! changes, the store keeps writing modified UTF-7 folder names as Dovecot does, so a rev1
//! and a rev2 client of the same user see the same folder under its two spellings.

use std::borrow::Cow;

use thiserror::Error;

/// Why a mailbox name is not valid modified UTF-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("mailbox names must be 7-bit printable text (use modified UTF-7)")]
    NotPrintableAscii,
    #[error("unterminated '&' sequence in mailbox name")]
    Unterminated,
    #[error("invalid character in a '&' sequence of the mailbox name")]
    BadBase64,
    #[error("invalid UTF-16 in mailbox name")]
    BadUtf16,
    #[error("mailbox name is not in the canonical modified UTF-7 form")]
    NotCanonical,
    #[error("mailbox names must be valid UTF-8 without control characters")]
    NotUtf8,
}

/// Reads a wire name of an IMAP4rev2 session: UTF-8 as it is (RFC 9051 §5.1). Control
/// characters (C0, DEL, C1) are refused, as §5.1 forbids them in names; an `&` is an
/// ordinary character here, so `&AOk-` names a folder called `&AOk-`, not `é`.
pub fn decode_utf8(name: &[u8]) -> Result<&str, NameError> {
    let name = std::str::from_utf8(name).map_err(|_| NameError::NotUtf8)?;
    if name.chars().any(char::is_control) {
        return Err(NameError::NotUtf8);
    }
    Ok(name)
}

/// Reads a wire name: UTF-8 for an IMAP4rev2 session (`utf8`), modified UTF-7 otherwise.
pub fn from_wire(name: &[u8], utf8: bool) -> Result<Cow<'_, str>, NameError> {
    if utf8 {
        decode_utf8(name).map(Cow::Borrowed)
    } else {
        decode(name)
    }
}

/// A name as it goes on the wire: itself for an IMAP4rev2 session (`utf8`), modified UTF-7
/// otherwise.
pub fn for_wire(name: &str, utf8: bool) -> Cow<'_, str> {
    if utf8 {
        Cow::Borrowed(name)
    } else {
        encode(name)
    }
}

fn is_direct(b: u8) -> bool {
    (0x20..=0x7e).contains(&b) && b != b'&'
}

fn base64_value(b: u8) -> Option<u32> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    } as u32)
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Decodes a wire name to UTF-8; borrows when the name is plain ASCII without `&`.
pub fn decode(name: &[u8]) -> Result<Cow<'_, str>, NameError> {
    if name.iter().all(|&b| is_direct(b)) {
        // All printable ASCII, so valid UTF-8.
        return std::str::from_utf8(name)
            .map(Cow::Borrowed)
            .map_err(|_| NameError::NotPrintableAscii);
    }
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    let mut previous_shift_end = None;
    while i < name.len() {
        let b = name[i];
        if is_direct(b) {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        if b != b'&' {
            return Err(NameError::NotPrintableAscii);
        }
        let start = i + 1;
        let end = start
            + name[start..]
                .iter()
                .position(|&c| c == b'-')
                .ok_or(NameError::Unterminated)?;
        if end == start {
            out.push('&');
            i = end + 1;
            continue;
        }
        if previous_shift_end == Some(i) {
            return Err(NameError::NotCanonical);
        }
        decode_shift(&name[start..end], &mut out)?;
        i = end + 1;
        previous_shift_end = Some(i);
    }
    Ok(Cow::Owned(out))
}

/// Decodes the base64 between `&` and `-` into `out`.
fn decode_shift(encoded: &[u8], out: &mut String) -> Result<(), NameError> {
    let mut bits: u32 = 0;
    let mut nbits = 0u32;
    let mut units: Vec<u16> = Vec::with_capacity(encoded.len() * 3 / 4);
    for &c in encoded {
        let v = base64_value(c).ok_or(NameError::BadBase64)?;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 16 {
            nbits -= 16;
            // The top 16 of the collected bits form one UTF-16 unit.
            units.push(((bits >> nbits) & 0xffff) as u16);
            bits &= (1 << nbits) - 1;
        }
    }
    if nbits >= 6 || bits != 0 {
        return Err(NameError::NotCanonical);
    }
    for c in char::decode_utf16(units.iter().copied()) {
        let c = c.map_err(|_| NameError::BadUtf16)?;
        if c.is_ascii() && is_direct(c as u8) || c == '&' {
            return Err(NameError::NotCanonical);
        }
        out.push(c);
    }
    Ok(())
}

/// Encodes a UTF-8 name for the wire; borrows when nothing needs encoding.
pub fn encode(name: &str) -> Cow<'_, str> {
    if name.bytes().all(is_direct) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() * 2);
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if c.is_ascii() && is_direct(c as u8) {
            flush_shift(&mut pending, &mut out);
            out.push(c);
        } else if c == '&' {
            flush_shift(&mut pending, &mut out);
            out.push_str("&-");
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_shift(&mut pending, &mut out);
    Cow::Owned(out)
}

fn flush_shift(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0u32;
    for &u in units.iter() {
        bits = (bits << 16) | u32::from(u);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(BASE64[((bits >> nbits) & 0x3f) as usize]));
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(char::from(BASE64[((bits << (6 - nbits)) & 0x3f) as usize]));
    }
    out.push('-');
    units.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_examples() {
        // RFC 3501 §5.1.3.
        assert_eq!(
            decode(b"~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}"
        );
        assert_eq!(
            encode("~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(decode(b"A&-B").unwrap(), "A&B");
        assert_eq!(encode("A&B"), "A&-B");
        assert!(matches!(decode(b"INBOX").unwrap(), Cow::Borrowed("INBOX")));
        // Japanese folder names as E-Post users have them: 送信済み.
        assert_eq!(encode("送信済み"), "&kAFP4W4IMH8-");
        assert_eq!(decode(b"&kAFP4W4IMH8-").unwrap(), "送信済み");
        // Astral plane (surrogate pair).
        assert_eq!(
            decode(encode("x\u{1F600}y").as_bytes()).unwrap(),
            "x\u{1F600}y"
        );
    }

    #[test]
    fn malformed_names_are_refused() {
        assert_eq!(decode(b"caf\xc3\xa9"), Err(NameError::NotPrintableAscii));
        assert_eq!(decode(b"a\tb"), Err(NameError::NotPrintableAscii));
        assert_eq!(decode(b"&U,BTFw"), Err(NameError::Unterminated));
        assert_eq!(decode(b"&U,B!Fw-"), Err(NameError::BadBase64));
        assert_eq!(decode(b"&U/BTFw-"), Err(NameError::BadBase64));
        // "A" encoded in a shift: must be written directly.
        assert_eq!(decode(b"&AEE-"), Err(NameError::NotCanonical));
        // Two adjacent shifts.
        assert_eq!(decode(b"&U,A-&U,A-"), Err(NameError::NotCanonical));
        // Leftover non-zero bits.
        assert_eq!(decode(b"&U,BTFx-"), Err(NameError::NotCanonical));
        // A lone high surrogate (D800).
        assert_eq!(decode(b"&2AA-"), Err(NameError::BadUtf16));
    }

    #[test]
    fn utf8_names_of_imap4rev2_sessions() {
        assert_eq!(decode_utf8("送信済み".as_bytes()), Ok("送信済み"));
        // `&` is just a character in UTF-8 mode; its modified UTF-7 reading is not applied.
        assert_eq!(from_wire(b"&AOk-", true).unwrap(), "&AOk-");
        assert_eq!(from_wire(b"&AOk-", false).unwrap(), "\u{e9}");
        assert_eq!(decode_utf8(b"caf\xc3"), Err(NameError::NotUtf8));
        assert_eq!(decode_utf8(b"a\tb"), Err(NameError::NotUtf8));
        assert_eq!(decode_utf8("a\u{85}b".as_bytes()), Err(NameError::NotUtf8));
        assert_eq!(for_wire("Entwürfe", true), "Entwürfe");
        assert_eq!(for_wire("Entwürfe", false), "Entw&APw-rfe");
        // The same folder both ways.
        let rev1 = for_wire("Entwürfe", false);
        assert_eq!(from_wire(rev1.as_bytes(), false).unwrap(), "Entwürfe");
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(name in "\\PC{0,40}") {
            let wire = encode(&name);
            prop_assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            let back = decode(wire.as_bytes()).unwrap();
            prop_assert_eq!(back.as_ref(), name.as_str());
        }

        #[test]
        fn decode_never_panics_and_valid_names_re_encode_identically(
            wire in proptest::collection::vec(any::<u8>(), 0..40)
        ) {
            if let Ok(name) = decode(&wire) {
                let again = encode(&name);
                prop_assert_eq!(again.as_bytes(), &wire[..]);
            }
        }
    }
}
