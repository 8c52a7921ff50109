//! A minimal HTTP/1.1 client on tokio, for the auth service: one request per connection
//! (`Connection: close`), plain `http://` only.
//!
//! What it promises: the whole exchange (name lookup, connect, request, response) ends within
//! the timeout; it never holds more than [`MAX_HEAD`] bytes of status line and headers and
//! [`MAX_BODY`] bytes of body; a body may come with `Content-Length`, chunked
//! `Transfer-Encoding`, or end at the close. Anything else (another transfer coding, a
//! malformed status line or chunk size) is an error, not a guess. The I/O is async, so a slow
//! or silent auth service costs a waiting task, never a thread.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most bytes of status line and headers read before giving up.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most bytes of body accepted; an auth answer is a few bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// A parsed `http://host[:port][/path][?query]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or address, without the brackets of an IPv6 literal.
    pub host: String,
    /// TCP port; 80 when the URL names none.
    pub port: u16,
    /// Path and query as sent in the request line; at least `/`.
    pub target: String,
    /// The `Host` header: host and, when not 80, port, as written in the URL.
    pub authority: String,
}

impl HttpUrl {
    /// Parses a URL; the error says what is wrong, for a config error message.
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(match url.split_once("://") {
                Some(("https", _)) => "https:// is not supported: use http:// to a service on \
                                       this host or a trusted network"
                    .to_owned(),
                _ => format!("{url:?} is not an http:// URL"),
            });
        };
        if rest.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err("holds spaces or control characters".to_owned());
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if target.contains('#') {
            return Err("a fragment (#...) has no meaning here".to_owned());
        }
        if authority.contains('@') {
            return Err("user information in the URL is not supported: use headers".to_owned());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| "unclosed [ in the host".to_owned())?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("[{addr}] is not an IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("unexpected {p:?} after the host"))?,
                ),
            };
            (addr, port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("names no host".to_owned());
        }
        if !authority.starts_with('[')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(format!("{host:?} is not a host name or address"));
        }
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("{p:?} is not a port (1 to 65535)")),
            },
        };
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        Ok(HttpUrl {
            host: host.to_owned(),
            port,
            target,
            authority: authority.to_owned(),
        })
    }
}

/// What went wrong with an exchange; none of it is an answer from the service.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Name lookup or connect failed (connection refused, no route, unknown host).
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// Reading or writing failed, or the service closed early.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The exchange did not end within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The response is not HTTP/1.x as this client reads it.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// Headers or body over the limits.
    #[error("response too large: {0}")]
    TooLarge(&'static str),
}

/// A response: status code and the (de-chunked) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body, at most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
}

/// One request: `GET url` with `query` appended, or `POST url` with a JSON `body`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Where to.
    pub url: &'a HttpUrl,
    /// `Some(query)` for a GET whose query (already URL-encoded) is appended to the URL's;
    /// None for a POST of `body`.
    pub query: Option<&'a str>,
    /// The JSON body of a POST.
    pub body: &'a [u8],
    /// Extra headers, checked by config validation (no CR or LF).
    pub headers: &'a [(String, String)],
}

impl Request<'_> {
    /// The request's bytes: request line, headers, body.
    pub fn encode(&self) -> Vec<u8> {
        let mut head = String::with_capacity(256);
        let url = self.url;
        match self.query {
            Some(query) => {
                let sep = if url.target.contains('?') { '&' } else { '?' };
                let _ = write!(head, "GET {}{sep}{query} HTTP/1.1\r\n", url.target);
            }
            None => {
                let _ = write!(head, "POST {} HTTP/1.1\r\n", url.target);
            }
        }
        let _ = write!(head, "Host: {}\r\n", url.authority);
        head.push_str(concat!(
            "User-Agent: nanomq/",
            env!("CARGO_PKG_VERSION"),
            "\r\n"
        ));
        head.push_str("Accept: application/json, text/plain\r\nConnection: close\r\n");
        for (name, value) in self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if self.query.is_none() {
            let _ = write!(
                head,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                self.body.len()
            );
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if self.query.is_none() {
            bytes.extend_from_slice(self.body);
        }
        bytes
    }
}

/// Sends `request` on a new connection and reads the response, all within `timeout`.
pub async fn send(request: Request<'_>, timeout: Duration) -> Result<Response, HttpError> {
    tokio::time::timeout(timeout, exchange(request))
        .await
        .unwrap_or(Err(HttpError::Timeout(timeout)))
}

async fn exchange(request: Request<'_>) -> Result<Response, HttpError> {
    let url = request.url;
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| HttpError::Connect(format!("{}:{}", url.host, url.port), e))?;
    let _ = stream.set_nodelay(true);
    stream.write_all(&request.encode()).await?;
    read_response(&mut stream).await
}

