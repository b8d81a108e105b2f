//! Base subject extraction (RFC 5256 §2.1), shared by SORT SUBJECT and both THREAD algorithms.
//!
//! The input is the Subject header with its RFC 2047 encoded words already decoded (the caller
//! owns header decoding); this module owns only the string rules: whitespace normalisation,
//! `(fwd)` trailers, `Re:`/`Fw:`/`Fwd:` leaders with `[blob]`s, lone leading blobs, and the
//! `[fwd: ...]` wrapper. It also reports whether anything removed marked the message as a
//! reply or forward, which THREAD=REFERENCES needs when it groups threads by subject.

/// The base subject and whether the original subject indicated a reply or forward (a
/// `subj-refwd` leader, a `(fwd)` trailer or a `[fwd: ...]` wrapper was removed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BaseSubject {
    /// The base subject, upper-cased in ASCII so that equal keys compare equal under
    /// i;ascii-casemap (the collation RFC 5256 requires).
    pub key: String,
    pub reply_or_forward: bool,
}

/// Extracts the base subject from a decoded Subject value.
pub fn extract(decoded: &str) -> BaseSubject {
    // Step 1: tabs and line ends become spaces, runs of spaces become one.
    let mut s = String::with_capacity(decoded.len());
    let mut last_space = false;
    for c in decoded.chars() {
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            if !last_space {
                s.push(' ');
            }
            last_space = true;
        } else {
            s.push(c);
            last_space = false;
        }
    }
    let mut reply = false;
    let mut s = s.as_str();
    loop {
        // Step 2: trailers, repeatedly.
        loop {
            if let Some(rest) = s.strip_suffix(' ') {
                s = rest;
            } else if s.len() >= 5 && s.is_char_boundary(s.len() - 5) && {
                let tail = &s[s.len() - 5..];
                tail.eq_ignore_ascii_case("(fwd)")
            } {
                s = &s[..s.len() - 5];
                reply = true;
            } else {
                break;
            }
        }
        // Steps 3 to 5: leaders, then a leading blob if something is left after it.
        loop {
            let before = s.len();
            loop {
                if let Some(rest) = s.strip_prefix(' ') {
                    s = rest;
                } else if let Some(n) = refwd_leader(s) {
                    s = &s[n..];
                    reply = true;
                } else {
                    break;
                }
            }
            if let Some(n) = blob(s)
                && n < s.len()
            {
                s = &s[n..];
            }
            if s.len() == before {
                break;
            }
        }
        // Step 6: `[fwd: ...]` wraps a forwarded subject; unwrap it and start again.
        if s.len() >= 6
            && s.is_char_boundary(5)
            && s[..5].eq_ignore_ascii_case("[fwd:")
            && s.ends_with(']')
        {
            s = &s[5..s.len() - 1];
            reply = true;
            continue;
        }
        break;
    }
    BaseSubject {
        key: s.to_ascii_uppercase(),
        reply_or_forward: reply,
    }
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP`: its length at the start of `s`. BLOBCHAR is any
/// character but the brackets (UTF-8 included, as RFC 5256 allows).
fn blob(s: &str) -> Option<usize> {
    let rest = s.strip_prefix('[')?;
    let close = rest.find(['[', ']'])?;
    if rest.as_bytes()[close] != b']' {
        return None;
    }
    let mut n = 1 + close + 1;
    while s.as_bytes().get(n) == Some(&b' ') {
        n += 1;
    }
    Some(n)
}

/// `*subj-blob subj-refwd` with `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`:
/// its length at the start of `s`, if it is there.
fn refwd_leader(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(n) = blob(&s[i..]) {
        i += n;
    }
    let word = |at: usize, w: &[u8]| {
        bytes
            .get(at..at + w.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(w))
    };
    if word(i, b"re") {
        i += 2;
    } else if word(i, b"fwd") {
        i += 3;
    } else if word(i, b"fw") {
        i += 2;
    } else {
        return None;
    }
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    if let Some(n) = blob(&s[i..]) {
        i += n;
    }
    (bytes.get(i) == Some(&b':')).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> String {
        extract(s).key
    }

    fn is_reply(s: &str) -> bool {
        extract(s).reply_or_forward
    }

    #[test]
    fn rfc_examples() {
        assert_eq!(base("Re: hello"), "HELLO");
        assert_eq!(base("RE: Re: re: hello"), "HELLO");
        assert_eq!(base("Fwd: hello"), "HELLO");
        assert_eq!(base("Fw: hello"), "HELLO");
        assert_eq!(base("hello (fwd)"), "HELLO");
        assert_eq!(base("hello (FWD) (fwd)  "), "HELLO");
        assert_eq!(base("[fwd: hello]"), "HELLO");
        assert_eq!(base("[Fwd: Re: hello (fwd)]"), "HELLO");
        assert_eq!(base("Re [list]: hello"), "HELLO");
        assert_eq!(base("Re:hello"), "HELLO");
        assert_eq!(base("  hello\t\r\n  world  "), "HELLO WORLD");
        assert!(is_reply("Re: x"));
        assert!(is_reply("x (fwd)"));
        assert!(is_reply("[fwd: x]"));
        assert!(!is_reply("[list] x"));
        assert!(!is_reply("x"));
    }

    #[test]
    fn nested_leaders_and_blobs() {
        assert_eq!(base("Re: [list] Fwd: [x] subj (fwd)"), "SUBJ");
        assert_eq!(base("[list] Re: [other] subj"), "SUBJ");
        assert_eq!(base("[a][b] Re: subj"), "SUBJ");
        assert_eq!(base("[list] subj"), "SUBJ");
        assert_eq!(base("Re: [fwd: [list] subj]"), "SUBJ");
        assert!(!is_reply("[list] [x] subj"));
        assert!(is_reply("[list] Re: subj"));
    }

    #[test]
    fn only_blobs_and_empty() {
        // A blob is kept when nothing would be left after it.
        assert_eq!(base("[list]"), "[LIST]");
        assert_eq!(base("[a] [b]"), "[B]");
        assert_eq!(base("[a][b]"), "[B]");
        assert_eq!(base(""), "");
        assert_eq!(base("Re:"), "");
        assert_eq!(base("Re: (fwd)"), "");
        assert_eq!(base("   "), "");
        assert_eq!(base("[unclosed subj"), "[UNCLOSED SUBJ");
        assert_eq!(base("[a]]b"), "]B");
    }

    #[test]
    fn not_leaders() {
        assert_eq!(base("Ref: hello"), "REF: HELLO");
        assert_eq!(base("Re hello"), "RE HELLO");
        assert_eq!(base("Reply: hello"), "REPLY: HELLO");
        assert_eq!(base("hello Re: x"), "HELLO RE: X");
        assert_eq!(base("hello(fwd)"), "HELLO");
        assert_eq!(base("[fwd: unclosed"), "[FWD: UNCLOSED");
    }

    #[test]
    fn decoded_utf8_is_kept() {
        assert_eq!(base("Re: [liste] Grüße aus Köln"), "GRüßE AUS KöLN");
        assert_eq!(base("[ünï] Re: é"), "é");
        assert_eq!(base("é (fwd)"), "é");
    }
}
