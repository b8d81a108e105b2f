//! The PROXY protocol (HAProxy's, versions 1 and 2): how a proxy in front of hato tells it
//! the address of the client it relays.
//!
//! Behind nginx's mail proxy every connection comes from nginx, so the user+IP cap, the login
//! throttle, the logs and `hato who` would all see nginx's address. With `proxy_protocol on;`
//! in its `mail` server block nginx (1.19.8 and later) opens each backend connection with a
//! version 1 line such as `PROXY TCP4 192.0.2.7 10.0.0.11 51234 143\r\n`, then waits for the
//! greeting. nginx has no other way to pass the address to an IMAP backend (its `XCLIENT` is
//! SMTP only, and it sends no `ID`), and the PROXY protocol is what HAProxy and most load
//! balancers speak too, so that is what hato reads.
//!
//! Only peers listed in `ProxyProtocolFrom.1` are read this way ([`is_trusted`]): anyone else
//! could claim any address. A listed peer *must* send the header: a connection that sends
//! something else, a malformed or overlong header, or nothing within [`HEADER_TIMEOUT`], is
//! closed without a greeting (and logged), so a misconfigured proxy is noticed at once instead
//! of every user sharing its address.
//!
//! The header is read before the session exists, with the connection's own readiness waits
//! (never blocking the worker), and without reading a byte past it: [`parse`] says how many
//! more bytes the header needs at least, and no more are asked of the socket. The kernel keeps
//! anything the client sent after the header for the session's first read.
//!
//! The `UNKNOWN` (v1) and `LOCAL` (v2) forms, and v2 addresses that are not TCP over IP
//! (`AF_UNIX`, unspecified), carry no client address: the connection keeps the proxy's.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::time::Duration;

use ipnet::IpNet;
use thiserror::Error;

use super::socket_io;

/// How long a trusted proxy has to send its header. A proxy sends it with the connection's
/// first segment; the bound only matters for a peer that sends nothing (which holds a session
/// place meanwhile, like any connection that has not logged in yet).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest version 1 header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;

/// The shortest version 1 header: `PROXY UNKNOWN\r\n`. Also the first read: no header of either
/// version is shorter, so it never takes a byte of what follows.
const V1_MIN: usize = 15;

/// The version 2 signature, then the version/command byte, the family byte and the length.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;

/// The longest version 2 address block (with its TLVs) accepted. The addresses take at most
/// 216 bytes (`AF_UNIX`); the rest are TLVs (TLS details, a connection id) that hato ignores.
/// A longer header is refused rather than buffered.
const V2_MAX_PAYLOAD: usize = 1024;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The client's address, when the header carries one (not for `UNKNOWN`/`LOCAL`).
    pub(crate) source: Option<SocketAddr>,
}

/// How far [`parse`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The header is not complete: at least this many more bytes are needed (never more than
    /// the header still has, so reading exactly this many never reads past it).
    Need(usize),
    /// The header is complete and `len` bytes long.
    Done { header: Header, len: usize },
}

