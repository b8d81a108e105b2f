//! Address list parsing for ENVELOPE, following Dovecot's `message-address.c` with
//! `MESSAGE_ADDRESS_PARSE_FLAG_FILL_MISSING`: broken addresses are kept with placeholder
//! mailbox/domain values (`MISSING_MAILBOX`, `MISSING_DOMAIN`, `SYNTAX_ERROR`), groups become a
//! start marker (`mailbox` = group name, no domain) and an end marker (all fields empty), and
//! RFC 2047 encoded words are left as sent.

use super::rfc822::Parser;

/// One address as written in an ENVELOPE address list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Address {
    pub name: Option<Vec<u8>>,
    pub route: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub domain: Option<Vec<u8>>,
    pub invalid: bool,
}

struct Ctx<'a> {
    p: Parser<'a>,
    out: Vec<Address>,
    addr: Address,
    s: Vec<u8>,
}

impl Ctx<'_> {
    fn add_address(&mut self) {
        self.out.push(std::mem::take(&mut self.addr));
    }

    fn last_comment_len(&self) -> usize {
        self.p.last_comment.as_ref().map_or(0, Vec::len)
    }

    fn parse_nonstrict_dot_atom(&mut self) -> i32 {
        let mut ret = -1;
        loop {
            while self.p.cur() == b'.' {
                self.s.push(b'.');
                self.p.pos += 1;
                if self.p.at_end() {
                    return 0;
                }
                ret = 1;
            }
            if self.p.cur() == b'@' {
                break;
            }
            ret = self.p.parse_atom(&mut self.s);
            if !(ret > 0 && self.p.cur() == b'.') {
                break;
            }
        }
        ret
    }

    fn parse_local_part(&mut self) -> i32 {
        self.s.clear();
        let ret = if self.p.cur() == b'"' {
            self.p.parse_quoted_string(&mut self.s)
        } else {
            self.parse_nonstrict_dot_atom()
        };
        if ret < 0 {
            return -1;
        }
        self.addr.mailbox = Some(self.s.clone());
        ret
    }

    fn parse_domain(&mut self) -> i32 {
        self.s.clear();
        let ret = self.p.parse_domain(&mut self.s);
        if ret < 0 {
            return -1;
        }
        self.addr.domain = Some(self.s.clone());
        ret
    }

    fn parse_domain_list(&mut self) -> i32 {
        self.s.clear();
        loop {
            if self.p.at_end() {
                return 0;
            }
            if self.p.cur() != b'@' {
                break;
            }
            if !self.s.is_empty() {
                self.s.push(b',');
            }
            self.s.push(b'@');
            let ret = self.p.parse_domain(&mut self.s);
            if ret <= 0 {
                return ret;
            }
            while self.p.skip_lwsp() > 0 && self.p.cur() == b',' {
                self.p.pos += 1;
            }
        }
        self.addr.route = Some(self.s.clone());
        1
    }

    fn parse_angle_addr(&mut self) -> i32 {
        self.p.pos += 1;
        if self.p.skip_lwsp() <= 0 {
            return -1;
        }
        if self.p.cur() == b'@' {
            if self.parse_domain_list() > 0 && self.p.cur() == b':' {
                self.p.pos += 1;
            } else {
                self.addr.route = Some(b"INVALID_ROUTE".to_vec());
                if self.p.at_end() {
                    return -1;
                }
            }
            if self.p.skip_lwsp() <= 0 {
                return -1;
            }
        }
        if self.p.cur() != b'>' {
            if self.parse_local_part() <= 0 {
                return -1;
            }
            if self.p.cur() == b'@' && self.parse_domain() <= 0 {
                return -1;
            }
        }
        if self.p.cur() != b'>' {
            return -1;
        }
        self.p.pos += 1;
        self.p.skip_lwsp()
    }

    fn parse_name_addr(&mut self) -> i32 {
        self.s.clear();
        if self.p.parse_phrase(&mut self.s) <= 0 || self.p.cur() != b'<' {
            return -1;
        }
        self.addr.name = if self.s.is_empty() {
            None
        } else {
            Some(self.s.clone())
        };
        if self.parse_angle_addr() < 0 {
            self.addr.domain = Some(b"SYNTAX_ERROR".to_vec());
            self.addr.invalid = true;
        }
        if self.p.at_end() { 0 } else { 1 }
    }

    fn parse_addr_spec(&mut self) -> i32 {
        if let Some(c) = self.p.last_comment.as_mut() {
            c.clear();
        }
        let quoted_string = self.p.cur() == b'"';
        let mut ret = self.parse_local_part();
        let mut ret2 = -2;
        if ret <= 0 {
            self.addr.invalid = true;
        }
        if ret != 0 && !self.p.at_end() && self.p.cur() == b'@' {
            ret2 = self.parse_domain();
            if ret2 <= 0 {
                ret = ret2;
            }
        }
        if self.last_comment_len() > 0 {
            self.addr.name = self.p.last_comment.clone();
        } else if ret2 == -2 {
            self.s.push(b' ');
            let orig = self.s.len();
            self.p.parse_phrase(&mut self.s);
            if self.s.len() != orig {
                self.addr.mailbox = None;
                self.addr.name = Some(self.s.clone());
            } else if !quoted_string {
                self.addr.domain = Some(Vec::new());
            }
            self.addr.invalid = true;
            ret = -1;
        }
        ret
    }

    fn add_fixed_address(&mut self) {
        if self.addr.mailbox.is_none() {
            self.addr.mailbox = Some(b"MISSING_MAILBOX".to_vec());
            self.addr.invalid = true;
        }
        if self.addr.domain.as_ref().is_none_or(|d| d.is_empty()) {
            self.addr.domain = Some(b"MISSING_DOMAIN".to_vec());
            self.addr.invalid = true;
        }
        self.add_address();
    }

    fn parse_mailbox(&mut self) -> i32 {
        let start = self.p.pos;
        let mut ret = self.parse_name_addr();
        if ret < 0 {
            self.p.pos = start;
            ret = self.parse_addr_spec();
            if self.addr.invalid
                && self.addr.name.is_none()
                && self.addr.mailbox.is_some()
                && self.addr.domain.is_none()
            {
                self.addr.name = self.addr.mailbox.take();
            }
        }
        if ret < 0 {
            self.addr.invalid = true;
        }
        self.add_fixed_address();
        ret
    }

    fn parse_group(&mut self) -> i32 {
        self.s.clear();
        if self.p.parse_phrase(&mut self.s) <= 0 || self.p.cur() != b':' {
            return -1;
        }
        self.p.pos += 1;
        let mut ret = self.p.skip_lwsp();
        if ret <= 0 {
            self.addr.invalid = true;
        }
        self.addr.mailbox = Some(self.s.clone());
        self.add_address();
        if ret > 0 && self.p.cur() != b';' {
            loop {
                self.parse_mailbox();
                if self.p.at_end() || self.p.cur() != b',' {
                    break;
                }
                self.p.pos += 1;
                if self.p.skip_lwsp() <= 0 {
                    ret = -1;
                    break;
                }
            }
        }
        if ret >= 0 {
            if self.p.at_end() || self.p.cur() != b';' {
                ret = -1;
            } else {
                self.p.pos += 1;
                ret = self.p.skip_lwsp();
            }
        }
        if ret < 0 {
            self.addr.invalid = true;
        }
        self.add_address();
        if ret == 0 { 0 } else { 1 }
    }

    fn parse_address(&mut self) -> i32 {
        let start = self.p.pos;
        let ret = self.parse_group();
        if ret >= 0 {
            return ret;
        }
        self.p.pos = start;
        self.parse_mailbox()
    }

    fn parse_address_list(&mut self) {
        loop {
            if self.parse_address() == 0 {
                break;
            }
            if self.p.at_end() || self.p.cur() != b',' {
                break;
            }
            self.p.pos += 1;
            let ret = self.p.skip_lwsp();
            if ret <= 0 {
                if ret < 0 {
                    self.add_fixed_address();
                }
                break;
            }
        }
    }
}

