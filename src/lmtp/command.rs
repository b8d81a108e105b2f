//! LMTP command lines (RFC 2033, with RFC 5321's syntax): parsing one line into a [`Command`],
//! or into the reply that refuses it. Free of I/O.

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `LHLO <client name>`.
    Lhlo(String),
    /// `MAIL FROM:<sender> [SIZE=n] [BODY=7BIT|8BITMIME]`; `sender` is empty for `<>`.
    Mail {
        sender: String,
        size: Option<u64>,
    },
    /// `RCPT TO:<address>`.
    Rcpt(Address),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
}

/// A recipient address as given in `RCPT TO:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    /// The address as written between the brackets, source route removed (for the
    /// `Delivered-To:` header and the replies).
    pub text: String,
    /// The local part, unquoted.
    pub local: String,
    /// The domain, when there is an `@`.
    pub domain: Option<String>,
}

impl Address {
    /// The user names this address may stand for, most specific first: the whole address
    /// (`bob@example.com`, for passwd-files keyed by address), the local part (`bob`), and the
    /// local part without a `+detail` (`bob+lists` -> `bob`).
    pub fn candidates(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(3);
        if let Some(domain) = &self.domain {
            out.push(format!("{}@{domain}", self.local));
        }
        out.push(self.local.clone());
        if let Some((base, _)) = self.local.split_once('+')
            && !base.is_empty()
        {
            out.push(base.to_string());
        }
        out
    }
}

/// Replies to lines that cannot be parsed (the session goes on after each).
pub(crate) const UNKNOWN: &str = "502 5.5.1 Command not recognized";
pub(crate) const NOT_TEXT: &str = "500 5.5.2 Syntax error: command line is not UTF-8 text";
pub(crate) const EMPTY: &str = "500 5.5.2 Syntax error: empty command line";
pub(crate) const USE_LHLO: &str = "500 5.5.1 This is LMTP: use LHLO, not HELO or EHLO";
const LHLO_SYNTAX: &str = "501 5.5.4 Syntax: LHLO <hostname>";
const MAIL_SYNTAX: &str = "501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=8BITMIME]";
const RCPT_SYNTAX: &str = "501 5.5.4 Syntax: RCPT TO:<address>";
const NO_ARGUMENTS: &str = "501 5.5.4 Syntax error: this command takes no arguments";
const VRFY_SYNTAX: &str = "501 5.5.4 Syntax: VRFY <address>";
const BAD_SIZE: &str = "501 5.5.4 Syntax error in the SIZE parameter";
const BAD_BODY: &str = "501 5.5.4 BODY must be 7BIT or 8BITMIME";
const UNSUPPORTED_PARAMETER: &str = "555 5.5.4 Unsupported MAIL or RCPT parameter";
const BAD_ADDRESS: &str = "501 5.1.3 Bad address syntax";
const NOT_IMPLEMENTED: &str = "502 5.5.1 Command not implemented";

/// Longest address accepted (RFC 5321 allows 256 octets for a path).
pub(crate) const MAX_ADDRESS: usize = 512;

/// Parses one command line (without its line end).
pub(crate) fn parse(line: &[u8]) -> Result<Command, &'static str> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(NOT_TEXT);
    };
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err("500 5.5.2 Syntax error: control characters in the command line");
    }
    let line = line.trim_end_matches([' ', '\t']);
    if line.trim().is_empty() {
        return Err(EMPTY);
    }
    let (verb, rest) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i + 1..].trim_start_matches([' ', '\t'])),
        None => (line, ""),
    };
    let upper = verb.to_ascii_uppercase();
    match upper.as_str() {
        "LHLO" => {
            let name = rest.split([' ', '\t']).next().unwrap_or("");
            if name.is_empty() {
                Err(LHLO_SYNTAX)
            } else {
                Ok(Command::Lhlo(name.to_string()))
            }
        }
        "HELO" | "EHLO" => Err(USE_LHLO),
        "MAIL" => parse_mail(rest),
        "RCPT" => parse_rcpt(rest),
        "DATA" => no_arguments(rest, Command::Data),
        "RSET" => no_arguments(rest, Command::Rset),
        "QUIT" => no_arguments(rest, Command::Quit),
        // NOOP may carry a string, which is ignored (RFC 5321 §4.1.1.9).
        "NOOP" => Ok(Command::Noop),
        "VRFY" => {
            if rest.is_empty() {
                Err(VRFY_SYNTAX)
            } else {
                Ok(Command::Vrfy)
            }
        }
        "STARTTLS" | "AUTH" | "BDAT" | "EXPN" | "HELP" | "ETRN" | "TURN" | "SEND" | "SOML"
        | "SAML" => Err(NOT_IMPLEMENTED),
        _ => Err(UNKNOWN),
    }
}

