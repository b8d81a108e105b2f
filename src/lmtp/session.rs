//! One LMTP session (RFC 2033): the command loop, the transaction state and the
//! per-recipient delivery after DATA. Generic over the byte streams, so tests drive it from
//! memory.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use tracing::{info, warn};

use super::command::{self, Address, Command};
use super::recipients::Recipients;
use super::wire::{DataEnd, LineRead, Wire};
use super::{DELIVER_CLIENT_NAME, Via, count_delivery, deliver, trace_headers};
use crate::config::SharedSettings;
use crate::store::{Store, StoreError};

/// Recipients accepted in one transaction (RFC 5321 asks for at least 100).
const MAX_RECIPIENTS: usize = 100;
/// Room kept in front of the message for the trace headers of each copy, so that each
/// recipient's copy is stored from one buffer without copying the message (both addresses are
/// at most [`command::MAX_ADDRESS`] bytes).
const HEADROOM: usize = 2 * command::MAX_ADDRESS + 64;
/// Most memory reserved up front for a message announced with `SIZE=` (larger ones grow).
const MAX_RESERVE: u64 = 64 * 1024 * 1024;
/// Refused command lines after which the session is closed (a client speaking another
/// protocol, or garbage, should not hold a connection slot forever).
const MAX_ERRORS: u32 = 50;

/// What every session of a listener shares.
pub(crate) struct Context {
    pub store: Arc<Store>,
    pub recipients: Recipients,
    pub settings: SharedSettings,
    /// The name in the greeting and the LHLO answer.
    pub hostname: String,
    /// The spool's identity, advertised as `X-HATO-SPOOL` (see [`super::spool_token`]).
    pub spool_token: String,
}

struct Transaction {
    sender: String,
    /// `SIZE=` of MAIL, if given.
    size: Option<u64>,
    recipients: Vec<Recipient>,
}

struct Recipient {
    address: Address,
    user: String,
}

