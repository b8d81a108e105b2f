//! nginx's mail `auth_http` protocol, both ways: the request nginx sends for each login, and
//! the answer headers it understands.
//!
//! nginx sends one `GET <uri> HTTP/1.0` per connection with the login in headers:
//! `Auth-Method` (`plain` for IMAP LOGIN and AUTHENTICATE PLAIN/LOGIN), `Auth-User`,
//! `Auth-Pass`, `Auth-Protocol` (`imap`, `pop3`, `smtp`), `Auth-Login-Attempt` (1, 2, … on
//! one client connection), `Client-IP`, and optionally `Client-Host`, `Auth-SSL*` and the
//! operator's own `auth_http_header`. Since nginx 1.5.6 the user and the password are
//! URL-escaped (`ngx_escape_uri(NGX_ESCAPE_MAIL_AUTH)`: space, `%` and control bytes become
//! `%XX`), so a password can hold any byte, and they are decoded here.
//!
//! The answer is only headers (nginx ignores the status line and the body):
//!
//! * `Auth-Status: OK` with `Auth-Server` (an IP address: nginx does not resolve it) and
//!   `Auth-Port`: nginx connects there and logs in with the client's own user and password;
//! * `Auth-Status: <text>`: the login failed; nginx sends `<tag> NO <text>` to the client. With
//!   `Auth-Wait: <seconds>` it does so after that many seconds and lets the client try again;
//!   without it (or with 0) it closes the connection, which nginx's documentation asks for
//!   after 10-20 attempts (each attempt's memory is kept until the connection ends);
//! * `Auth-Status: WAIT` with `Auth-Wait`: nginx asks again after that many seconds (used for
//!   throttled addresses, so no director thread waits);
//! * `Auth-Error-Code`: the SMTP reply code of a failure; nginx uses it only for SMTP.
//!
//! nginx reads the answer into a 1 KiB buffer; every answer here is far shorter.

use std::fmt::Write as _;
use std::net::IpAddr;

use thiserror::Error;

/// Largest request accepted: nginx's headers are small, though a client certificate
/// (`auth_http_pass_client_cert`) can take a few KiB.
pub const MAX_REQUEST: usize = 32 * 1024;

/// Headers parsed at most (nginx sends about a dozen, plus the operator's own).
const MAX_HEADERS: usize = 64;

/// One login, as nginx asks about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// `Auth-Method`: `plain`, `apop`, `cram-md5`, `external` or `none`.
    pub method: String,
    /// `Auth-User`, decoded (any bytes: it is checked against the passwd-file as UTF-8).
    pub user: Vec<u8>,
    /// `Auth-Pass`, decoded.
    pub password: Vec<u8>,
    /// `Auth-Protocol`: `imap`, `pop3` or `smtp`.
    pub protocol: String,
    /// `Auth-Login-Attempt`: the attempt's number on its client connection (1 when absent).
    pub attempt: u32,
    /// `Client-IP`: the client's address as nginx sees it.
    pub client_ip: Option<IpAddr>,
}

