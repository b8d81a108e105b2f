//! FETCH response encoding: what the answers clients sync with cost, through the session as the
//! worker drives it (storage work run inline), over a folder of the FETCH oracle's corpus (MIME
//! nesting, encoded words, odd addresses) on a temporary spool whose files sit in the page cache.
//!
//! Throughput is the bytes of the answer per second; the figures are per command.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use hato::imap::harness::Harness;

#[path = "../tests/corpus/mod.rs"]
#[allow(dead_code)]
mod corpus;

/// Messages in the folder.
const MESSAGES: usize = 2_000;

/// The commands, as the clients that send them spell them.
const COMMANDS: &[(&str, &str)] = &[
    // Every reconnect of a client without CONDSTORE: the flags of the whole folder.
    ("uid flags 1:*", "f UID FETCH 1:* (UID FLAGS)\r\n"),
    // Thunderbird's header download for new mail.
    (
        "thunderbird headers 1:500",
        "f UID FETCH 1:500 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n",
    ),
    // Apple Mail and webmail list views.
    (
        "envelope bodystructure 1:500",
        "f FETCH 1:500 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)\r\n",
    ),
    // Opening messages.
    ("body.peek[] 1:100", "f FETCH 1:100 (BODY.PEEK[])\r\n"),
];

fn fetch(c: &mut Criterion) {
    let spool = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::logged_in(spool.path(), "bench");
    h.out.reserve(1 << 20);
    let messages = corpus::random_messages(1, MESSAGES);
    let mut command = Vec::new();
    for (_, raw) in &messages {
        command.clear();
        command.extend_from_slice(format!("p APPEND INBOX {{{}+}}\r\n", raw.len()).as_bytes());
        command.extend_from_slice(raw);
        command.extend_from_slice(b"\r\n");
        h.out.clear();
        h.feed(&command);
        assert!(
            h.out.starts_with(b"p OK"),
            "{}",
            String::from_utf8_lossy(&h.out)
        );
    }
    h.out.clear();
    h.feed(b"s SELECT INBOX\r\n");
    let exists = format!("* {MESSAGES} EXISTS");
    assert!(
        String::from_utf8_lossy(&h.out).contains(&exists),
        "{}",
        String::from_utf8_lossy(&h.out)
    );

    let mut group = c.benchmark_group("fetch");
    for (name, command) in COMMANDS {
        h.out.clear();
        h.feed(command.as_bytes());
        let tail = String::from_utf8_lossy(&h.out[h.out.len().saturating_sub(200)..]).into_owned();
        assert!(tail.contains("\r\nf OK "), "{name}: {tail}");
        group.throughput(Throughput::Bytes(h.out.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                h.out.clear();
                h.feed(std::hint::black_box(command.as_bytes()));
                std::hint::black_box(&h.out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fetch);
criterion_main!(benches);