/// Runs the session until QUIT, end of stream, too many errors, or an I/O error (a read
/// timeout among them, which the caller answers with `421`).
pub(crate) fn run<R: Read, W: Write>(ctx: &Context, wire: &mut Wire<R, W>) -> io::Result<()> {
    let host = &ctx.hostname;
    wire.reply(&format!("220 {host} LMTP hato ready"))?;
    let mut line = Vec::new();
    let mut client: Option<String> = None;
    let mut tx: Option<Transaction> = None;
    let mut errors = 0u32;
    loop {
        let parsed = match wire.read_line(&mut line)? {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong => Err("500 5.5.2 Line too long"),
            LineRead::Line => command::parse(&line),
        };
        let command = match parsed {
            Ok(command) => command,
            Err(reply) => {
                wire.reply(reply)?;
                errors += 1;
                if errors >= MAX_ERRORS {
                    wire.reply(&format!(
                        "421 4.7.0 {host} Too many errors, closing connection"
                    ))?;
                    return wire.flush();
                }
                continue;
            }
        };
        let max_size = ctx.settings.load().max_literal_size;
        match command {
            Command::Lhlo(name) => {
                tx = None;
                client = Some(name);
                wire.reply(&format!("250-{host}"))?;
                wire.reply("250-PIPELINING")?;
                wire.reply("250-ENHANCEDSTATUSCODES")?;
                wire.reply("250-8BITMIME")?;
                wire.reply(&format!("250-X-HATO-SPOOL {}", ctx.spool_token))?;
                wire.reply(&format!("250 SIZE {max_size}"))?;
            }
            Command::Mail { sender, size } => {
                if client.is_none() {
                    wire.reply("503 5.5.1 Send LHLO first")?;
                } else if tx.is_some() {
                    wire.reply("503 5.5.1 Sender already given (send RSET first)")?;
                } else if size.is_some_and(|s| s > max_size) {
                    wire.reply("552 5.3.4 Message size exceeds fixed maximum message size")?;
                } else {
                    tx = Some(Transaction {
                        sender,
                        size,
                        recipients: Vec::new(),
                    });
                    wire.reply("250 2.1.0 Sender OK")?;
                }
            }
            Command::Rcpt(address) => {
                let Some(tx) = tx.as_mut() else {
                    wire.reply("503 5.5.1 Send MAIL first")?;
                    continue;
                };
                if tx.recipients.len() >= MAX_RECIPIENTS {
                    wire.reply("452 4.5.3 Too many recipients")?;
                    continue;
                }
                match ctx.recipients.resolve(&address) {
                    Ok(Some(user)) => {
                        wire.reply(&format!("250 2.1.5 <{}> Recipient OK", address.text))?;
                        tx.recipients.push(Recipient { address, user });
                    }
                    Ok(None) => {
                        wire.reply(&format!("550 5.1.1 <{}> User unknown", address.text))?;
                    }
                    Err(e) => {
                        warn!(error = %e, "lmtp: cannot read the passwd-file");
                        wire.reply(&format!(
                            "451 4.3.0 <{}> Temporary user lookup failure",
                            address.text
                        ))?;
                    }
                }
            }
            Command::Data => {
                let Some(current) = tx.take() else {
                    wire.reply("503 5.5.1 Send MAIL first")?;
                    continue;
                };
                if current.recipients.is_empty() {
                    tx = Some(current);
                    wire.reply("503 5.5.1 No valid recipients")?;
                    continue;
                }
                wire.reply("354 Start mail input; end with <CRLF>.<CRLF>")?;
                let reserve = current.size.unwrap_or(0).min(max_size).min(MAX_RESERVE);
                let mut buffer = Vec::with_capacity(HEADROOM + reserve as usize);
                buffer.resize(HEADROOM, 0);
                match wire.read_data(&mut buffer, max_size)? {
                    DataEnd::Eof => return Ok(()),
                    DataEnd::TooBig => {
                        for r in &current.recipients {
                            wire.reply(&format!(
                                "552 5.3.4 <{}> Message too big for system",
                                r.address.text
                            ))?;
                        }
                    }
                    DataEnd::Complete => {
                        let via = if client.as_deref() == Some(DELIVER_CLIENT_NAME) {
                            Via::Deliver
                        } else {
                            Via::Lmtp
                        };
                        deliver_all(ctx, wire, &current, &mut buffer, via)?;
                    }
                }
            }
            Command::Rset => {
                tx = None;
                wire.reply("250 2.0.0 OK")?;
            }
            Command::Noop => wire.reply("250 2.0.0 OK")?,
            Command::Vrfy => wire.reply(
                "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
            )?,
            Command::Quit => {
                wire.reply(&format!("221 2.0.0 {host} closing connection"))?;
                return wire.flush();
            }
        }
    }
}

/// One reply per accepted recipient, in RCPT order, each sent once its copy is durably stored
/// (or failed). A user named twice gets one copy and the same answer twice. `buffer` is
/// [`HEADROOM`] bytes of room followed by the message; each copy's trace headers are written
/// into the end of that room.
fn deliver_all<R: Read, W: Write>(
    ctx: &Context,
    wire: &mut Wire<R, W>,
    tx: &Transaction,
    buffer: &mut [u8],
    via: Via,
) -> io::Result<()> {
    let mut done: HashMap<&str, Outcome> = HashMap::new();
    let mut headers = Vec::with_capacity(HEADROOM);
    for r in &tx.recipients {
        let outcome = match done.get(r.user.as_str()) {
            Some(outcome) => *outcome,
            None => {
                headers.clear();
                trace_headers(&mut headers, &tx.sender, &r.address.text);
                let result = match HEADROOM.checked_sub(headers.len()) {
                    Some(start) => {
                        buffer[start..HEADROOM].copy_from_slice(&headers);
                        deliver(&ctx.store, &r.user, &buffer[start..])
                    }
                    // Cannot happen with addresses within MAX_ADDRESS; copy if it does.
                    None => {
                        let mut copy = headers.clone();
                        copy.extend_from_slice(&buffer[HEADROOM..]);
                        deliver(&ctx.store, &r.user, &copy)
                    }
                };
                count_delivery(via, result.is_ok());
                let outcome = match result {
                    Ok(uid) => {
                        info!(
                            user = r.user.as_str(),
                            uid,
                            bytes = buffer.len() - HEADROOM + headers.len(),
                            via = via.label(),
                            "lmtp: delivered to INBOX"
                        );
                        Outcome::Delivered
                    }
                    Err(e) => {
                        warn!(user = r.user.as_str(), error = %e, "lmtp: delivery failed");
                        Outcome::of_error(&e)
                    }
                };
                done.insert(&r.user, outcome);
                outcome
            }
        };
        wire.reply(&outcome.reply(&r.address.text))?;
        wire.flush()?;
    }
    Ok(())
}

