//! Bytes on an LMTP connection: command lines with a length bound, the DATA stream (dot-stuffing
//! removed, line ends normalised to CRLF, size bound), and replies.
//!
//! Replies are buffered and flushed only when the server is about to wait for input, so a
//! pipelining client (RFC 2920) gets the answers to a whole batch of commands in one write.

use std::io::{self, BufRead, BufReader, Read, Write};

use memchr::memchr;

/// Longest command line kept (RFC 5321 needs 512; longer lines are read to their end and
/// refused). The same bound applies to one piece of a DATA line, but DATA lines may be
/// longer: only the message size is limited.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// One command line read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// A complete line; the buffer holds it without its line end.
    Line,
    /// Longer than the bound: read to its end and dropped.
    TooLong,
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
}

/// How the DATA stream ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DataEnd {
    /// The terminating `.` line was read; the buffer holds the message.
    Complete,
    /// The terminating line was read, but the message was larger than the limit; the buffer
    /// was emptied.
    TooBig,
    /// The peer closed the connection in the middle of the message.
    Eof,
}

pub(crate) struct Wire<R: Read, W: Write> {
    reader: BufReader<R>,
    writer: W,
}

impl<R: Read, W: Write> Wire<R, W> {
    pub fn new(reader: R, writer: W) -> Self {
        Wire {
            reader: BufReader::with_capacity(MAX_LINE, reader),
            writer,
        }
    }

    /// Queues one reply line (CRLF added).
    pub fn reply(&mut self, line: &str) -> io::Result<()> {
        self.writer.write_all(line.as_bytes())?;
        self.writer.write_all(b"\r\n")
    }

