//! Throughput of the command scanner and parser over a realistic client command stream
//! (the commands Thunderbird, Outlook and mbsync send in a sync session, with literals).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hato::imap::parser::parse_command;
use hato::imap::scanner::{Frame, Framer, Limits};

fn command_stream() -> Vec<u8> {
    let mut s = Vec::new();
    let message = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n".to_string()
        + &"body line of a typical message\r\n".repeat(60);
    for i in 0..200 {
        s.extend_from_slice(format!("a{i}1 NOOP\r\n").as_bytes());
        s.extend_from_slice(format!("a{i}2 UID FETCH 1:* (UID FLAGS)\r\n").as_bytes());
        s.extend_from_slice(
            format!(
                "a{i}3 UID FETCH 4{i} (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n"
            )
            .as_bytes(),
        );
        s.extend_from_slice(format!("a{i}4 UID STORE 4{i} +FLAGS.SILENT (\\Seen)\r\n").as_bytes());
        s.extend_from_slice(format!("a{i}5 IDLE\r\nDONE\r\n").as_bytes());
        s.extend_from_slice(format!("a{i}6 LOGIN {{5+}}\r\nalice \"pass word\"\r\n").as_bytes());
        s.extend_from_slice(
            format!("a{i}7 APPEND Sent (\\Seen) {{{}+}}\r\n", message.len()).as_bytes(),
        );
        s.extend_from_slice(message.as_bytes());
        s.extend_from_slice(b"\r\n");
        s.extend_from_slice(
            format!("a{i}8 STATUS \"INBOX\" (MESSAGES UNSEEN UIDNEXT)\r\n").as_bytes(),
        );
    }
    s
}

fn scan_all(stream: &[u8], limits: &Limits) -> usize {
    let mut framer = Framer::default();
    let mut rest = stream;
    let mut commands = 0;
    loop {
        match framer.next_frame(rest, limits) {
            Frame::Command { len } => {
                if let Ok(cmd) = parse_command(&rest[..len]) {
                    std::hint::black_box(cmd.name);
                }
                commands += 1;
                rest = &rest[len..];
            }
            Frame::Continue => {}
            Frame::Rejected { consumed, .. } => rest = &rest[consumed..],
            Frame::Incomplete => return commands,
        }
    }
}

fn bench(c: &mut Criterion) {
    let stream = command_stream();
    let limits = Limits::default();
    assert_eq!(scan_all(&stream, &limits), 200 * 9);
    let mut group = c.benchmark_group("scanner");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("frame+parse client stream", |b| {
        b.iter(|| scan_all(std::hint::black_box(&stream), &limits))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