#[derive(Debug, Error)]
pub(crate) enum ProxyError {
    #[error("the connection does not start with a PROXY protocol header")]
    NotProxy,
    #[error("malformed PROXY v1 header: {0}")]
    MalformedV1(&'static str),
    #[error("malformed PROXY v2 header: {0}")]
    MalformedV2(&'static str),
    #[error("PROXY header longer than {0} bytes")]
    TooLong(usize),
    #[error("the connection closed before its PROXY header was complete")]
    Closed,
    #[error("no complete PROXY header within {} s", HEADER_TIMEOUT.as_secs())]
    Timeout,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Whether connections from `peer` must start with a PROXY header (`ProxyProtocolFrom.1`).
/// An IPv4 peer on an IPv6 listener (`::ffff:10.0.0.5`) matches IPv4 networks.
pub(crate) fn is_trusted(from: &[IpNet], peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    from.iter().any(|net| net.contains(&peer))
}

/// Parses the start of a connection: a complete header, how many bytes it still needs at
/// least, or why it is not a valid one.
pub(crate) fn parse(buf: &[u8]) -> Result<Progress, ProxyError> {
    match buf.first() {
        None => Ok(Progress::Need(V1_MIN)),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

/// Reads the header from a connection's socket, and not one byte more.
pub(crate) async fn read_header(fd: RawFd) -> Result<Header, ProxyError> {
    // Only for the connection's first moments: the longest header accepted.
    let mut buf = vec![0u8; V2_FIXED + V2_MAX_PAYLOAD];
    let mut len = 0;
    loop {
        let need = match parse(&buf[..len])? {
            Progress::Done { header, .. } => return Ok(header),
            Progress::Need(need) => need,
        };
        let end = (len + need).min(buf.len());
        match socket_io::recv(fd, &mut buf[len..end]) {
            Ok(0) => return Err(ProxyError::Closed),
            Ok(got) => len += got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                socket_io::readable(fd).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Version 1: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` or `PROXY UNKNOWN ...\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Progress, ProxyError> {
    const PREFIX: &[u8] = b"PROXY ";
    let known = buf.len().min(PREFIX.len());
    if buf[..known] != PREFIX[..known] {
        return Err(ProxyError::NotProxy);
    }
    let window = &buf[..buf.len().min(V1_MAX)];
    let end = window.iter().position(|&b| b == b'\r' || b == b'\n');
    match end {
        Some(at) if window[at] == b'\n' => Err(ProxyError::MalformedV1("line feed without CR")),
        Some(at) if at + 1 < window.len() => {
            if window[at + 1] != b'\n' {
                return Err(ProxyError::MalformedV1("CR not followed by LF"));
            }
            let header = v1_fields(&window[..at])?;
            Ok(Progress::Done {
                header,
                len: at + 2,
            })
        }
        Some(_) => Ok(Progress::Need(1)),
        None if buf.len() >= V1_MAX => Err(ProxyError::TooLong(V1_MAX)),
        None => {
            if !window.iter().all(|b| (0x20..0x7f).contains(b)) {
                return Err(ProxyError::MalformedV1("not printable ASCII"));
            }
            // The shortest complete header of the protocol named so far.
            let rest = &window[known..];
            let shortest = if rest.starts_with(b"TCP4") {
                "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n".len()
            } else if rest.starts_with(b"TCP6") {
                "PROXY TCP6 :: :: 0 0\r\n".len()
            } else {
                V1_MIN
            };
            // Whatever else, the CRLF is still to come.
            let need = shortest.saturating_sub(buf.len()).max(2);
            Ok(Progress::Need(need.min(V1_MAX - buf.len())))
        }
    }
}

/// The fields of a version 1 line (without its CRLF).
fn v1_fields(line: &[u8]) -> Result<Header, ProxyError> {
    let line = std::str::from_utf8(line)
        .ok()
        .filter(|l| l.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or(ProxyError::MalformedV1("not printable ASCII"))?;
    let mut fields = line.split(' ');
    // The caller checked the "PROXY " prefix.
    fields.next();
    let v6 = match fields.next() {
        Some("TCP4") => false,
        Some("TCP6") => true,
        // The rest of an UNKNOWN line is to be ignored.
        Some("UNKNOWN") => return Ok(Header { source: None }),
        _ => {
            return Err(ProxyError::MalformedV1(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    let rest: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = rest.as_slice() else {
        return Err(ProxyError::MalformedV1(
            "expected source, destination, source port, destination port",
        ));
    };
    let ip = |text: &str| -> Result<IpAddr, ProxyError> {
        let parsed = if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        parsed.map_err(|_| ProxyError::MalformedV1("address does not match the protocol"))
    };
    let port = |text: &str| -> Result<u16, ProxyError> {
        // Decimal digits only (`str::parse` would take a leading `+`).
        if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProxyError::MalformedV1("port is not a number"));
        }
        text.parse()
            .map_err(|_| ProxyError::MalformedV1("port out of range"))
    };
    let source = SocketAddr::new(ip(src)?, port(sport)?);
    ip(dst)?;
    port(dport)?;
    Ok(Header {
        source: Some(source),
    })
}

/// Version 2: the 12-byte signature, version/command, family/transport, a big-endian length,
/// then the address block and TLVs.
fn parse_v2(buf: &[u8]) -> Result<Progress, ProxyError> {
    let known = buf.len().min(V2_SIGNATURE.len());
    if buf[..known] != V2_SIGNATURE[..known] {
        return Err(ProxyError::NotProxy);
    }
    if buf.len() < V2_FIXED {
        return Ok(Progress::Need(V2_FIXED - buf.len()));
    }
    let version_command = buf[12];
    let family = buf[13];
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if version_command >> 4 != 2 {
        return Err(ProxyError::MalformedV2("version is not 2"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => {
            return Err(ProxyError::MalformedV2(
                "command is neither LOCAL nor PROXY",
            ));
        }
    };
    if payload > V2_MAX_PAYLOAD {
        return Err(ProxyError::TooLong(V2_FIXED + V2_MAX_PAYLOAD));
    }
    let len = V2_FIXED + payload;
    if buf.len() < len {
        return Ok(Progress::Need(len - buf.len()));
    }
    let block = &buf[V2_FIXED..len];
    // LOCAL: the proxy's own connection (a health check); whatever the block holds is ignored.
    let source = if local {
        None
    } else {
        match family {
            // TCP over IPv4: 4 + 4 address bytes, 2 + 2 port bytes.
            0x11 => {
                let a = block
                    .get(..12)
                    .ok_or(ProxyError::MalformedV2("IPv4 address block too short"))?;
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                Some(SocketAddr::new(
                    IpAddr::V4(ip),
                    u16::from_be_bytes([a[8], a[9]]),
                ))
            }
            // TCP over IPv6: 16 + 16 address bytes, 2 + 2 port bytes.
            0x21 => {
                let a = block
                    .get(..36)
                    .ok_or(ProxyError::MalformedV2("IPv6 address block too short"))?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[..16]);
                Some(SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(octets)),
                    u16::from_be_bytes([a[32], a[33]]),
                ))
            }
            // Unspecified, or a Unix socket: no client address to use.
            0x00 | 0x31 | 0x32 => None,
            0x12 | 0x22 => return Err(ProxyError::MalformedV2("UDP is not a stream")),
            _ => return Err(ProxyError::MalformedV2("unknown address family")),
        }
    };
    Ok(Progress::Done {
        header: Header { source },
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(input: &[u8]) -> (Option<SocketAddr>, usize) {
        match parse(input) {
            Ok(Progress::Done { header, len }) => (header.source, len),
            other => panic!("{:?}: expected a complete header, got {other:?}", input),
        }
    }

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().expect("socket address"))
    }

    /// Feeds a header the way `read_header` reads it: never more than `Need` asks for. Returns
    /// how many reads it took; panics if the header is over-read or never completes.
    fn feed(input: &[u8]) -> usize {
        let mut len = 0;
        let mut reads = 0;
        loop {
            match parse(&input[..len]) {
                Ok(Progress::Done { len: n, .. }) => {
                    assert_eq!(
                        n, len,
                        "{input:?}: header length differs from what was read"
                    );
                    return reads;
                }
                Ok(Progress::Need(need)) => {
                    assert!(need >= 1);
                    assert!(
                        len + need <= input.len(),
                        "{input:?}: asked for {need} at {len}, past the header"
                    );
                    len += need;
                    reads += 1;
                }
                Err(e) => panic!("{input:?}: {e}"),
            }
        }
    }

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&u16::try_from(block.len()).expect("short").to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.11 51234 143\r\n";
        assert_eq!(done(line), (addr("192.0.2.7:51234"), line.len()));
        let line = b"PROXY TCP6 2001:db8::7 fd00::11 40000 993\r\n";
        assert_eq!(done(line), (addr("[2001:db8::7]:40000"), line.len()));
        // What follows the header is not part of it.
        let mut more = b"PROXY TCP4 192.0.2.7 10.0.0.11 1 2\r\n".to_vec();
        let header_len = more.len();
        more.extend_from_slice(b"a1 CAPABILITY\r\n");
        assert_eq!(done(&more).1, header_len);
    }

    #[test]
    fn v1_unknown_keeps_the_peer() {
        assert_eq!(done(b"PROXY UNKNOWN\r\n"), (None, 15));
        let line = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        assert_eq!(done(line), (None, line.len()));
    }

    #[test]
    fn headers_are_never_over_read() {
        let ipv6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let longest_tcp6 = format!("PROXY TCP6 {ipv6} {ipv6} 65535 65535\r\n");
        let longest = format!("PROXY UNKNOWN {ipv6} {ipv6} 65535 65535\r\n");
        assert_eq!(longest.len(), V1_MAX);
        for line in [
            "PROXY UNKNOWN\r\n",
            "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
            "PROXY TCP4 192.0.2.7 10.0.0.11 51234 143\r\n",
            "PROXY TCP6 :: :: 0 0\r\n",
            "PROXY TCP6 ::1 ::1 1 2\r\n",
            longest_tcp6.as_str(),
            longest.as_str(),
        ] {
            feed(line.as_bytes());
        }
        // A typical nginx header takes a handful of reads, not one per byte.
        assert!(feed(b"PROXY TCP4 192.0.2.7 10.0.0.11 51234 143\r\n") <= 8);
        let block = [[192, 0, 2, 7], [10, 0, 0, 11]].concat();
        feed(&v2(1, 0x11, &[block, vec![0xc8, 0x22, 0, 143]].concat()));
        feed(&v2(0, 0x00, &[]));
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.11 51234\r\n"[..],
            b"PROXY TCP4 192.0.2.7  10.0.0.11 1 2\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.11 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 10.0.0.11 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.11 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.11 +1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.11 1 2 3\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.11 1 2\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.11 1 2\rx",
            b"PROXY UDP4 192.0.2.7 10.0.0.11 1 2\r\n",
            b"PROXY tcp4 192.0.2.7 10.0.0.11 1 2\r\n",
            b"PROXY TCP4 192.0.2.\xff 10.0.0.11 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::MalformedV1(_))),
                "{:?} accepted: {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
    }

    #[test]
    fn not_a_header() {
        for bad in [
            &b"a1 LOGIN alice secret\r\n"[..],
            b"PROXX TCP4",
            b"GET / HTTP/1.0\r\n",
            b"\r\n\r\nQUIT\n",
            b"PRO\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::NotProxy)),
                "{bad:?}: {:?}",
                parse(bad)
            );
        }
        // An incomplete prefix of either version is not yet refused.
        assert_eq!(parse(b"PRO").ok(), Some(Progress::Need(12)));
        assert_eq!(parse(b"\r\n\r\n").ok(), Some(Progress::Need(12)));
    }

    #[test]
    fn overlong_headers() {
        let long = format!("PROXY UNKNOWN {}", "x".repeat(200));
        assert!(matches!(
            parse(long.as_bytes()),
            Err(ProxyError::TooLong(V1_MAX))
        ));
        let big = v2(1, 0x11, &vec![0; V2_MAX_PAYLOAD + 1]);
        assert!(matches!(
            parse(&big[..V2_FIXED]),
            Err(ProxyError::TooLong(_))
        ));
        // TLVs within the bound are skipped.
        let mut block = vec![192, 0, 2, 7, 10, 0, 0, 11, 0x01, 0x00, 0, 143];
        block.extend_from_slice(&[0x04, 0x00, 0x02, 0xab, 0xcd]);
        let with_tlv = v2(1, 0x11, &block);
        assert_eq!(done(&with_tlv), (addr("192.0.2.7:256"), with_tlv.len()));
    }

    #[test]
    fn v2_addresses() {
        let block = [
            &[192, 0, 2, 7][..],
            &[10, 0, 0, 11],
            &51234u16.to_be_bytes(),
            &143u16.to_be_bytes(),
        ]
        .concat();
        let header = v2(1, 0x11, &block);
        assert_eq!(done(&header), (addr("192.0.2.7:51234"), 28));

        let src: Ipv6Addr = "2001:db8::7".parse().expect("ip");
        let dst: Ipv6Addr = "fd00::11".parse().expect("ip");
        let block = [
            &src.octets()[..],
            &dst.octets(),
            &40000u16.to_be_bytes(),
            &993u16.to_be_bytes(),
        ]
        .concat();
        let header = v2(1, 0x21, &block);
        assert_eq!(done(&header), (addr("[2001:db8::7]:40000"), 52));

        // LOCAL (a health check) and AF_UNIX keep the proxy's address.
        assert_eq!(done(&v2(0, 0x11, &[0; 12])).0, None);
        assert_eq!(done(&v2(1, 0x31, &[0; 216])).0, None);
    }

    #[test]
    fn v2_malformed() {
        let short = v2(1, 0x11, &[192, 0, 2, 7]);
        let ipv6_short = v2(1, 0x21, &[0; 12]);
        let udp = v2(1, 0x12, &[0; 12]);
        let family = v2(1, 0x41, &[0; 12]);
        let mut version = v2(1, 0x11, &[0; 12]);
        version[12] = 0x11;
        let mut command = v2(1, 0x11, &[0; 12]);
        command[12] = 0x22;
        for bad in [short, ipv6_short, udp, family, version, command] {
            assert!(
                matches!(parse(&bad), Err(ProxyError::MalformedV2(_))),
                "{bad:?}: {:?}",
                parse(&bad)
            );
        }
    }

    #[test]
    fn trusted_networks() {
        let from: Vec<IpNet> = ["127.0.0.1/32", "10.0.0.0/8", "fd00::/64"]
            .iter()
            .map(|n| n.parse().expect("net"))
            .collect();
        let ip = |t: &str| t.parse::<IpAddr>().expect("ip");
        assert!(is_trusted(&from, ip("127.0.0.1")));
        assert!(!is_trusted(&from, ip("127.0.0.2")));
        assert!(is_trusted(&from, ip("10.200.0.1")));
        assert!(is_trusted(&from, ip("fd00::5")));
        assert!(!is_trusted(&from, ip("fd00:0:0:1::5")));
        // An IPv4 proxy seen through a dual-stack listener.
        assert!(is_trusted(&from, ip("::ffff:10.0.0.5")));
        assert!(!is_trusted(&[], ip("127.0.0.1")));
    }
}