    /// Sends what is queued now (used where the peer must see a reply before more input can
    /// arrive, and after each per-recipient reply, which may each take an fsync).
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    /// The buffered input, reading more (after flushing queued replies) when it is empty.
    fn fill(&mut self) -> io::Result<&[u8]> {
        if self.reader.buffer().is_empty() {
            self.writer.flush()?;
        }
        loop {
            match self.reader.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(self.reader.buffer())
    }

    /// Reads into `buf` up to and including the next LF, keeping at most `max` bytes.
    /// Returns `Some(true)` when the line end was read, `Some(false)` when `max` bytes were
    /// taken without one (the rest of the line is still unread), `None` at end of stream.
    fn read_piece(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<bool>> {
        loop {
            let room = max.saturating_sub(buf.len());
            if room == 0 {
                return Ok(Some(false));
            }
            let avail = self.fill()?;
            if avail.is_empty() {
                return Ok(None);
            }
            let window = &avail[..avail.len().min(room)];
            match memchr(b'\n', window) {
                Some(i) => {
                    buf.extend_from_slice(&window[..=i]);
                    self.reader.consume(i + 1);
                    return Ok(Some(true));
                }
                None => {
                    let n = window.len();
                    buf.extend_from_slice(window);
                    self.reader.consume(n);
                }
            }
        }
    }

    /// Reads one command line into `line` (line end removed).
    pub fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<LineRead> {
        line.clear();
        match self.read_piece(line, MAX_LINE)? {
            None => Ok(LineRead::Eof),
            Some(true) => {
                strip_line_end(line);
                Ok(LineRead::Line)
            }
            Some(false) => loop {
                // Too long: skip to the end of the line, keeping nothing.
                line.clear();
                match self.read_piece(line, MAX_LINE)? {
                    None => return Ok(LineRead::Eof),
                    Some(true) => {
                        line.clear();
                        return Ok(LineRead::TooLong);
                    }
                    Some(false) => {}
                }
            },
        }
    }

    /// Reads the message after `354` up to the line holding a single `.`: removes the
    /// dot-stuffing, turns every line end (CRLF or a bare LF) into CRLF, and appends the
    /// result to `out` (after what it already holds). Beyond `limit` bytes the message is read
    /// to its end but not kept (`out` is cut back to what it held before).
    pub fn read_data(&mut self, out: &mut Vec<u8>, limit: u64) -> io::Result<DataEnd> {
        let base = out.len();
        let mut too_big = false;
        let mut line = Vec::new();
        let mut at_line_start = true;
        loop {
            let complete = match self.read_piece(&mut line, MAX_LINE)? {
                None => return Ok(DataEnd::Eof),
                Some(complete) => complete,
            };
            if at_line_start && complete && (line == b".\r\n" || line == b".\n") {
                return Ok(if too_big {
                    DataEnd::TooBig
                } else {
                    DataEnd::Complete
                });
            }
            let start = usize::from(at_line_start && line.first() == Some(&b'.'));
            let mut carry_cr = false;
            let content: &[u8] = if complete {
                strip_line_end(&mut line);
                &line[start..]
            } else if line.last() == Some(&b'\r') {
                // The CR may be half of a CRLF split across pieces: keep it for the next one.
                carry_cr = true;
                &line[start..line.len() - 1]
            } else {
                &line[start..]
            };
            if !too_big {
                let added = content.len() + if complete { 2 } else { 0 };
                if (out.len() - base + added) as u64 > limit {
                    too_big = true;
                    out.truncate(base);
                    out.shrink_to_fit();
                } else {
                    out.extend_from_slice(content);
                    if complete {
                        out.extend_from_slice(b"\r\n");
                    }
                }
            }
            at_line_start = complete;
            line.clear();
            if carry_cr {
                line.push(b'\r');
            }
        }
    }
}

/// Removes a trailing LF and the CR before it, if any.
fn strip_line_end(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its input in pieces of `step` bytes, to split lines anywhere.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn data(input: &[u8], limit: u64, step: usize) -> (DataEnd, Vec<u8>, Vec<u8>) {
        let mut wire = Wire::new(Trickle { data: input, step }, Vec::new());
        let mut out = Vec::new();
        let end = wire.read_data(&mut out, limit).expect("read");
        let mut rest = Vec::new();
        let _ = wire.reader.read_to_end(&mut rest);
        (end, out, rest)
    }

    #[test]
    fn data_unstuffs_and_normalises_line_ends() {
        let input = b"Subject: x\r\n\r\n..leading dot\nbare lf\r\n.\r\nNOOP\r\n";
        for step in [1, 2, 3, 7, 4096] {
            let (end, out, rest) = data(input, 1000, step);
            assert_eq!(end, DataEnd::Complete);
            assert_eq!(
                out, b"Subject: x\r\n\r\n.leading dot\r\nbare lf\r\n",
                "step {step}"
            );
            assert_eq!(rest, b"NOOP\r\n");
        }
    }

    #[test]
    fn data_end_with_bare_lf_and_empty_message() {
        let (end, out, _) = data(b".\n", 10, 1);
        assert_eq!((end, out), (DataEnd::Complete, Vec::new()));
        let (end, out, _) = data(b"a\n.\n", 10, 1);
        assert_eq!((end, out), (DataEnd::Complete, b"a\r\n".to_vec()));
    }

    #[test]
    fn data_keeps_bare_cr_and_eight_bit() {
        let (end, out, _) = data(b"a\rb \xc3\xa9\r\n.\r\n", 100, 1);
        assert_eq!(end, DataEnd::Complete);
        assert_eq!(out, b"a\rb \xc3\xa9\r\n");
    }

    #[test]
    fn data_lines_longer_than_a_piece() {
        let mut input = vec![b'.'];
        input.extend(std::iter::repeat_n(b'x', MAX_LINE * 2 + 5));
        input.extend_from_slice(b"\r\n.\r\n");
        for step in [MAX_LINE - 1, 4096, 1 << 20] {
            let (end, out, _) = data(&input, 1 << 20, step);
            assert_eq!(end, DataEnd::Complete);
            assert_eq!(out.len(), MAX_LINE * 2 + 5 + 2);
            assert!(out.ends_with(b"x\r\n") && out[0] == b'x');
        }
        // A CR at the very end of a piece is still half of the CRLF.
        let mut input = vec![b'y'; MAX_LINE - 1];
        input.extend_from_slice(b"\r\n.\r\n");
        let (end, out, _) = data(&input, 1 << 20, 1 << 20);
        assert_eq!(end, DataEnd::Complete);
        assert_eq!(out.len(), MAX_LINE + 1);
        assert!(out.ends_with(b"y\r\n"));
    }

    #[test]
    fn data_over_the_limit_is_read_to_its_end() {
        let (end, out, rest) = data(b"0123456789\r\nabc\r\n.\r\nQUIT\r\n", 12, 3);
        assert_eq!(end, DataEnd::TooBig);
        assert!(out.is_empty());
        assert_eq!(rest, b"QUIT\r\n");
        let (end, _, _) = data(b"0123456789\r\n.\r\n", 12, 3);
        assert_eq!(end, DataEnd::Complete);
    }

    #[test]
    fn data_cut_short() {
        let (end, _, _) = data(b"abc\r\n.", 100, 1);
        assert_eq!(end, DataEnd::Eof);
    }

    #[test]
    fn command_lines() {
        let mut input = b"NOOP\r\nRSET\n".to_vec();
        input.extend(std::iter::repeat_n(b'A', MAX_LINE + 10));
        input.extend_from_slice(b"\r\nQUIT\r\npartial");
        let mut wire = Wire::new(
            Trickle {
                data: &input,
                step: 5,
            },
            Vec::new(),
        );
        let mut line = Vec::new();
        assert_eq!(wire.read_line(&mut line).expect("1"), LineRead::Line);
        assert_eq!(line, b"NOOP");
        assert_eq!(wire.read_line(&mut line).expect("2"), LineRead::Line);
        assert_eq!(line, b"RSET");
        assert_eq!(wire.read_line(&mut line).expect("3"), LineRead::TooLong);
        assert_eq!(wire.read_line(&mut line).expect("4"), LineRead::Line);
        assert_eq!(line, b"QUIT");
        assert_eq!(wire.read_line(&mut line).expect("5"), LineRead::Eof);
    }

    #[test]
    fn replies_are_flushed_before_waiting_for_input() {
        struct Log(std::rc::Rc<std::cell::RefCell<Vec<String>>>);
        impl Write for Log {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0
                    .borrow_mut()
                    .push(format!("w:{}", String::from_utf8_lossy(b)));
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                self.0.borrow_mut().push("flush".into());
                Ok(())
            }
        }
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut wire = Wire::new(&b"A\r\nB\r\n"[..], io::BufWriter::new(Log(log.clone())));
        let mut line = Vec::new();
        wire.read_line(&mut line).expect("a");
        wire.reply("250 a").expect("reply");
        // B is already buffered: the reply to A waits for it.
        wire.read_line(&mut line).expect("b");
        assert_eq!(log.borrow().as_slice(), ["flush"]);
        wire.reply("250 b").expect("reply");
        assert_eq!(wire.read_line(&mut line).expect("eof"), LineRead::Eof);
        assert_eq!(
            log.borrow().as_slice(),
            ["flush", "w:250 a\r\n250 b\r\n", "flush"]
        );
    }
}
