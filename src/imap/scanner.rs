//! Command framing: where one complete IMAP command ends in a byte buffer.
//!
//! An IMAP command is one line, unless it carries literals: a line ending in `{n}` (synchronizing:
//! the server must answer `+` before the client sends the n bytes) or `{n+}` (LITERAL+, RFC 7888:
//! the bytes follow at once) continues after the literal's bytes with more line. The [`Framer`]
//! walks the buffer with `memchr`, never copies it, and remembers how far it has verified so a
//! command that arrives in many reads is not rescanned from the start at every read.
//!
//! Limits are enforced here, before anything is buffered for long: a line longer than
//! `max_line` or a literal larger than `max_literal` puts the framer in a discard state that
//! swallows the rest of that command (counting bytes, buffering none), so the session answers
//! `BAD`/`NO [TOOBIG]` and resynchronises at the next command instead of dying.

use memchr::{memchr, memrchr};

/// Size limits that protect the server from hostile input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line (without its literals), in bytes, CRLF included.
    pub max_line: usize,
    /// Largest literal, in bytes.
    pub max_literal: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 65_536,
            max_literal: 50 * 1024 * 1024,
        }
    }
}

/// What the framer found at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `buf[..len]` is one complete command: its lines, CRLFs and literal bytes.
    Command { len: usize },
    /// The command is not complete yet; keep the bytes and read more.
    Incomplete,
    /// A synchronizing literal `{n}` needs the server's `+` continuation before the client sends
    /// it. Answer it, then keep reading; the framer will not ask again for this literal.
    Continue,
    /// `buf[..consumed]` were thrown away because of a limit; the framer now discards the rest
    /// of that command on its own. For `LineTooLong` and `LiteralTooBig` the dropped bytes
    /// start with the offending command, so its tag can be recovered for the answer.
    /// `consumed` is never 0.
    Rejected { consumed: usize, reason: Rejection },
}

/// Why a command was refused before it was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A line exceeded `max_line`.
    LineTooLong,
    /// A literal exceeded `max_literal`.
    LiteralTooBig,
    /// Bytes of an already rejected command (no answer is owed for these).
    Discarded,
}

/// Discard state after a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Discard {
    #[default]
    No,
    /// Skip this many literal bytes, then the rest of the line they belong to.
    Bytes(u64),
    /// Skip up to and including the next LF; a `{n+}` at its end chains into `Bytes`. The
    /// bytes are dropped as they come, so the end of what was skipped is remembered: the
    /// `{n+}` may arrive split over several reads.
    Line(LiteralTail),
}

/// How far the end of a line seen so far spells a literal announcement, `{n}` or `{n+}` and
/// an optional CR (the LF comes next): what [`trailing_literal`] finds at the LF, computed a
/// piece of the line at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct LiteralTail {
    phase: TailPhase,
    /// The digits' count and value so far.
    digits: u8,
    len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum TailPhase {
    /// The line does not end like a literal announcement.
    #[default]
    Nothing,
    /// `{`
    Open,
    /// `{1`
    Digits,
    /// `{1+`
    Plus,
    /// `{1}` or `{1+}`
    Closed { non_sync: bool },
    /// `{1}\r` or `{1+}\r`
    ClosedCr { non_sync: bool },
}

impl LiteralTail {
    /// The state after `bytes` (a piece of the line, without LF) followed what was seen.
    fn feed(mut self, bytes: &[u8]) -> LiteralTail {
        // Only what follows the last `{` can matter.
        let rest = match memrchr(b'{', bytes) {
            Some(open) => {
                self = LiteralTail::default();
                &bytes[open..]
            }
            None => bytes,
        };
        for &b in rest {
            self = self.step(b);
            if self.phase == TailPhase::Nothing {
                // No `{` follows: nothing can start again.
                break;
            }
        }
        self
    }

