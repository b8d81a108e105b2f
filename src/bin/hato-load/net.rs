//! Sockets and line framing shared by the IMAP and LMTP clients.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `server`, from `source` when given.
///
/// Binding the source address first is what lets one machine open more sessions than one
/// address has ports for: each shard uses its own 127.0.0.x. `IP_BIND_ADDRESS_NO_PORT`
/// defers the choice of the local port from bind() to connect(), where the kernel only
/// needs the whole 4-tuple to be unique and may reuse ports in TIME_WAIT (loopback's
/// default `tcp_tw_reuse`); without it, bind() would take a port for this address alone,
/// and a login loop would run out of them.
pub async fn connect(server: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = source {
        let one: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a c_int option value that outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    let stream = TcpSocket::from_std_stream(socket.into())
        .connect(server)
        .await?;
    // Every command is written whole; do not let Nagle hold one back while an earlier
    // segment is unacknowledged (pipelined NOOPs, LMTP's final dot).
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Which of two futures finished first.
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Runs two futures and returns the first result, dropping the other one (which must
/// therefore be cancel-safe: [`Reader::next`] and timers are). Polls `a` first.
pub async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    })
    .await
}

/// `fut`, or a `TimedOut` error after `limit`.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: no answer within {limit:?}"),
        )),
    }
}

/// Splits a byte stream into CRLF-terminated responses. An IMAP line announcing a literal
/// (`{n}` or `{n+}` at its end) is returned together with the literal's bytes and the rest
/// of the response, as one unit.
#[derive(Default)]
pub struct Reader {
    buf: Vec<u8>,
    /// Start of the bytes not yet returned.
    start: usize,
    /// Length (with its CRLF) of the response returned last, consumed at the next call.
    last: usize,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    /// The next whole response without its final CRLF.
    ///
    /// Cancel-safe: bytes are only appended by `read_buf`, which either reads or does not,
    /// and a response is consumed only when it is complete, so dropping this future (in
    /// [`race`]) loses nothing.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> io::Result<&[u8]> {
        self.start += std::mem::take(&mut self.last);
        loop {
            if let Some(len) = complete(&self.buf[self.start..]) {
                self.last = len;
                return Ok(&self.buf[self.start..self.start + len - 2]);
            }
            if self.start > 0 {
                // Keep the buffer from growing: move the unread tail to the front.
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.reserve(4096);
            if rd.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
        }
    }
}

/// The length of the first complete response in `data`, CRLF included.
fn complete(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let eol = from + memchr::memmem::find(&data[from..], b"\r\n")?;
        match literal_length(&data[from..eol]) {
            Some(n) => from = eol + 2 + n,
            None => return Some(eol + 2),
        }
        if from > data.len() {
            return None;
        }
    }
}

/// `n` when `line` ends with `{n}` or `{n+}`.
fn literal_length(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', inner)?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_literals_are_whole() {
        assert_eq!(complete(b"* OK\r\n"), Some(6));
        assert_eq!(complete(b"* OK"), None);
        let fetch = b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\nt1 OK\r\n";
        assert_eq!(complete(fetch), Some(fetch.len() - 7));
        assert_eq!(complete(b"* 1 FETCH (BODY[] {5}\r\nab\r"), None);
        assert_eq!(complete(b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)"), None);
        assert_eq!(literal_length(b"a {12+}"), Some(12));
        assert_eq!(literal_length(b"a {}"), None);
        assert_eq!(literal_length(b"a {x}"), None);
    }

    #[test]
    fn reader_returns_each_response() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut input: &[u8] = b"* OK hi\r\n* 2 EXISTS\r\n+ idling\r\n";
            let mut r = Reader::new();
            assert_eq!(r.next(&mut input).await.unwrap(), b"* OK hi");
            assert_eq!(r.next(&mut input).await.unwrap(), b"* 2 EXISTS");
            assert_eq!(r.next(&mut input).await.unwrap(), b"+ idling");
            assert!(r.next(&mut input).await.is_err());
        });
    }
}