/// Parses an address-list header value (unfolded).
pub(super) fn parse(value: &[u8]) -> Vec<Address> {
    let mut p = Parser::new(value);
    p.last_comment = Some(Vec::new());
    p.nul_replacement = true;
    let mut ctx = Ctx {
        p,
        out: Vec::new(),
        addr: Address::default(),
        s: Vec::new(),
    };
    if ctx.p.skip_lwsp() > 0 {
        ctx.parse_address_list();
    }
    ctx.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(name: Option<&str>, mailbox: Option<&str>, domain: Option<&str>) -> Address {
        Address {
            name: name.map(|s| s.as_bytes().to_vec()),
            route: None,
            mailbox: mailbox.map(|s| s.as_bytes().to_vec()),
            domain: domain.map(|s| s.as_bytes().to_vec()),
            invalid: false,
        }
    }

    fn strip(mut v: Vec<Address>) -> Vec<Address> {
        for a in &mut v {
            a.invalid = false;
        }
        v
    }

    #[test]
    fn plain_and_named() {
        assert_eq!(
            strip(parse(
                b"\"Doe, John\" <john@example.com>, jane@example.org (Jane D)"
            )),
            vec![
                addr(Some("Doe, John"), Some("john"), Some("example.com")),
                addr(Some("Jane D"), Some("jane"), Some("example.org")),
            ]
        );
    }

    #[test]
    fn groups() {
        assert_eq!(
            strip(parse(b"Friends: a@b, c@d;, undisclosed-recipients:;")),
            vec![
                addr(None, Some("Friends"), None),
                addr(None, Some("a"), Some("b")),
                addr(None, Some("c"), Some("d")),
                addr(None, None, None),
                addr(None, Some("undisclosed-recipients"), None),
                addr(None, None, None),
            ]
        );
    }

    #[test]
    fn broken_addresses_are_filled() {
        assert_eq!(
            strip(parse(b"localonly")),
            vec![addr(None, Some("localonly"), Some("MISSING_DOMAIN"))]
        );
        assert_eq!(
            strip(parse(b"Just A Name")),
            vec![addr(
                Some("Just A Name"),
                Some("MISSING_MAILBOX"),
                Some("MISSING_DOMAIN")
            )]
        );
        let routed = parse(b"<@r1,@r2:u@d>");
        assert_eq!(routed[0].route.as_deref(), Some(&b"@r1,@r2"[..]));
        assert_eq!(routed[0].mailbox.as_deref(), Some(&b"u"[..]));
    }

    #[test]
    fn encoded_words_stay() {
        assert_eq!(
            strip(parse(b"=?utf-8?q?J=C3=B6rg?= <j@x.de>")),
            vec![addr(Some("=?utf-8?q?J=C3=B6rg?="), Some("j"), Some("x.de"))]
        );
    }
}