    fn step(self, b: u8) -> LiteralTail {
        let phase = match (self.phase, b) {
            (_, b'{') => {
                return LiteralTail {
                    phase: TailPhase::Open,
                    digits: 0,
                    len: 0,
                };
            }
            (TailPhase::Open | TailPhase::Digits, b'0'..=b'9') => {
                // As parse_number: at most 20 digits, no overflow.
                let len = self
                    .len
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(b - b'0')));
                return match len {
                    Some(len) if self.digits < 20 => LiteralTail {
                        phase: TailPhase::Digits,
                        digits: self.digits + 1,
                        len,
                    },
                    _ => LiteralTail::default(),
                };
            }
            (TailPhase::Digits, b'+') => TailPhase::Plus,
            (TailPhase::Digits, b'}') => TailPhase::Closed { non_sync: false },
            (TailPhase::Plus, b'}') => TailPhase::Closed { non_sync: true },
            (TailPhase::Closed { non_sync }, b'\r') => TailPhase::ClosedCr { non_sync },
            _ => return LiteralTail::default(),
        };
        LiteralTail { phase, ..self }
    }

    /// The literal announced, if the line ends here.
    fn literal(&self) -> Option<LiteralSpec> {
        match self.phase {
            TailPhase::Closed { non_sync } | TailPhase::ClosedCr { non_sync } => {
                Some(LiteralSpec {
                    len: self.len,
                    non_sync,
                })
            }
            _ => None,
        }
    }
}

/// Incremental framer state for one session. Offsets are relative to the start of the
/// current (unfinished) command, which is always the start of the buffer handed in.
#[derive(Debug, Default, Clone)]
pub struct Framer {
    /// Bytes at the front of the command already verified (whole lines plus their literals).
    verified: usize,
    /// Offset where the synchronizing literal we last answered `+` for starts; 0 when none.
    acked: usize,
    discard: Discard,
}

impl Framer {
    /// True when the framer holds no state about a partial command.
    pub fn is_clear(&self) -> bool {
        self.verified == 0 && self.acked == 0 && self.discard == Discard::No
    }

    /// Finds the next frame at the front of `buf`. After `Command` or `Rejected` the caller
    /// drops the consumed bytes from the front of its buffer before calling again; after
    /// `Incomplete` or `Continue` it keeps the bytes and appends what it reads next.
    pub fn next_frame(&mut self, buf: &[u8], limits: &Limits) -> Frame {
        if self.discard != Discard::No {
            return self.discard_some(buf);
        }
        let mut pos = self.verified;
        loop {
            let rest = &buf[pos..];
            let Some(lf) = memchr(b'\n', rest) else {
                if rest.len() > limits.max_line {
                    return self.reject_line(buf, pos);
                }
                self.verified = pos;
                return Frame::Incomplete;
            };
            let line_end = pos + lf + 1;
            if lf + 1 > limits.max_line {
                self.reset();
                // The client sends the bytes of a `{n+}` regardless: swallow them too, or they
                // would be taken for commands (as happened when the line came in one read).
                if let Some(LiteralSpec {
                    len,
                    non_sync: true,
                }) = trailing_literal(&buf[pos..line_end])
                {
                    self.discard = Discard::Bytes(len);
                }
                return Frame::Rejected {
                    consumed: line_end,
                    reason: Rejection::LineTooLong,
                };
            }
            let Some(literal) = trailing_literal(&buf[pos..line_end]) else {
                self.reset();
                return Frame::Command { len: line_end };
            };
            // A command is held whole until it ends, so one chaining literals (MULTIAPPEND,
            // RFC 3502) may hold, all told, what one literal may plus a line: past that it is
            // refused like an oversized literal, and the session goes on.
            let command_total = (line_end as u64).saturating_add(literal.len);
            let command_max = limits.max_literal.saturating_add(limits.max_line as u64);
            if literal.len > limits.max_literal || command_total > command_max {
                self.reset();
                if literal.non_sync {
                    // The client sends the bytes regardless: swallow them without buffering.
                    self.discard = Discard::Bytes(literal.len);
                }
                return Frame::Rejected {
                    consumed: line_end,
                    reason: Rejection::LiteralTooBig,
                };
            }
            // `literal.len` fits within max_literal, which the caller keeps within memory.
            let literal_len = usize::try_from(literal.len).unwrap_or(usize::MAX);
            if !literal.non_sync && self.acked != line_end {
                self.acked = line_end;
                self.verified = pos;
                return Frame::Continue;
            }
            if buf.len() - line_end < literal_len {
                self.verified = pos;
                return Frame::Incomplete;
            }
            pos = line_end + literal_len;
        }
    }

