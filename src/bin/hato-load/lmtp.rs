//! A minimal LMTP client (RFC 2033): LHLO once, then transactions of MAIL, RCPT..., DATA sent
//! together (LMTP servers must support PIPELINING), one reply per recipient after the data.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::net::{self, Reader, within};

pub struct Lmtp {
    stream: TcpStream,
    reader: Reader,
    timeout: Duration,
}

/// One reply: the code and the text of its last line.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl Lmtp {
    /// Connects, reads the 220 greeting and says LHLO.
    pub async fn connect(server: SocketAddr, timeout: Duration) -> Result<Lmtp> {
        let stream = within(timeout, "LMTP connect", net::connect(server, None))
            .await
            .with_context(|| format!("LMTP {server}"))?;
        let mut lmtp = Lmtp {
            stream,
            reader: Reader::new(),
            timeout,
        };
        let greeting = lmtp.reply().await?;
        if greeting.code != 220 {
            bail!("LMTP greeting: {} {}", greeting.code, greeting.text);
        }
        lmtp.write(b"LHLO hato-load\r\n").await?;
        let lhlo = lmtp.reply().await?;
        if lhlo.code != 250 {
            bail!("LHLO: {} {}", lhlo.code, lhlo.text);
        }
        Ok(lmtp)
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        within(self.timeout, "LMTP write", self.stream.write_all(bytes)).await
    }

    /// One (possibly multi-line, `250-...`) reply.
    async fn reply(&mut self) -> io::Result<Reply> {
        let limit = self.timeout;
        within(limit, "LMTP reply", async {
            loop {
                let line = self.reader.next(&mut self.stream).await?;
                let code = line
                    .get(..3)
                    .and_then(|c| std::str::from_utf8(c).ok()?.parse().ok())
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("LMTP reply: {}", String::from_utf8_lossy(line)),
                        )
                    })?;
                if line.get(3) != Some(&b'-') {
                    let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default());
                    return Ok(Reply {
                        code,
                        text: text.into_owned(),
                    });
                }
            }
        })
        .await
    }

    /// Delivers `message` (CRLF lines, without the final dot) to `recipients`. `sent` is
    /// called with the moment the final `.` was written, before any reply is read (the wake
    /// scenario times from there). Returns one reply per recipient; an error when the
    /// transaction failed as a whole.
    pub async fn deliver(
        &mut self,
        recipients: &[String],
        message: &[u8],
        sent: impl FnOnce(Instant),
    ) -> Result<Vec<Reply>> {
        let mut head = String::from("MAIL FROM:<hato-load@example.net>\r\n");
        for r in recipients {
            head.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        head.push_str("DATA\r\n");
        self.write(head.as_bytes()).await?;
        let mail = self.reply().await?;
        let mut accepted = 0;
        let mut replies = Vec::with_capacity(recipients.len());
        for _ in recipients {
            let rcpt = self.reply().await?;
            accepted += usize::from(rcpt.ok());
            replies.push(rcpt);
        }
        let data = self.reply().await?;
        if !mail.ok() {
            bail!("MAIL FROM: {} {}", mail.code, mail.text);
        }
        if data.code != 354 {
            // No recipient was accepted: the server refuses the data; the RCPT replies say why.
            return Ok(replies);
        }
        let mut body = dot_stuff(message);
        body.extend_from_slice(b".\r\n");
        self.write(&body).await?;
        sent(Instant::now());
        let mut results = Vec::with_capacity(accepted);
        for _ in 0..accepted {
            results.push(self.reply().await?);
        }
        // One reply per accepted recipient, in order; refused ones keep their RCPT reply.
        let mut results = results.into_iter();
        Ok(replies
            .into_iter()
            .map(|r| {
                if r.ok() {
                    results.next().unwrap_or(r)
                } else {
                    r
                }
            })
            .collect())
    }

    pub async fn quit(mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply().await;
        }
    }
}

/// The message with a dot doubled at the start of any line (RFC 5321 4.5.2) and a final CRLF.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_are_stuffed() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n");
    }
}