fn no_arguments(rest: &str, command: Command) -> Result<Command, &'static str> {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(NO_ARGUMENTS)
    }
}

/// `rest` starts with `keyword:` (any case); returns what follows, leading blanks skipped
/// (some clients write `MAIL FROM: <a@b>`).
fn after_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| rest[keyword.len()..].trim_start_matches([' ', '\t']))
}

fn parse_mail(rest: &str) -> Result<Command, &'static str> {
    let args = after_keyword(rest, "FROM:").ok_or(MAIL_SYNTAX)?;
    let (path, params) = split_path(args).ok_or(MAIL_SYNTAX)?;
    let sender = if path.is_empty() {
        String::new()
    } else {
        parse_address(path)?.text
    };
    let mut size = None;
    for param in params.split([' ', '\t']).filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if key.eq_ignore_ascii_case("SIZE") {
            if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BAD_SIZE);
            }
            size = Some(value.parse::<u64>().map_err(|_| BAD_SIZE)?);
        } else if key.eq_ignore_ascii_case("BODY") {
            if !(value.eq_ignore_ascii_case("7BIT") || value.eq_ignore_ascii_case("8BITMIME")) {
                return Err(BAD_BODY);
            }
        } else {
            return Err(UNSUPPORTED_PARAMETER);
        }
    }
    Ok(Command::Mail { sender, size })
}

fn parse_rcpt(rest: &str) -> Result<Command, &'static str> {
    let args = after_keyword(rest, "TO:").ok_or(RCPT_SYNTAX)?;
    let (path, params) = split_path(args).ok_or(RCPT_SYNTAX)?;
    if path.is_empty() {
        return Err(BAD_ADDRESS);
    }
    if params.split([' ', '\t']).any(|p| !p.is_empty()) {
        return Err(UNSUPPORTED_PARAMETER);
    }
    Ok(Command::Rcpt(parse_address(path)?))
}

/// Splits `<path> params` into the text between the brackets and the rest. A path without
/// brackets (a lenient client) is the first word. Quoted strings may hold `>` and blanks.
fn split_path(args: &str) -> Option<(&str, &str)> {
    let Some(inner) = args.strip_prefix('<') else {
        if args.is_empty() {
            return None;
        }
        let end = args.find([' ', '\t']).unwrap_or(args.len());
        return Some((&args[..end], &args[end..]));
    };
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == '>' && !quoted {
            let rest = &inner[i + 1..];
            // Parameters must be separated from the path by a blank.
            if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
                return None;
            }
            return Some((&inner[..i], rest));
        }
    }
    None
}

