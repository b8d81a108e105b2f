//! COMPRESS=DEFLATE (RFC 4978) end to end: a client that deflates what it sends and inflates
//! what it reads (flate2, as a zlib-based client would), against the real server.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use flate2::write::DeflateEncoder;
use flate2::{Compression, Decompress, FlushDecompress};

use common::{Server, Spool};

/// A logged-in session that has switched to COMPRESS=DEFLATE.
struct Compressed {
    writer: DeflateEncoder<TcpStream>,
    reader: BufReader<Inflating>,
}

/// The server's side of the stream, inflated. (flate2's own reader asks the socket for more
/// before it hands out what its inflater still holds, which stalls an interactive protocol.)
struct Inflating {
    stream: TcpStream,
    inflater: Decompress,
    input: Vec<u8>,
    used: usize,
}

impl Read for Inflating {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let (before_in, before_out) = (self.inflater.total_in(), self.inflater.total_out());
            self.inflater
                .decompress(&self.input[self.used..], buf, FlushDecompress::Sync)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            self.used += (self.inflater.total_in() - before_in) as usize;
            let produced = (self.inflater.total_out() - before_out) as usize;
            if produced > 0 {
                return Ok(produced);
            }
            self.input.drain(..self.used);
            self.used = 0;
            let mut more = [0u8; 16 * 1024];
            let n = self.stream.read(&mut more)?;
            if n == 0 {
                return Ok(0);
            }
            self.input.extend_from_slice(&more[..n]);
        }
    }
}

impl Compressed {
    /// Logs in as carol in the clear, then turns compression on.
    fn start(server: &Server) -> Compressed {
        let mut plain = server.connect();
        assert!(plain.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
        let capability = plain.run("c", "CAPABILITY");
        assert!(capability.starts_with("c OK"));
        let answer = plain.run("z", "COMPRESS DEFLATE");
        assert!(answer.starts_with("z OK"), "{answer}");
        Compressed::over(plain.into_stream())
    }

    fn over(stream: TcpStream) -> Compressed {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let reader = BufReader::new(Inflating {
            stream: stream.try_clone().expect("clone"),
            inflater: Decompress::new(false),
            input: Vec::new(),
            used: 0,
        });
        Compressed {
            writer: DeflateEncoder::new(stream, Compression::fast()),
            reader,
        }
    }

    /// Sends bytes as one compressed batch (a sync flush, as clients do per command).
    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
        self.writer.flush().expect("flush");
    }

    fn line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(String::from_utf8_lossy(&buf).trim_end().to_string()),
        }
    }

    fn until_tagged(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut untagged = Vec::new();
        loop {
            let line = self
                .line()
                .unwrap_or_else(|| panic!("closed before {tag}; got {untagged:?}"));
            if line.starts_with(&format!("{tag} ")) {
                return (untagged, line);
            }
            untagged.push(line);
        }
    }

    fn run(&mut self, tag: &str, command: &str) -> String {
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.until_tagged(tag).1
    }
}

