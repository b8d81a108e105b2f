//! A minimal IMAP4rev1 client: enough to log in, select, idle, poll and run the mixed
//! workload, speaking only what every server understands (no extensions but IDLE), so hato
//! and Dovecot receive the same bytes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::net::{self, Reader, within};

/// A tagged answer's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// A tagged answer.
#[derive(Debug, Clone)]
pub struct Tagged {
    pub status: Status,
    /// The whole line, for error messages.
    pub line: String,
}

impl Tagged {
    pub fn ok(&self) -> bool {
        self.status == Status::Ok
    }
}

pub struct Imap {
    pub stream: TcpStream,
    pub reader: Reader,
    tags: u64,
    /// Longest wait for one command's answer.
    pub timeout: Duration,
}

impl Imap {
    /// Connects (from `source`) and reads the greeting, which must be `* OK`.
    pub async fn connect(
        server: SocketAddr,
        source: Option<IpAddr>,
        timeout: Duration,
    ) -> io::Result<Imap> {
        let stream = within(timeout, "connect", net::connect(server, source)).await?;
        let mut imap = Imap {
            stream,
            reader: Reader::new(),
            tags: 0,
            timeout,
        };
        let greeting = within(timeout, "greeting", imap.next()).await?;
        if !greeting.starts_with(b"* OK") {
            return Err(protocol(format!(
                "greeting: {}",
                String::from_utf8_lossy(greeting)
            )));
        }
        Ok(imap)
    }

    /// A fresh tag: `a1`, `a2`, ...
    pub fn tag(&mut self) -> String {
        self.tags += 1;
        format!("a{}", self.tags)
    }

    /// The next response from the server, however long it takes (IDLE waits for this).
    pub async fn next(&mut self) -> io::Result<&[u8]> {
        self.reader.next(&mut self.stream).await
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        within(self.timeout, "write", self.stream.write_all(bytes)).await
    }

    /// Reads responses until the tagged answer for `tag`, handing the others to `untagged`.
    pub async fn until_tagged(
        &mut self,
        tag: &str,
        mut untagged: impl FnMut(&[u8]),
    ) -> io::Result<Tagged> {
        let limit = self.timeout;
        within(limit, tag, async {
            // A BYE is normal before LOGOUT's answer; when the connection ends instead, it
            // says why (e.g. `* BYE [LIMIT]`, a session cap), which beats "closed".
            let mut bye = None;
            loop {
                let line = match self.next().await {
                    Ok(line) => line,
                    Err(e) => {
                        return Err(match bye {
                            Some(bye) => io::Error::new(
                                io::ErrorKind::ConnectionAborted,
                                format!("{tag}: the server closed the connection: {bye}"),
                            ),
                            None => e,
                        });
                    }
                };
                if let Some(tagged) = parse_tagged(line, tag) {
                    return Ok(tagged);
                }
                if is_bye(line) {
                    bye = Some(String::from_utf8_lossy(line).into_owned());
                }
                untagged(line);
            }
        })
        .await
    }

    /// Sends `<tag> <command>` and waits for its tagged answer.
    pub async fn run(&mut self, command: &str, untagged: impl FnMut(&[u8])) -> io::Result<Tagged> {
        let tag = self.tag();
        self.write(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        self.until_tagged(&tag, untagged).await
    }

    /// `LOGIN`, which must succeed.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        let answer = self
            .run(
                &format!("LOGIN {} {}", quote(user), quote(password)),
                |_| {},
            )
            .await
            .with_context(|| format!("LOGIN {user}"))?;
        if !answer.ok() {
            bail!("LOGIN {user}: {}", answer.line);
        }
        Ok(())
    }

    /// `SELECT`, which must succeed; returns the message count (`* n EXISTS`).
    pub async fn select(&mut self, mailbox: &str) -> Result<u32> {
        let mut count = None;
        let answer = self
            .run(&format!("SELECT {}", quote(mailbox)), |line| {
                count = count.or(exists(line));
            })
            .await
            .with_context(|| format!("SELECT {mailbox}"))?;
        if !answer.ok() {
            bail!("SELECT {mailbox}: {}", answer.line);
        }
        count.context("SELECT answered without EXISTS")
    }