/// Why a request cannot be answered as a login.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("request larger than {MAX_REQUEST} bytes")]
    TooLarge,
    #[error("malformed HTTP request: {0}")]
    Http(#[from] httparse::Error),
    #[error("method {0:?} is not GET")]
    NotGet(String),
    #[error("no {0} header")]
    Missing(&'static str),
    #[error("{0} is not valid (escaping or number)")]
    Invalid(&'static str),
}

/// Parses a request from the bytes received so far: `Ok(None)` while its headers are not
/// complete.
pub fn parse(buf: &[u8]) -> Result<Option<AuthRequest>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf)? {
        httparse::Status::Partial if buf.len() >= MAX_REQUEST => Err(RequestError::TooLarge),
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(_) => {
            let method = request.method.unwrap_or_default();
            if method != "GET" {
                return Err(RequestError::NotGet(method.to_string()));
            }
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value)
            };
            let text = |name: &'static str| -> Result<String, RequestError> {
                let value = header(name).ok_or(RequestError::Missing(name))?;
                std::str::from_utf8(value)
                    .map(|v| v.trim().to_ascii_lowercase())
                    .map_err(|_| RequestError::Invalid(name))
            };
            let escaped = |name: &'static str| -> Result<Vec<u8>, RequestError> {
                let value = header(name).ok_or(RequestError::Missing(name))?;
                unescape(value).ok_or(RequestError::Invalid(name))
            };
            let attempt = match header("Auth-Login-Attempt") {
                None => 1,
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or(RequestError::Invalid("Auth-Login-Attempt"))?,
            };
            let client_ip = match header("Client-IP") {
                None => None,
                Some(v) => Some(
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|v| v.trim().parse::<IpAddr>().ok())
                        .ok_or(RequestError::Invalid("Client-IP"))?,
                ),
            };
            Ok(Some(AuthRequest {
                method: text("Auth-Method")?,
                user: escaped("Auth-User")?,
                password: escaped("Auth-Pass")?,
                protocol: text("Auth-Protocol")?,
                attempt,
                client_ip,
            }))
        }
    }
}

/// Decodes `%XX` escapes; `None` for a `%` not followed by two hex digits (nginx escapes `%`
/// itself, so a bare one means the request was not made by nginx).
fn unescape(value: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let [hi, lo, ..] = tail else {
                return None;
            };
            out.push(hex(*hi)? << 4 | hex(*lo)?);
            rest = &tail[2..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    Some(out)
}

/// What the director tells nginx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Logged in: proxy the client to this node.
    Route { server: IpAddr, port: u16 },
    /// Refused: nginx sends `NO <status>` to the client, after `wait` seconds if given (and
    /// lets it try again), else at once, closing the connection.
    Refuse {
        status: &'static str,
        wait: Option<u64>,
        /// `Auth-Error-Code`, for SMTP.
        smtp_code: Option<&'static str>,
    },
    /// Ask again in this many seconds (a throttled address).
    Retry { wait: u64 },
    /// Not a request this endpoint answers (not nginx, or a broken one).
    BadRequest,
}