    fn reset(&mut self) {
        *self = Framer::default();
    }

    /// Rejects the whole buffer, whose line starting at `line` has no end yet.
    fn reject_line(&mut self, buf: &[u8], line: usize) -> Frame {
        self.reset();
        self.discard = Discard::Line(LiteralTail::default().feed(&buf[line..]));
        Frame::Rejected {
            consumed: buf.len(),
            reason: Rejection::LineTooLong,
        }
    }

    /// Swallows bytes of a rejected command without keeping them. With nothing to swallow
    /// (an empty buffer) the answer is `Incomplete`: a `Rejected` always consumes something,
    /// so a caller that loops until `Incomplete` cannot spin.
    fn discard_some(&mut self, buf: &[u8]) -> Frame {
        if buf.is_empty() {
            return Frame::Incomplete;
        }
        let mut pos = 0;
        loop {
            match self.discard {
                Discard::No => break,
                Discard::Bytes(n) => {
                    let avail = (buf.len() - pos) as u64;
                    if avail < n {
                        self.discard = Discard::Bytes(n - avail);
                        pos = buf.len();
                        break;
                    }
                    // n <= avail, which is a usize.
                    pos += n as usize;
                    self.discard = Discard::Line(LiteralTail::default());
                }
                Discard::Line(tail) => match memchr(b'\n', &buf[pos..]) {
                    None => {
                        self.discard = Discard::Line(tail.feed(&buf[pos..]));
                        pos = buf.len();
                        break;
                    }
                    Some(lf) => {
                        let tail = tail.feed(&buf[pos..pos + lf]);
                        pos += lf + 1;
                        self.discard = match tail.literal() {
                            Some(lit) if lit.non_sync => Discard::Bytes(lit.len),
                            _ => Discard::No,
                        };
                    }
                },
            }
        }
        Frame::Rejected {
            consumed: pos,
            reason: Rejection::Discarded,
        }
    }
}

/// A literal announced at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteralSpec {
    pub len: u64,
    pub non_sync: bool,
}

/// Recognises `{n}` or `{n+}` right before the line's CRLF (or bare LF).
pub fn trailing_literal(line: &[u8]) -> Option<LiteralSpec> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = memrchr(b'{', inner)?;
    let mut digits = &inner[open + 1..];
    let non_sync = if let Some(d) = digits.strip_suffix(b"+") {
        digits = d;
        true
    } else {
        false
    };
    let len = parse_number(digits)?;
    Some(LiteralSpec { len, non_sync })
}