    /// Enters IDLE: sends the command and waits for the continuation (`+ idling`). Returns
    /// the tag, which the answer to `DONE` carries.
    pub async fn idle(&mut self) -> Result<String> {
        let tag = self.tag();
        self.write(format!("{tag} IDLE\r\n").as_bytes()).await?;
        let limit = self.timeout;
        within(limit, "IDLE", async {
            loop {
                let line = self.next().await?;
                if line.starts_with(b"+") {
                    return Ok(());
                }
                if let Some(tagged) = parse_tagged(line, &tag) {
                    return Err(protocol(format!("IDLE refused: {}", tagged.line)));
                }
            }
        })
        .await?;
        Ok(tag)
    }

    /// `APPEND <mailbox> (<flags>) {n}` with a synchronizing literal, as most clients send it.
    pub async fn append(
        &mut self,
        mailbox: &str,
        flags: &str,
        message: &[u8],
    ) -> io::Result<Tagged> {
        let tag = self.tag();
        let command = format!(
            "{tag} APPEND {} ({flags}) {{{}}}\r\n",
            quote(mailbox),
            message.len()
        );
        self.write(command.as_bytes()).await?;
        let limit = self.timeout;
        let go_ahead = within(limit, "APPEND", async {
            loop {
                let line = self.next().await?;
                if line.starts_with(b"+") {
                    return Ok(None);
                }
                if let Some(tagged) = parse_tagged(line, &tag) {
                    return Ok(Some(tagged));
                }
            }
        })
        .await?;
        if let Some(refused) = go_ahead {
            return Ok(refused);
        }
        let mut literal = Vec::with_capacity(message.len() + 2);
        literal.extend_from_slice(message);
        literal.extend_from_slice(b"\r\n");
        self.write(&literal).await?;
        self.until_tagged(&tag, |_| {}).await
    }

    /// Waits (up to five seconds) for the server to close the connection after LOGOUT, so
    /// the socket's TIME_WAIT stays on the server's side, as with real clients.
    pub async fn wait_closed(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while self.next().await.is_ok() {}
        })
        .await;
    }
}

fn protocol(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The tagged answer in `line` when it carries `tag`.
pub fn parse_tagged(line: &[u8], tag: &str) -> Option<Tagged> {
    let rest = line.strip_prefix(tag.as_bytes())?.strip_prefix(b" ")?;
    let status = if rest.starts_with(b"OK") {
        Status::Ok
    } else if rest.starts_with(b"NO") {
        Status::No
    } else if rest.starts_with(b"BAD") {
        Status::Bad
    } else {
        return None;
    };
    Some(Tagged {
        status,
        line: String::from_utf8_lossy(line).into_owned(),
    })
}

/// `n` from `* n EXISTS`.
pub fn exists(line: &[u8]) -> Option<u32> {
    let rest = line.strip_prefix(b"* ")?;
    let space = memchr::memchr(b' ', rest)?;
    if !rest[space + 1..].eq_ignore_ascii_case(b"EXISTS") {
        return None;
    }
    std::str::from_utf8(&rest[..space]).ok()?.parse().ok()
}

/// The UID in a `* n FETCH (... UID u ...)` response.
pub fn fetch_uid(line: &[u8]) -> Option<u32> {
    let at = memchr::memmem::find(line, b"UID ")?;
    let digits: Vec<u8> = line[at + 4..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// True for an untagged `BYE` (the server is closing the session).
pub fn is_bye(line: &[u8]) -> bool {
    line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"* BYE")
}

/// An IMAP quoted string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        assert_eq!(exists(b"* 23 EXISTS"), Some(23));
        assert_eq!(exists(b"* 23 RECENT"), None);
        assert_eq!(exists(b"* OK [UIDNEXT 4] x"), None);
        assert_eq!(fetch_uid(b"* 3 FETCH (UID 17 FLAGS (\\Seen))"), Some(17));
        assert_eq!(fetch_uid(b"* 3 FETCH (FLAGS (\\Seen) UID 9)"), Some(9));
        let t = parse_tagged(b"a7 NO [LIMIT] no", "a7").unwrap();
        assert_eq!(t.status, Status::No);
        assert!(parse_tagged(b"a71 OK", "a7").is_none());
        assert!(parse_tagged(b"* OK", "a7").is_none());
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert!(is_bye(b"* BYE [LIMIT] bye"));
    }
}