/// `[@route,@route:]local[@domain]`, the local part possibly a quoted string.
fn parse_address(path: &str) -> Result<Address, &'static str> {
    if path.len() > MAX_ADDRESS {
        return Err(BAD_ADDRESS);
    }
    // A source route (obsolete, RFC 5321 §4.1.2) is accepted and ignored.
    let path = if path.starts_with('@') {
        path.split_once(':').ok_or(BAD_ADDRESS)?.1
    } else {
        path
    };
    if path.is_empty() {
        return Err(BAD_ADDRESS);
    }
    let (local, domain) = if let Some(quoted) = path.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = quoted.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => local.push(chars.next().ok_or(BAD_ADDRESS)?.1),
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => local.push(c),
            }
        }
        let rest = &quoted[end.ok_or(BAD_ADDRESS)?..];
        let domain = match rest.strip_prefix('@') {
            Some(d) => Some(d),
            None if rest.is_empty() => None,
            None => return Err(BAD_ADDRESS),
        };
        (local, domain)
    } else {
        match path.rsplit_once('@') {
            Some((l, d)) => (l.to_string(), Some(d)),
            None => (path.to_string(), None),
        }
    };
    let quoted = path.starts_with('"');
    if local.is_empty() || (!quoted && local.contains([' ', '\t', '"'])) {
        return Err(BAD_ADDRESS);
    }
    let domain = match domain {
        Some(d) if d.is_empty() || d.contains(['@', '"', ' ', '<', '>']) => {
            return Err(BAD_ADDRESS);
        }
        Some(d) => Some(d.to_string()),
        None => None,
    };
    if !quoted && path.contains(['<', '>']) {
        return Err(BAD_ADDRESS);
    }
    Ok(Address {
        text: path.to_string(),
        local,
        domain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(line: &str) -> Address {
        match parse(line.as_bytes()) {
            Ok(Command::Rcpt(a)) => a,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse(b"lhlo mx.example.com"),
            Ok(Command::Lhlo("mx.example.com".into()))
        );
        assert_eq!(parse(b"DaTa"), Ok(Command::Data));
        assert_eq!(parse(b"rset"), Ok(Command::Rset));
        assert_eq!(parse(b"NOOP anything at all"), Ok(Command::Noop));
        assert_eq!(parse(b"QUIT"), Ok(Command::Quit));
        assert_eq!(parse(b"VRFY bob"), Ok(Command::Vrfy));
    }

    #[test]
    fn mail_from_with_parameters() {
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SIZE=1234 BODY=8BITMIME"),
            Ok(Command::Mail {
                sender: "a@b.example".into(),
                size: Some(1234)
            })
        );
        assert_eq!(
            parse(b"mail from: <>"),
            Ok(Command::Mail {
                sender: String::new(),
                size: None
            })
        );
        assert_eq!(
            parse(b"MAIL FROM:<@relay.example:a@b.example>"),
            Ok(Command::Mail {
                sender: "a@b.example".into(),
                size: None
            })
        );
    }

    #[test]
    fn mail_syntax_errors() {
        for line in [
            "MAIL",
            "MAIL TO:<a@b>",
            "MAIL FROM:<a@b",
            "MAIL FROM:<a@b>SIZE=1",
            "MAIL FROM:<a@b> SIZE=x",
            "MAIL FROM:<a@b> SIZE=",
            "MAIL FROM:<a@b> SIZE=99999999999999999999999",
            "MAIL FROM:<a@b> BODY=BINARYMIME",
            "MAIL FROM:<a@>",
        ] {
            let reply = parse(line.as_bytes()).expect_err(line);
            assert!(reply.starts_with("501 "), "{line}: {reply}");
        }
        assert!(
            parse(b"MAIL FROM:<a@b> RET=FULL")
                .expect_err("param")
                .starts_with("555 ")
        );
    }

    #[test]
    fn rcpt_addresses() {
        let a = rcpt("RCPT TO:<carol>");
        assert_eq!(
            (a.text.as_str(), a.local.as_str(), a.domain),
            ("carol", "carol", None)
        );
        let a = rcpt("rcpt to:<Bob+lists@Example.COM>");
        assert_eq!(a.local, "Bob+lists");
        assert_eq!(a.domain.as_deref(), Some("Example.COM"));
        assert_eq!(
            a.candidates(),
            ["Bob+lists@Example.COM", "Bob+lists", "Bob"]
        );
        let a = rcpt(r#"RCPT TO:<"odd \"name\" >"@example.com>"#);
        assert_eq!(a.local, r#"odd "name" >"#);
        assert_eq!(a.domain.as_deref(), Some("example.com"));
        let a = rcpt("RCPT TO:<@a,@b:carol@example.com>");
        assert_eq!(a.text, "carol@example.com");
        let a = rcpt("RCPT TO:carol");
        assert_eq!(a.local, "carol");
    }

    #[test]
    fn rcpt_syntax_errors() {
        for line in [
            "RCPT",
            "RCPT TO:",
            "RCPT TO:<>",
            "RCPT FROM:<a>",
            "RCPT TO:<a@b",
            "RCPT TO:<@route-only>",
            "RCPT TO:<\"unterminated@b>",
        ] {
            let reply = parse(line.as_bytes()).expect_err(line);
            assert!(reply.starts_with("501 "), "{line}: {reply}");
        }
        assert!(
            parse(b"RCPT TO:<a@b> NOTIFY=NEVER")
                .expect_err("param")
                .starts_with("555 ")
        );
    }

    #[test]
    fn bad_lines() {
        assert_eq!(parse(b""), Err(EMPTY));
        assert_eq!(parse(b"   "), Err(EMPTY));
        assert_eq!(parse(b"\xff\xfe"), Err(NOT_TEXT));
        assert!(parse(b"NO\0OP").expect_err("nul").starts_with("500 "));
        assert_eq!(parse(b"EHLO x"), Err(USE_LHLO));
        assert_eq!(parse(b"FROB"), Err(UNKNOWN));
        assert!(parse(b"LHLO").expect_err("lhlo").starts_with("501 "));
        assert!(parse(b"DATA now").expect_err("data").starts_with("501 "));
        assert!(parse(b"STARTTLS").expect_err("tls").starts_with("502 "));
    }
}