/// Parses a non-empty run of ASCII digits into a u64, refusing overflow.
pub fn parse_number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_line: 64,
            max_literal: 100,
        }
    }

    #[test]
    fn plain_line_is_one_command() {
        let mut f = Framer::default();
        let buf = b"a1 NOOP\r\nb2 NOOP\r\n";
        assert_eq!(f.next_frame(buf, &limits()), Frame::Command { len: 9 });
        assert!(f.is_clear());
        assert_eq!(
            f.next_frame(&buf[9..], &limits()),
            Frame::Command { len: 9 }
        );
    }

    #[test]
    fn partial_line_is_incomplete() {
        let mut f = Framer::default();
        assert_eq!(f.next_frame(b"a1 NO", &limits()), Frame::Incomplete);
        assert_eq!(f.next_frame(b"a1 NOOP\r", &limits()), Frame::Incomplete);
        assert_eq!(
            f.next_frame(b"a1 NOOP\r\n", &limits()),
            Frame::Command { len: 9 }
        );
    }

    #[test]
    fn sync_literal_asks_for_continuation_once() {
        let mut f = Framer::default();
        let full = b"a LOGIN {4}\r\nuser pw\r\n";
        let head = &full[..13];
        assert_eq!(f.next_frame(head, &limits()), Frame::Continue);
        assert_eq!(f.next_frame(head, &limits()), Frame::Incomplete);
        assert_eq!(f.next_frame(&full[..15], &limits()), Frame::Incomplete);
        assert_eq!(
            f.next_frame(full, &limits()),
            Frame::Command { len: full.len() }
        );
    }

    #[test]
    fn chained_literals_are_limited_as_a_whole() {
        // MULTIAPPEND: each literal is within max_literal (100), but the third takes the
        // command past max_literal + max_line (164); it is refused and the rest swallowed.
        let body = [b'x'; 60];
        let mut buf = b"a APPEND x {60+}\r\n".to_vec();
        for _ in 0..3 {
            buf.extend_from_slice(&body);
            buf.extend_from_slice(b" {60+}\r\n");
        }
        buf.extend_from_slice(&body);
        buf.extend_from_slice(b"\r\nb NOOP\r\n");
        let mut f = Framer::default();
        let Frame::Rejected { consumed, reason } = f.next_frame(&buf, &limits()) else {
            panic!("not rejected");
        };
        assert_eq!(reason, Rejection::LiteralTooBig);
        let mut pos = consumed;
        loop {
            match f.next_frame(&buf[pos..], &limits()) {
                Frame::Rejected {
                    consumed,
                    reason: Rejection::Discarded,
                } => pos += consumed,
                Frame::Command { len } => {
                    assert_eq!(&buf[pos..pos + len], b"b NOOP\r\n");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Two such literals fit.
        let mut ok = b"a APPEND x {60+}\r\n".to_vec();
        ok.extend_from_slice(&body);
        ok.extend_from_slice(b" {60+}\r\n");
        ok.extend_from_slice(&body);
        ok.extend_from_slice(b"\r\n");
        let mut f = Framer::default();
        assert_eq!(
            f.next_frame(&ok, &limits()),
            Frame::Command { len: ok.len() }
        );
    }

    #[test]
    fn literal_split_across_many_reads() {
        let full = b"a LOGIN {3+}\r\nu\r\n {2}\r\npw\r\nb NOOP\r\n";
        let first_len = full.len() - 8;
        let mut f = Framer::default();
        let mut continues = 0;
        let mut result = None;
        for end in 1..=full.len() {
            match f.next_frame(&full[..end], &limits()) {
                Frame::Continue => continues += 1,
                Frame::Incomplete => {}
                Frame::Command { len } => {
                    result = Some(len);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(continues, 1, "only the synchronizing literal needs +");
        assert_eq!(result, Some(first_len));
    }

    #[test]
    fn literal_bytes_may_contain_crlf_and_braces() {
        let full = b"a X {6+}\r\n{1}\r\n\r\n";
        let mut f = Framer::default();
        assert_eq!(
            f.next_frame(full, &limits()),
            Frame::Command { len: full.len() }
        );
    }

    #[test]
    fn overlong_line_is_rejected_and_resynced() {
        let mut f = Framer::default();
        let mut buf = b"a1 NOOP ".to_vec();
        buf.extend(std::iter::repeat_n(b'x', 100));
        match f.next_frame(&buf, &limits()) {
            Frame::Rejected {
                consumed,
                reason: Rejection::LineTooLong,
            } => assert_eq!(consumed, buf.len()),
            other => panic!("unexpected {other:?}"),
        }
        // The rest of that line is discarded, the next command is seen.
        let rest = b"xxxx\r\nb NOOP\r\n";
        assert_eq!(
            f.next_frame(rest, &limits()),
            Frame::Rejected {
                consumed: 6,
                reason: Rejection::Discarded
            }
        );
        assert_eq!(
            f.next_frame(&rest[6..], &limits()),
            Frame::Command { len: 8 }
        );
    }

    #[test]
    fn overlong_complete_line_is_rejected_whole() {
        let mut f = Framer::default();
        let mut buf = vec![b'y'; 80];
        buf.extend_from_slice(b"\r\nb NOOP\r\n");
        assert_eq!(
            f.next_frame(&buf, &limits()),
            Frame::Rejected {
                consumed: 82,
                reason: Rejection::LineTooLong
            }
        );
        assert_eq!(
            f.next_frame(&buf[82..], &limits()),
            Frame::Command { len: 8 }
        );
    }

    #[test]
    fn oversized_sync_literal_is_rejected_without_waiting() {
        let mut f = Framer::default();
        let buf = b"a APPEND INBOX {1000}\r\nb NOOP\r\n";
        assert_eq!(
            f.next_frame(buf, &limits()),
            Frame::Rejected {
                consumed: 23,
                reason: Rejection::LiteralTooBig
            }
        );
        assert_eq!(
            f.next_frame(&buf[23..], &limits()),
            Frame::Command { len: 8 }
        );
    }

    #[test]
    fn oversized_non_sync_literal_is_swallowed() {
        let mut f = Framer::default();
        let mut buf = b"a APPEND INBOX {150+}\r\n".to_vec();
        let head = buf.len();
        buf.extend(std::iter::repeat_n(b'z', 150));
        buf.extend_from_slice(b"\r\nb NOOP\r\n");
        assert_eq!(
            f.next_frame(&buf, &limits()),
            Frame::Rejected {
                consumed: head,
                reason: Rejection::LiteralTooBig
            }
        );
        let mut rest = &buf[head..];
        // Fed in small pieces, the literal and its line end are discarded.
        let mut total = 0;
        while !f.is_clear() {
            let piece = &rest[..rest.len().min(40)];
            match f.next_frame(piece, &limits()) {
                Frame::Rejected {
                    consumed,
                    reason: Rejection::Discarded,
                } => {
                    total += consumed;
                    rest = &rest[consumed..];
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(total, 152);
        assert_eq!(f.next_frame(rest, &limits()), Frame::Command { len: 8 });
    }

    #[test]
    fn nothing_left_to_discard_is_incomplete() {
        // A session loops until Incomplete: a Rejected of 0 bytes here made it spin forever
        // after an overlong line that filled its read exactly (found by cargo fuzz).
        let mut f = Framer::default();
        let buf = [b'x'; 65];
        assert_eq!(
            f.next_frame(&buf, &limits()),
            Frame::Rejected {
                consumed: 65,
                reason: Rejection::LineTooLong
            }
        );
        assert_eq!(f.next_frame(b"", &limits()), Frame::Incomplete);
        assert_eq!(
            f.next_frame(b"x\r\n", &limits()),
            Frame::Rejected {
                consumed: 3,
                reason: Rejection::Discarded
            }
        );
        assert!(f.is_clear());
    }

    #[test]
    fn literal_of_an_overlong_line_is_swallowed_however_it_is_read() {
        // The literal's bytes must not be taken for commands, whether the overlong line comes
        // in one read or its `{n+}` is split over reads (both found by cargo fuzz).
        let mut input = vec![b'a', b' '];
        input.extend([b'x'; 70]);
        input.extend_from_slice(b" {9+}\r\nz LOGOUT\r\nb NOOP\r\n");
        for split in [input.len(), 74, 75, 76, 77, 78] {
            let mut f = Framer::default();
            let mut buf = input[..split].to_vec();
            let mut fed = split;
            let mut frames = Vec::new();
            loop {
                match f.next_frame(&buf, &limits()) {
                    Frame::Incomplete if fed == input.len() => break,
                    Frame::Incomplete => {
                        buf.extend_from_slice(&input[fed..]);
                        fed = input.len();
                    }
                    frame @ (Frame::Command { len } | Frame::Rejected { consumed: len, .. }) => {
                        frames.push((frame, buf.drain(..len).collect::<Vec<u8>>()));
                    }
                    Frame::Continue => panic!("no synchronizing literal here"),
                }
            }
            let commands: Vec<&[u8]> = frames
                .iter()
                .filter(|(frame, _)| matches!(frame, Frame::Command { .. }))
                .map(|(_, bytes)| &bytes[..])
                .collect();
            assert_eq!(commands, [&b"b NOOP\r\n"[..]], "split at {split}");
        }
    }

    #[test]
    fn trailing_literal_forms() {
        assert_eq!(
            trailing_literal(b"a {12}\r\n"),
            Some(LiteralSpec {
                len: 12,
                non_sync: false
            })
        );
        assert_eq!(
            trailing_literal(b"a {0+}\n"),
            Some(LiteralSpec {
                len: 0,
                non_sync: true
            })
        );
        assert_eq!(trailing_literal(b"a {}\r\n"), None);
        assert_eq!(trailing_literal(b"a {x}\r\n"), None);
        assert_eq!(trailing_literal(b"a {99999999999999999999999}\r\n"), None);
        assert_eq!(trailing_literal(b"a 12}\r\n"), None);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` in pieces at `cuts`, as a session does: consumed bytes are dropped from
    /// the front, the rest is kept and extended. Returns the frames seen.
    fn run(input: &[u8], cuts: &[usize], limits: &Limits) -> Vec<Frame> {
        let mut framer = Framer::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut frames = Vec::new();
        let mut fed = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.push(input.len());
        points.sort_unstable();
        for point in points {
            buf.extend_from_slice(&input[fed..point]);
            fed = point;
            loop {
                let frame = framer.next_frame(&buf, limits);
                frames.push(frame);
                match frame {
                    Frame::Command { len } | Frame::Rejected { consumed: len, .. } => {
                        assert!(len <= buf.len(), "frame past the input");
                        buf.drain(..len);
                        if len == 0 {
                            break;
                        }
                    }
                    Frame::Continue => {}
                    Frame::Incomplete => break,
                }
            }
        }
        frames
    }

    proptest! {
        #[test]
        fn literal_tail_read_in_pieces_agrees_with_trailing_literal(
            line in proptest::collection::vec(
                prop_oneof![Just(b'{'), Just(b'}'), Just(b'+'), Just(b'\r'), Just(b'0'), Just(b'9'), Just(b'x')],
                0..40,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (line.len() + 1)).collect();
            points.push(line.len());
            points.sort_unstable();
            let mut tail = LiteralTail::default();
            let mut fed = 0;
            for point in points {
                tail = tail.feed(&line[fed..point]);
                fed = point;
            }
            let mut with_lf = line.clone();
            with_lf.push(b'\n');
            prop_assert_eq!(tail.literal(), trailing_literal(&with_lf));
        }

        #[test]
        fn never_panics_nor_reads_past_input(
            input in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max_line in 2usize..100,
            max_literal in 0u64..200,
        ) {
            run(&input, &cuts, &Limits { max_line, max_literal });
        }

        #[test]
        fn imap_shaped_input_frames_the_same_however_it_is_split(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"a NOOP\r\n".to_vec()),
                    Just(b"b LOGIN {3}\r\nabc {2+}\r\nxy\r\n".to_vec()),
                    Just(b"c X {0}\r\n\r\n".to_vec()),
                    Just(b"d {5}\r\n{1}\r\n\r\n".to_vec()),
                    proptest::collection::vec(prop_oneof![Just(b'{'), Just(b'}'), Just(b'\r'), Just(b'\n'), Just(b'+'), Just(b'9'), Just(b'x')], 0..30),
                ],
                0..12,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let input: Vec<u8> = parts.concat();
            let limits = Limits { max_line: 40, max_literal: 1000 };
            let whole: Vec<Frame> = run(&input, &[], &limits)
                .into_iter()
                .filter(|f| matches!(f, Frame::Command { .. }))
                .collect();
            let split: Vec<Frame> = run(&input, &cuts, &limits)
                .into_iter()
                .filter(|f| matches!(f, Frame::Command { .. }))
                .collect();
            prop_assert_eq!(whole, split);
        }
    }
}