impl Answer {
    /// The HTTP response.
    pub fn to_http(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = match self {
            Answer::Route { server, port } => write!(
                out,
                "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: {server}\r\nAuth-Port: {port}\r\n\r\n"
            ),
            Answer::Refuse {
                status,
                wait,
                smtp_code,
            } => {
                let _ = write!(out, "HTTP/1.0 200 OK\r\nAuth-Status: {status}\r\n");
                if let Some(wait) = wait {
                    let _ = write!(out, "Auth-Wait: {wait}\r\n");
                }
                if let Some(code) = smtp_code {
                    let _ = write!(out, "Auth-Error-Code: {code}\r\n");
                }
                write!(out, "\r\n")
            }
            Answer::Retry { wait } => write!(
                out,
                "HTTP/1.0 200 OK\r\nAuth-Status: WAIT\r\nAuth-Wait: {wait}\r\n\r\n"
            ),
            Answer::BadRequest => {
                write!(out, "HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            }
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What nginx 1.22 sends for `a1 LOGIN "bob" "bob pw %1"` from 192.0.2.7.
    const NGINX: &[u8] = b"GET /auth HTTP/1.0\r\n\
        Host: 127.0.0.1\r\n\
        Auth-Method: plain\r\n\
        Auth-User: bob\r\n\
        Auth-Pass: bob%20pw%20%251\r\n\
        Auth-Protocol: imap\r\n\
        Auth-Login-Attempt: 2\r\n\
        Client-IP: 192.0.2.7\r\n\
        Client-Host: [UNAVAILABLE]\r\n\
        X-Auth-Key: secret\r\n\
        \r\n";

    #[test]
    fn parses_nginx_request() {
        let request = parse(NGINX).expect("valid").expect("complete");
        assert_eq!(
            request,
            AuthRequest {
                method: "plain".into(),
                user: b"bob".to_vec(),
                password: b"bob pw %1".to_vec(),
                protocol: "imap".into(),
                attempt: 2,
                client_ip: Some("192.0.2.7".parse().expect("ip")),
            }
        );
    }

    #[test]
    fn incomplete_until_the_empty_line() {
        for cut in [0, 10, NGINX.len() - 2] {
            assert_eq!(parse(&NGINX[..cut]), Ok(None), "cut at {cut}");
        }
        let endless = [b"GET / HTTP/1.0\r\nX: ".as_slice(), &[b'a'; MAX_REQUEST]].concat();
        assert_eq!(parse(&endless), Err(RequestError::TooLarge));
    }

    #[test]
    fn bad_requests() {
        let swap = |from: &str, to: &str| {
            String::from_utf8_lossy(NGINX)
                .replacen(from, to, 1)
                .into_bytes()
        };
        assert_eq!(
            parse(&swap("GET", "POST")),
            Err(RequestError::NotGet("POST".into()))
        );
        assert_eq!(
            parse(&swap("Auth-Pass: bob%20pw%20%251\r\n", "")),
            Err(RequestError::Missing("Auth-Pass"))
        );
        assert_eq!(
            parse(&swap("bob%20pw%20%251", "bob%2")),
            Err(RequestError::Invalid("Auth-Pass"))
        );
        assert_eq!(
            parse(&swap("bob%20pw%20%251", "%zz")),
            Err(RequestError::Invalid("Auth-Pass"))
        );
        assert_eq!(
            parse(&swap("192.0.2.7", "somewhere")),
            Err(RequestError::Invalid("Client-IP"))
        );
        assert_eq!(
            parse(&swap("Attempt: 2", "Attempt: two")),
            Err(RequestError::Invalid("Auth-Login-Attempt"))
        );
        assert!(matches!(
            parse(b"GET / HTTP/1.0\r\nBad Header\r\n\r\n"),
            Err(RequestError::Http(_))
        ));
    }

    #[test]
    fn unescapes_any_byte() {
        assert_eq!(
            unescape(b"a%0D%0Ab%25%ff").as_deref(),
            Some(&b"a\r\nb%\xff"[..])
        );
        assert_eq!(unescape(b"").as_deref(), Some(&b""[..]));
        assert_eq!(unescape(b"%"), None);
        assert_eq!(unescape(b"%4"), None);
        assert_eq!(unescape(b"%g0"), None);
    }

    #[test]
    fn answers() {
        let ok = Answer::Route {
            server: "10.0.0.11".parse().expect("ip"),
            port: 143,
        };
        assert_eq!(
            ok.to_http(),
            "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.11\r\nAuth-Port: 143\r\n\r\n"
        );
        // nginx wants a bare IPv6 address, without brackets.
        let v6 = Answer::Route {
            server: "fd00::11".parse().expect("ip"),
            port: 143,
        };
        assert!(v6.to_http().contains("Auth-Server: fd00::11\r\n"));
        let refuse = Answer::Refuse {
            status: "Invalid login or password",
            wait: Some(2),
            smtp_code: Some("535 5.7.8"),
        };
        assert_eq!(
            refuse.to_http(),
            "HTTP/1.0 200 OK\r\nAuth-Status: Invalid login or password\r\nAuth-Wait: 2\r\n\
             Auth-Error-Code: 535 5.7.8\r\n\r\n"
        );
        assert_eq!(
            Answer::Retry { wait: 3 }.to_http(),
            "HTTP/1.0 200 OK\r\nAuth-Status: WAIT\r\nAuth-Wait: 3\r\n\r\n"
        );
        assert!(Answer::BadRequest.to_http().starts_with("HTTP/1.0 400 "));
    }
}