/// What became of one recipient's copy.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Delivered,
    /// The store refuses the user name as a directory (permanent).
    Unavailable,
    /// The copy would take the user over a quota limit (permanent for this message, as
    /// Dovecot answers by default: the sender learns at once instead of after days of
    /// retries; other recipients of the transaction are not affected).
    MailboxFull,
    /// Disk full or over quota (temporary).
    NoSpace,
    /// Any other storage error (temporary).
    Failed,
}

impl Outcome {
    fn of_error(e: &super::LmtpError) -> Outcome {
        match e {
            super::LmtpError::Store(StoreError::InvalidUser(_)) => Outcome::Unavailable,
            super::LmtpError::Store(StoreError::OverQuota) => Outcome::MailboxFull,
            super::LmtpError::Store(s) if s.response_code() == "OVERQUOTA" => Outcome::NoSpace,
            _ => Outcome::Failed,
        }
    }

    fn reply(self, address: &str) -> String {
        match self {
            Outcome::Delivered => format!("250 2.0.0 <{address}> delivered"),
            Outcome::Unavailable => format!("550 5.2.1 <{address}> Mailbox unavailable"),
            Outcome::MailboxFull => format!("552 5.2.2 <{address}> Mailbox full"),
            Outcome::NoSpace => format!("452 4.3.1 <{address}> Insufficient system storage"),
            Outcome::Failed => format!("451 4.3.0 <{address}> Temporary storage failure"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{PasswdFile, Scheme};
    use crate::config::Settings;

    struct Setup {
        _dir: tempfile::TempDir,
        ctx: Context,
    }

    /// Limits for "carol" only.
    struct CarolQuota(crate::store::QuotaLimits);

    impl crate::store::QuotaPolicy for CarolQuota {
        fn limits(&self, user: &str) -> crate::store::QuotaLimits {
            if user == "carol" {
                self.0
            } else {
                crate::store::QuotaLimits::default()
            }
        }
    }

    #[test]
    fn full_mailbox_gets_552_and_other_recipients_250() {
        let s = setup(1 << 20);
        s.ctx
            .store
            .set_quota_policy(Arc::new(CarolQuota(crate::store::QuotaLimits {
                storage: None,
                messages: Some(1),
            })));
        let tx = b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<carol>\r\nRCPT TO:<alice>\r\nDATA\r\nhi\r\n.\r\n";
        let first = session(&s.ctx, tx);
        assert_eq!(
            &first[first.len() - 2..],
            ["250 2.0.0 <carol> delivered", "250 2.0.0 <alice> delivered"]
        );
        let second = session(&s.ctx, tx);
        assert_eq!(
            &second[second.len() - 2..],
            [
                "552 5.2.2 <carol> Mailbox full",
                "250 2.0.0 <alice> delivered"
            ]
        );
        assert_eq!(inbox(&s.ctx, "carol").len(), 1);
        assert_eq!(inbox(&s.ctx, "alice").len(), 2);
    }

    fn setup(max_size: u64) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let passwd = PasswdFile::new(dir.path().join("passwd"));
        for user in ["alice", "carol"] {
            passwd.add_user(user, "pw", Scheme::Plain).expect("add");
        }
        let settings = Settings {
            max_literal_size: max_size,
            ..Settings::default()
        };
        let ctx = Context {
            store: Arc::new(Store::new(dir.path())),
            recipients: Recipients::new(passwd),
            settings: SharedSettings::new(settings),
            hostname: "mx.test".into(),
            spool_token: "0123456789abcdef".into(),
        };
        Setup { _dir: dir, ctx }
    }

    /// Runs a session on `input`; returns the reply lines.
    fn session(ctx: &Context, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        {
            let mut wire = Wire::new(input, &mut out);
            run(ctx, &mut wire).expect("session");
            wire.flush().expect("flush");
        }
        String::from_utf8(out)
            .expect("utf-8")
            .split_terminator("\r\n")
            .map(str::to_string)
            .collect()
    }

    fn inbox(ctx: &Context, user: &str) -> Vec<Vec<u8>> {
        let mailbox = ctx
            .store
            .user(user)
            .expect("user")
            .open("INBOX")
            .expect("inbox");
        mailbox.sync().expect("sync");
        let index = mailbox.snapshot();
        index
            .messages
            .iter()
            .map(|m| mailbox.read(m.uid).expect("read"))
            .collect()
    }

    #[test]
    fn pipelined_delivery_to_two_recipients() {
        let s = setup(1 << 20);
        let replies = session(
            &s.ctx,
            b"LHLO mx.example\r\n\
              MAIL FROM:<sender@example.org> SIZE=40\r\n\
              RCPT TO:<alice@example.com>\r\n\
              RCPT TO:<nobody@example.com>\r\n\
              RCPT TO:<Carol>\r\n\
              DATA\r\n\
              Subject: hi\r\n\r\n..dot\nbody\r\n.\r\n\
              QUIT\r\n",
        );
        assert_eq!(
            replies,
            [
                "220 mx.test LMTP hato ready",
                "250-mx.test",
                "250-PIPELINING",
                "250-ENHANCEDSTATUSCODES",
                "250-8BITMIME",
                "250-X-HATO-SPOOL 0123456789abcdef",
                "250 SIZE 1048576",
                "250 2.1.0 Sender OK",
                "250 2.1.5 <alice@example.com> Recipient OK",
                "550 5.1.1 <nobody@example.com> User unknown",
                "250 2.1.5 <Carol> Recipient OK",
                "354 Start mail input; end with <CRLF>.<CRLF>",
                "250 2.0.0 <alice@example.com> delivered",
                "250 2.0.0 <Carol> delivered",
                "221 2.0.0 mx.test closing connection",
            ]
        );
        assert_eq!(
            inbox(&s.ctx, "alice"),
            [
                b"Return-Path: <sender@example.org>\r\nDelivered-To: <alice@example.com>\r\n\
               Subject: hi\r\n\r\n.dot\r\nbody\r\n"
                    .to_vec()
            ]
        );
        assert_eq!(
            inbox(&s.ctx, "carol"),
            [
                b"Return-Path: <sender@example.org>\r\nDelivered-To: <Carol>\r\n\
               Subject: hi\r\n\r\n.dot\r\nbody\r\n"
                    .to_vec()
            ]
        );
    }

    #[test]
    fn same_user_twice_gets_one_copy_and_two_replies() {
        let s = setup(1 << 20);
        let replies = session(
            &s.ctx,
            b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<carol@a>\r\nRCPT TO:<carol@b>\r\nDATA\r\nx\r\n.\r\n",
        );
        assert_eq!(
            &replies[replies.len() - 2..],
            [
                "250 2.0.0 <carol@a> delivered",
                "250 2.0.0 <carol@b> delivered"
            ]
        );
        let got = inbox(&s.ctx, "carol");
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with(b"Return-Path: <>\r\nDelivered-To: <carol@a>\r\n"));
    }

    #[test]
    fn order_errors_and_bad_lines_keep_the_session() {
        let s = setup(1 << 20);
        let replies = session(
            &s.ctx,
            b"MAIL FROM:<a@b>\r\n\
              LHLO x\r\n\
              RCPT TO:<carol>\r\n\
              DATA\r\n\
              MAIL FROM:<a@b\r\n\
              FROB\r\n\
              EHLO x\r\n\
              \r\n\
              MAIL FROM:<a@b>\r\n\
              MAIL FROM:<a@b>\r\n\
              DATA\r\n\
              RSET\r\n\
              VRFY carol\r\n\
              NOOP\r\n\
              QUIT\r\n",
        );
        let codes: Vec<&str> = replies.iter().map(|r| &r[..4]).collect();
        assert_eq!(
            codes,
            [
                "220 ", "503 ", "250-", "250-", "250-", "250-", "250-", "250 ", "503 ", "503 ",
                "501 ", "502 ", "500 ", "500 ", "250 ", "503 ", "503 ", "250 ", "252 ", "250 ",
                "221 "
            ]
        );
    }

    #[test]
    fn oversized_messages_get_552() {
        let s = setup(20);
        let replies = session(
            &s.ctx,
            b"LHLO x\r\nMAIL FROM:<a@b> SIZE=21\r\nMAIL FROM:<a@b> SIZE=20\r\n\
              RCPT TO:<carol>\r\nRCPT TO:<alice>\r\nDATA\r\n\
              0123456789\r\n0123456789\r\n.\r\nNOOP\r\n",
        );
        let tail: Vec<&str> = replies[7..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "552 5.3.4 Message size exceeds fixed maximum message size",
                "250 2.1.0 Sender OK",
                "250 2.1.5 <carol> Recipient OK",
                "250 2.1.5 <alice> Recipient OK",
                "354 Start mail input; end with <CRLF>.<CRLF>",
                "552 5.3.4 <carol> Message too big for system",
                "552 5.3.4 <alice> Message too big for system",
                "250 2.0.0 OK",
            ]
        );
        assert!(inbox(&s.ctx, "carol").is_empty());
    }