/// Reads one response from `stream`, which the server closes after it.
pub async fn read_response<R>(stream: &mut R) -> Result<Response, HttpError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= MAX_HEAD {
            return Err(HttpError::TooLarge("headers over 16 KiB"));
        }
        if read_some(stream, &mut buf, MAX_HEAD).await? == 0 {
            return Err(HttpError::Malformed("closed before the end of the headers"));
        }
    };
    let head = std::str::from_utf8(&buf[..head_end - 4])
        .map_err(|_| HttpError::Malformed("headers are not text"))?;
    let mut lines = head.split("\r\n");
    let status = parse_status(lines.next().unwrap_or_default())?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header line without a colon"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| HttpError::Malformed("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::Malformed("two different Content-Lengths"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(HttpError::Malformed("a transfer coding other than chunked"));
            }
            chunked = true;
        }
    }
    let rest = buf.split_off(head_end);
    let body = if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if chunked {
        read_chunked(stream, rest).await?
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(HttpError::TooLarge("body over 64 KiB"));
        }
        let mut body = rest;
        while body.len() < n {
            if read_some(stream, &mut body, n).await? == 0 {
                return Err(HttpError::Malformed("closed before the end of the body"));
            }
        }
        body.truncate(n);
        body
    } else {
        let mut body = rest;
        loop {
            if body.len() > MAX_BODY {
                return Err(HttpError::TooLarge("body over 64 KiB"));
            }
            if read_some(stream, &mut body, MAX_BODY + 1).await? == 0 {
                break body;
            }
        }
    };
    Ok(Response { status, body })
}

/// `HTTP/1.1 200 OK` -> 200.
fn parse_status(line: &str) -> Result<u16, HttpError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("not an HTTP/1.x status line"));
    }
    let code = parts.next().unwrap_or_default();
    match code.parse::<u16>() {
        Ok(n) if code.len() == 3 && (100..600).contains(&n) => Ok(n),
        _ => Err(HttpError::Malformed("bad status code")),
    }
}

/// Decodes a chunked body, `buffered` being what was read past the headers. Chunk
/// extensions and trailers are read and ignored.
async fn read_chunked<R>(stream: &mut R, mut buffered: Vec<u8>) -> Result<Vec<u8>, HttpError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    // Room for the body, one chunk-size line and the trailers.
    let cap = MAX_BODY + MAX_HEAD;
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = loop {
            if let Some(i) = find(&buffered[at..], b"\r\n") {
                break at + i;
            }
            if buffered.len() - at > 1024 {
                return Err(HttpError::Malformed("chunk size line too long"));
            }
            if read_some(stream, &mut buffered, cap).await? == 0 {
                return Err(HttpError::Malformed("closed inside a chunked body"));
            }
        };
        let line = std::str::from_utf8(&buffered[at..line_end])
            .map_err(|_| HttpError::Malformed("bad chunk size"))?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        if hex.is_empty() || hex.len() > 8 {
            return Err(HttpError::Malformed("bad chunk size"));
        }
        let size =
            usize::from_str_radix(hex, 16).map_err(|_| HttpError::Malformed("bad chunk size"))?;
        at = line_end + 2;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let trailers = &buffered[at..];
                if trailers.starts_with(b"\r\n") || find(trailers, b"\r\n\r\n").is_some() {
                    return Ok(body);
                }
                if buffered.len() - at > MAX_HEAD {
                    return Err(HttpError::TooLarge("trailers over 16 KiB"));
                }
                if read_some(stream, &mut buffered, cap + MAX_HEAD).await? == 0 {
                    return Err(HttpError::Malformed("closed inside the trailers"));
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(HttpError::TooLarge("body over 64 KiB"));
        }
        while buffered.len() < at + size + 2 {
            if read_some(stream, &mut buffered, cap).await? == 0 {
                return Err(HttpError::Malformed("closed inside a chunk"));
            }
        }
        body.extend_from_slice(&buffered[at..at + size]);
        if &buffered[at + size..at + size + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not followed by CRLF"));
        }
        at += size + 2;
        // Keep the buffer small: drop what was consumed.
        buffered.drain(..at);
        at = 0;
    }
}

/// Appends what one read returns to `buf`, reading at most up to `limit` bytes in `buf` (and
/// at least one byte, so a caller over its limit sees more data as "too large", not as EOF).
async fn read_some<R>(stream: &mut R, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<usize>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let room = limit.saturating_sub(buf.len()).clamp(1, 8192);
    let start = buf.len();
    buf.resize(start + room, 0);
    let n = stream.read(&mut buf[start..]).await;
    buf.truncate(start + *n.as_ref().unwrap_or(&0));
    n
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
