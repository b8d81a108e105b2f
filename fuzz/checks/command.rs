//! Fuzz check for client input: command framing, command and argument parsing, and a whole
//! session. The first input byte picks the limits, the session state and how the rest (the
//! client's bytes) is cut into reads. Shared by `fuzz/fuzz_targets/command.rs` and
//! `tests/fuzz_regressions.rs`.
//!
//! Properties: nothing panics; the framer finds the same commands, continuations and
//! rejections whether the bytes come in one read or one byte at a time; a session answers the
//! same whatever the reads. Storage work (`Step::Work`) is never run: the run stops there.

use std::sync::Arc;

use hato::config::Settings;
use hato::imap::parser::{self, Command, Token};
use hato::imap::scanner::{Frame, Framer, Limits, Rejection};
use hato::imap::sequence::{SequenceSet, write_compact};
use hato::imap::session::{AuthVerdict, Context, Session, Step};
use hato::imap::{CommandName, NoObserver, datetime, fetch, mailbox_name, search};
use hato::store::Store;

/// Checks one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let Some((&config, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_line: [8, 40, 200, 65_536][usize::from(config & 3)],
        max_literal: [0, 10, 100, 1 << 20][usize::from((config >> 2) & 3)],
    };

    let whole = frame(input, &limits, input.len().max(1));
    assert_eq!(frame(input, &limits, 1), whole, "framed byte by byte");
    for event in &whole {
        if let Event::Command(command) = event {
            parse(command);
        }
    }

    let settings = Settings {
        max_line_length: limits.max_line,
        max_literal_size: limits.max_literal,
        ..Settings::default()
    };
    let logged_in = config & 0x10 != 0;
    let whole = converse(input, &settings, logged_in, &[input.len().max(1)]);
    let cuts = match config >> 5 {
        0 => vec![1],
        n => vec![1, usize::from(n), 3, 2 * usize::from(n) + 5, 1, 64],
    };
    let split = converse(input, &settings, logged_in, &cuts);
    let (split, whole) = (comparable(&split, &limits), comparable(&whole, &limits));
    // The session ends when its buffer outgrows a command's limit, which depends on how much
    // of the command was buffered, that is on the reads (and with the small limits here, one
    // read may hold a command past the limit): the answers agree until then.
    let too_big = |text: &str| text.strip_suffix(TOO_BIG).map(str::to_owned);
    match (too_big(&split), too_big(&whole)) {
        (None, None) => assert_eq!(
            split, whole,
            "session answers depend on how the input is cut into reads"
        ),
        (Some(a), None) => assert!(whole.starts_with(&a), "{split:?} vs {whole:?}"),
        (None, Some(b)) => assert!(split.starts_with(&b), "{split:?} vs {whole:?}"),
        (Some(a), Some(b)) => assert!(
            a.starts_with(&b) || b.starts_with(&a),
            "{split:?} vs {whole:?}"
        ),
    }
}

/// How a session that buffered too much of one command ends.
const TOO_BIG: &str = "* BYE [TOOBIG] Command too big\r\n";

/// The answers as text, except that refusals of an overlong line whose tag is itself longer
/// than a line may be untagged: only when all of the line came in one read can its tag be
/// recovered (and is then echoed whole, however long).
fn comparable(answers: &[u8], limits: &Limits) -> String {
    let text = String::from_utf8_lossy(answers);
    let suffix = format!(" BAD Line too long (limit {} bytes)", limits.max_line);
    text.split("\r\n")
        .map(|line| match line.strip_suffix(suffix.as_str()) {
            Some(tag) if tag.len() > limits.max_line => "* BAD Line too long",
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// What the framer reports, without the offsets that depend on how the input was read.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Command(Vec<u8>),
    Continue,
    Rejected(Rejection),
}

/// Frames `input` handed over `step` bytes at a time, the way `Session::process` does.
fn frame(input: &[u8], limits: &Limits, step: usize) -> Vec<Event> {
    let mut framer = Framer::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match framer.next_frame(&buf, limits) {
                Frame::Incomplete => break,
                Frame::Continue => events.push(Event::Continue),
                Frame::Command { len } => {
                    assert!(len > 0 && len <= buf.len(), "command of {len} bytes");
                    events.push(Event::Command(buf.drain(..len).collect()));
                }
                Frame::Rejected { consumed, reason } => {
                    // At least one byte, or a caller looping until Incomplete spins.
                    assert!(
                        consumed > 0 && consumed <= buf.len(),
                        "rejected {consumed} bytes"
                    );
                    let dropped: Vec<u8> = buf.drain(..consumed).collect();
                    let _ = parser::recover_tag(&dropped);
                    if reason != Rejection::Discarded {
                        events.push(Event::Rejected(reason));
                    }
                }
            }
        }
    }
    events
}

