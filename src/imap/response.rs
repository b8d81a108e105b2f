//! Response encoding: tagged and untagged status lines, capability lists, strings.
//!
//! Everything writes into a caller-provided `Vec<u8>` (the worker's reusable output buffer), so
//! answering a command allocates nothing once that buffer has grown to its working size.

use crate::config::Settings;

/// The result word of a tagged response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    No,
    Bad,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        }
    }

    /// Label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::No => "no",
            Status::Bad => "bad",
        }
    }
}

/// `<tag> <status> <text>\r\n`; `text` may start with a response code such as `[ALERT]`.
pub fn tagged(out: &mut Vec<u8>, tag: &[u8], status: Status, text: &str) {
    out.extend_from_slice(tag);
    out.push(b' ');
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `* <text>\r\n`.
pub fn untagged(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"* ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `+ <text>\r\n`.
pub fn continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Where in the protocol the capability list is asked for; the list depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityContext {
    /// Before login: `starttls` when TLS can be started on this connection, `login` when a
    /// login is allowed on it now (else `LOGINDISABLED` and no `AUTH=` mechanisms).
    PreAuth {
        starttls: bool,
        login: bool,
    },
    Authenticated,
}

/// Writes the capability atoms, space separated, without a line end. Only what really works
/// is advertised; IDLE follows `IDLECmd.1` and appears before login too, because some Outlook
/// builds only look at the pre-login list.
pub fn capabilities(out: &mut Vec<u8>, settings: &Settings, context: CapabilityContext) {
    // IMAP4rev2 (RFC 9051) next to IMAP4rev1: a session stays rev1 until it sends
    // `ENABLE IMAP4rev2` (§6.3.1). LITERAL+ covers rev2's LITERAL- (§4.3).
    out.extend_from_slice(b"IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID ENABLE");
    if settings.idle_cmd {
        out.extend_from_slice(b" IDLE");
    }
    match context {
        CapabilityContext::PreAuth { starttls, login } => {
            if starttls {
                out.extend_from_slice(b" STARTTLS");
            }
            if login {
                out.extend_from_slice(b" AUTH=PLAIN AUTH=LOGIN");
            } else {
                out.extend_from_slice(b" LOGINDISABLED");
            }
        }
        CapabilityContext::Authenticated => {
            out.extend_from_slice(
                b" NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE CREATE-SPECIAL-USE \
LIST-EXTENDED LIST-STATUS MULTIAPPEND ESEARCH SEARCHRES STATUS=SIZE BINARY \
SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES ESORT CONDSTORE QRESYNC COMPRESS=DEFLATE \
QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE APPENDLIMIT=",
            );
            out.extend_from_slice(settings.max_literal_size.to_string().as_bytes());
        }
    }
}

/// Writes a `[CAPABILITY ...]` response code followed by a space.
pub fn capability_code(out: &mut Vec<u8>, settings: &Settings, context: CapabilityContext) {
    out.extend_from_slice(b"[CAPABILITY ");
    capabilities(out, settings, context);
    out.extend_from_slice(b"] ");
}

/// Writes `bytes` as an IMAP string: quoted when that is safe, a literal otherwise.
pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    let quotable = bytes.len() < 1024
        && bytes
            .iter()
            .all(|&b| b != b'\r' && b != b'\n' && b != 0 && b < 0x80);
    if quotable {
        out.push(b'"');
        for &b in bytes {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.push(b'{');
        out.extend_from_slice(bytes.len().to_string().as_bytes());
        out.extend_from_slice(b"}\r\n");
        out.extend_from_slice(bytes);
    }
}

/// Writes a UTF-8 text (a mailbox name of an IMAP4rev2 session) as an IMAP string: quoted
/// when that is safe, as RFC 9051 §4.3 lets quoted strings carry UTF-8, a literal otherwise.
pub fn utf8_string(out: &mut Vec<u8>, text: &str) {
    let quotable = text.len() < 1024 && !text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
    if !quotable {
        string(out, text.as_bytes());
        return;
    }
    out.push(b'"');
    for &b in text.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_line() {
        let mut out = Vec::new();
        tagged(&mut out, b"a1", Status::No, "[ALERT] nope");
        assert_eq!(out, b"a1 NO [ALERT] nope\r\n");
    }

    #[test]
    fn idle_follows_the_setting() {
        let mut s = Settings::default();
        let mut out = Vec::new();
        let pre_auth = CapabilityContext::PreAuth {
            starttls: false,
            login: true,
        };
        capabilities(&mut out, &s, pre_auth);
        assert!(out.windows(5).any(|w| w == b" IDLE"));
        s.idle_cmd = false;
        out.clear();
        capabilities(&mut out, &s, CapabilityContext::Authenticated);
        assert!(!out.windows(4).any(|w| w == b"IDLE"));
        assert!(!out.windows(5).any(|w| w == b"AUTH="));
    }

    #[test]
    fn strings_quote_or_literal() {
        let mut out = Vec::new();
        string(&mut out, b"a\"b\\c");
        assert_eq!(out, b"\"a\\\"b\\\\c\"");
        out.clear();
        string(&mut out, b"x\r\ny");
        assert_eq!(out, b"{4}\r\nx\r\ny");
        out.clear();
        utf8_string(&mut out, "Entwürfe \"x\"");
        assert_eq!(out, "\"Entwürfe \\\"x\\\"\"".as_bytes());
    }
}
