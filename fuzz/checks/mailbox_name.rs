//! Fuzz check for `mailbox_name`: modified UTF-7 decoding of arbitrary wire bytes, and encoding
//! of arbitrary text. Shared by `fuzz/fuzz_targets/mailbox_name.rs` and
//! `tests/fuzz_regressions.rs`.
//!
//! The decoder is strict (one wire form per name), so decode and encode are inverse bijections
//! between the accepted wire names and all strings.

use std::borrow::Cow;

use hato::imap::mailbox_name::{decode, encode};

/// Checks one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    if let Ok(name) = decode(data) {
        // Canonical: the name encodes back to exactly these wire bytes...
        let wire = encode(&name);
        assert_eq!(wire.as_bytes(), data, "decoded to {name:?}");
        // ...and only names that need no decoding are borrowed.
        let plain = !data.contains(&b'&');
        assert_eq!(matches!(name, Cow::Borrowed(_)), plain, "{name:?}");
    }
    // Any text encodes to printable ASCII that decodes back to it.
    let text = String::from_utf8_lossy(data);
    let wire = encode(&text);
    assert!(
        wire.bytes().all(|b| (0x20..=0x7e).contains(&b)),
        "{text:?} encoded as {wire:?}"
    );
    match decode(wire.as_bytes()) {
        Ok(back) => assert_eq!(back, text, "encoded as {wire:?}"),
        Err(e) => panic!("{text:?} encoded as {wire:?}, which does not decode: {e}"),
    }
}
