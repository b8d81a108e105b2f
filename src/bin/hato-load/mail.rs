//! Generated messages: deterministic, so two servers seeded by `seed` hold byte-identical
//! mail, and plain enough that parsing them costs both servers alike.

const WORDS: &[&str] = &[
    "the",
    "meeting",
    "report",
    "quarterly",
    "numbers",
    "attached",
    "please",
    "review",
    "before",
    "friday",
    "thanks",
    "server",
    "migration",
    "mailbox",
    "schedule",
    "budget",
    "draft",
    "team",
    "update",
    "customer",
    "invoice",
    "shipping",
    "notes",
    "agenda",
    "follow",
    "up",
    "on",
    "project",
    "status",
    "question",
    "about",
    "release",
];

/// Seed message `n` (0-based): from 300 bytes to about 4 KB of body, sizes spread by `n`.
pub fn seed_message(n: usize) -> Vec<u8> {
    let body_len = 300 + (n * 7919) % 3700;
    message(
        &format!("sender{}@example.net", n % 17),
        &format!("Seed message {n}: {}", WORDS[n % WORDS.len()]),
        &format!("<seed-{n}@hato-load.example>"),
        1_704_067_200 + n as i64 * 3600,
        body_len,
        n,
    )
}

/// A small message (APPEND in the mixed workload, wake deliveries), told apart by `id`.
pub fn small_message(id: &str, seed: usize) -> Vec<u8> {
    message(
        "load@example.net",
        &format!("Load message {id}"),
        &format!("<{id}@hato-load.example>"),
        1_735_689_600 + (seed % 100_000) as i64,
        400 + seed % 600,
        seed,
    )
}

fn message(
    from: &str,
    subject: &str,
    message_id: &str,
    unix_time: i64,
    body_len: usize,
    salt: usize,
) -> Vec<u8> {
    let date = chrono::DateTime::from_timestamp(unix_time, 0)
        .map(|d| d.to_rfc2822())
        .unwrap_or_default();
    let mut text = format!(
        "From: {from}\r\nTo: bench@example.com\r\nSubject: {subject}\r\nDate: {date}\r\n\
         Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    );
    let body_start = text.len();
    let mut line = String::new();
    let mut i = salt;
    while text.len() - body_start < body_len {
        let word = WORDS[(i * 31 + salt) % WORDS.len()];
        i += 1;
        if line.len() + word.len() + 1 > 72 {
            text.push_str(&line);
            text.push_str("\r\n");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    text.push_str(&line);
    text.push_str("\r\n");
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_deterministic_and_sized() {
        assert_eq!(seed_message(3), seed_message(3));
        assert_ne!(seed_message(3), seed_message(4));
        for n in 0..50 {
            let m = seed_message(n);
            assert!(m.len() > 300 && m.len() < 5000);
            assert!(m.ends_with(b"\r\n"));
            assert!(!m.windows(3).any(|w| w == b"\n.\r" || w == b"\n.."));
        }
        assert!(small_message("x", 1).len() < 1500);
    }
}