#[test]
fn commands_and_answers_travel_compressed() {
    let spool = Spool::new();
    let server = spool.start();
    let mut plain = server.connect();
    // Before login there is no COMPRESS.
    assert!(plain.run("a", "COMPRESS DEFLATE").starts_with("a BAD"));
    assert!(plain.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    let (untagged, ok) = {
        plain.send(b"c CAPABILITY\r\n");
        plain.until_tagged("c")
    };
    assert!(ok.starts_with("c OK"));
    assert!(untagged[0].contains(" COMPRESS=DEFLATE"), "{untagged:?}");
    assert!(plain.run("b", "COMPRESS LZMA").starts_with("b BAD"));
    assert!(plain.run("z", "COMPRESS DEFLATE").starts_with("z OK"));
    let mut z = Compressed::over(plain.into_stream());

    assert_eq!(z.run("n", "NOOP"), "n OK NOOP completed");
    let again = z.run("y", "COMPRESS DEFLATE");
    assert!(again.starts_with("y NO [COMPRESSIONACTIVE]"), "{again}");

    // A large message in and out: the literal arrives in many compressed pieces, and the
    // FETCH answer (streamed storage work) comes back through the deflater.
    let body: String = (0..4000)
        .map(|i| format!("line {i} of a long message body, with some text to squeeze\r\n"))
        .collect();
    let message = format!("Subject: big\r\n\r\n{body}");
    z.send(format!("a APPEND INBOX {{{}}}\r\n", message.len()).as_bytes());
    let go = z.line().expect("continuation");
    assert!(go.starts_with('+'), "{go}");
    for piece in message.as_bytes().chunks(7000) {
        z.send(piece);
    }
    z.send(b"\r\n");
    let (_, appended) = z.until_tagged("a");
    assert!(appended.starts_with("a OK"), "{appended}");
    assert!(z.run("s", "SELECT INBOX").starts_with("s OK"));
    z.send(b"f FETCH 1 BODY[]\r\n");
    let head = z.line().expect("fetch line");
    let size = format!("{{{}}}", message.len());
    assert!(head.ends_with(&size), "{head}");
    let mut literal = vec![0u8; message.len()];
    z.reader.read_exact(&mut literal).expect("literal");
    assert_eq!(literal, message.as_bytes());
    let (_, fetched) = z.until_tagged("f");
    assert!(fetched.starts_with("f OK"), "{fetched}");

    // Many commands in one compressed batch: more than the session answers per turn
    // (MaxPipelined.1), so the rest waits inflated-but-unread and must still be answered.
    let mut batch = Vec::new();
    for i in 0..300 {
        batch.extend_from_slice(format!("p{i} NOOP\r\n").as_bytes());
    }
    z.send(&batch);
    for i in 0..300 {
        let (_, ok) = z.until_tagged(&format!("p{i}"));
        assert!(ok.starts_with(&format!("p{i} OK")), "{ok}");
    }
    assert!(z.run("o", "LOGOUT").starts_with("o OK"));
}

#[test]
fn idle_pushes_are_compressed() {
    let spool = Spool::new();
    let server = spool.start();
    let mut z = Compressed::start(&server);
    assert!(z.run("s", "SELECT INBOX").starts_with("s OK"));
    z.send(b"i IDLE\r\n");
    assert!(z.line().expect("continuation").starts_with('+'));
    let mut other = server.connect();
    assert!(other.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    other.send(b"a APPEND INBOX {12+}\r\nSubject: x\r\n\r\n");
    assert!(other.until_tagged("a").1.starts_with("a OK"));
    assert_eq!(z.line().as_deref(), Some("* 1 EXISTS"));
    z.send(b"DONE\r\n");
    assert!(z.until_tagged("i").1.starts_with("i OK"));
}

#[test]
fn a_decompression_bomb_meets_the_line_limit() {
    let spool = Spool::new();
    let server = spool.start();
    let mut z = Compressed::start(&server);
    // 64 MiB of one byte deflates to about 64 KiB: a line far past MaxLineLength.1.
    let bomb = vec![b'a'; 1 << 20];
    for _ in 0..64 {
        z.writer.write_all(&bomb).expect("send");
    }
    z.writer.write_all(b"\r\n").expect("send");
    let _ = z.writer.flush();
    let answer = z.line().expect("an answer to the bomb");
    assert_eq!(answer, "* BAD Line too long");
    // The session goes on, still compressed.
    assert_eq!(z.run("n", "NOOP"), "n OK NOOP completed");
    // The server is fine and still serves others.
    let mut plain = server.connect();
    assert!(plain.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
}

#[test]
fn a_corrupt_stream_closes_only_its_connection() {
    let spool = Spool::new();
    let server = spool.start();
    let z = Compressed::start(&server);
    let mut raw = z.writer.get_ref().try_clone().expect("clone");
    // After the last sync flush the stream is at a block boundary; 0xff starts a block of the
    // reserved type 3, which no inflater accepts.
    raw.write_all(&[0xff; 32]).expect("send");
    let mut rest = Vec::new();
    assert!(
        raw.read_to_end(&mut rest).is_ok(),
        "the server did not close the connection"
    );
    let mut plain = server.connect();
    assert!(plain.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
}