    #[test]
    fn longest_addresses_fit_the_header_room() {
        let s = setup(1 << 20);
        let sender = format!("{}@example.org", "s".repeat(command::MAX_ADDRESS - 12));
        let rcpt = format!("carol+{}@x", "r".repeat(command::MAX_ADDRESS - 8));
        assert_eq!(
            (sender.len(), rcpt.len()),
            (command::MAX_ADDRESS, command::MAX_ADDRESS)
        );
        let input =
            format!("LHLO x\r\nMAIL FROM:<{sender}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\nhi\r\n.\r\n");
        let replies = session(&s.ctx, input.as_bytes());
        assert_eq!(
            replies.last().map(String::as_str),
            Some(format!("250 2.0.0 <{rcpt}> delivered").as_str())
        );
        let expected =
            format!("Return-Path: <{sender}>\r\nDelivered-To: <{rcpt}>\r\nhi\r\n").into_bytes();
        assert_eq!(inbox(&s.ctx, "carol"), [expected]);
    }

    #[test]
    fn too_many_errors_close_the_session() {
        let s = setup(1 << 20);
        let input = b"FROB\r\n".repeat(MAX_ERRORS as usize + 10);
        let replies = session(&s.ctx, &input);
        assert_eq!(replies.len(), 1 + MAX_ERRORS as usize + 1);
        assert!(replies.last().expect("last").starts_with("421 4.7.0 "));
    }

    #[test]
    fn lines_too_long_are_refused() {
        let s = setup(1 << 20);
        let mut input = b"NOOP ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let replies = session(&s.ctx, &input);
        assert_eq!(replies[1..], ["500 5.5.2 Line too long", "250 2.0.0 OK"]);
    }
}