/// Parses one framed command, then its arguments in the ways the command handlers do.
fn parse(frame: &[u8]) {
    let Ok(command) = parser::parse_command(frame) else {
        return;
    };
    let _ = CommandName::parse(command.name);
    let mut args = command.args.clone();
    while let Ok(Some(_)) = args.token() {}
    strings(&command);
    let _ = command.args.clone().nstring_list(|_| {});
    let _ = search::parse(&mut command.args.clone());

    // FETCH, SEARCH and the like, also after UID: sequence set, then the rest.
    let mut args = command.args.clone();
    for _ in 0..2 {
        let Ok(atom) = args.atom() else { return };
        if let Ok(set) = SequenceSet::parse(atom) {
            sequence(&set);
        }
        let _ = search::parse(&mut args.clone());
        if let Ok(attrs) = fetch::parse_attrs(&mut args.clone()) {
            let mut name = Vec::new();
            for attr in &attrs {
                fetch::write_item_name(attr, &mut name);
                let _ = attr.section();
            }
            let _ = fetch::sets_seen(&attrs);
        }
    }
}

/// Reads every argument as astring and nstring, and the strings as mailbox names and dates.
fn strings(command: &Command<'_>) {
    let mut args = command.args.clone();
    while let Ok(s) = args.astring() {
        if let Ok(name) = mailbox_name::decode(&s) {
            assert_eq!(mailbox_name::encode(&name).as_bytes(), &s[..]);
        }
        let _ = datetime::parse_date(&s);
        let _ = datetime::parse_date_time(&s);
    }
    let mut args = command.args.clone();
    while let Ok(Some(Token::Atom(_) | Token::String(_))) = args.clone().token() {
        if args.nstring().is_err() {
            break;
        }
    }
}

/// A sequence set's selection agrees with its membership test, and written compactly it
/// selects the same.
fn sequence(set: &SequenceSet) {
    let mut numbers: Vec<u32> = vec![1, 2, 3, 5, 8, 13, 100, 4_000_000_000, u32::MAX];
    for &(a, b) in set.ranges() {
        for bound in [a, b] {
            if let hato::imap::sequence::SeqBound::Number(n) = bound {
                numbers.extend([n.saturating_sub(1), n, n.saturating_add(1)]);
            }
        }
    }
    numbers.sort_unstable();
    numbers.dedup();
    numbers.retain(|&n| n > 0);
    for end in [0, 3, numbers.len()] {
        let sorted = &numbers[..end];
        let largest = sorted.last().copied().unwrap_or(0);
        let selected = set.select(sorted);
        let expected: Vec<u32> = sorted
            .iter()
            .copied()
            .filter(|&n| set.contains(n, largest))
            .collect();
        assert_eq!(selected, expected, "{set:?} over {sorted:?}");
        let mut compact = Vec::new();
        write_compact(&selected, &mut compact);
        if !selected.is_empty() {
            let again = SequenceSet::parse(&compact).expect("compact set parses");
            assert_eq!(again.select(sorted), selected);
        }
    }
}

/// Runs a session over `input`, read in pieces of the sizes in `cuts` (cycled), answering
/// every credential check with `Rejected` and going on after a yield. Stops at storage work or at the end of the session.
/// Returns what the session wrote.
fn converse(input: &[u8], settings: &Settings, logged_in: bool, cuts: &[usize]) -> Vec<u8> {
    let store = Arc::new(Store::new(std::path::Path::new(
        "/nonexistent/hato-fuzz-spool",
    )));
    let mut observer = NoObserver;
    let mut session = Session::new();
    let mut out = Vec::new();
    if logged_in {
        // Under the default limits: the ones being fuzzed may refuse this line.
        let defaults = Settings::default();
        let mut ctx = Context {
            settings: &defaults,
            observer: &mut observer,
            store: &store,
            tls_available: false,
        };
        let step = session.on_input(b"l LOGIN fuzz pw\r\n", &mut ctx, &mut out);
        assert!(matches!(step, Step::Verify(_)), "{step:?}");
        session.finish_auth(AuthVerdict::Accepted("fuzz".into()), &mut ctx, &mut out);
        out.clear();
    }
    let mut ctx = Context {
        settings,
        observer: &mut observer,
        store: &store,
        tls_available: false,
    };
    let mut rest = input;
    for &cut in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(cut.min(rest.len()));
        rest = tail;
        let mut step = session.on_input(piece, &mut ctx, &mut out);
        loop {
            match step {
                Step::NeedInput => break,
                Step::Verify(_) => {
                    session.finish_auth(AuthVerdict::Rejected, &mut ctx, &mut out);
                    step = session.on_input(&[], &mut ctx, &mut out);
                }
                Step::Yield => step = session.on_input(&[], &mut ctx, &mut out),
                Step::Work(_) | Step::Close | Step::StartTls | Step::Compress => return out,
            }
        }
    }
    out
}
