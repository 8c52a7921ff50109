//! A small HTTP server for tests, on 127.0.0.1:0: it records every request and answers what
//! the test's handler says, after the handler's delay. Dropping it stops it, which is how
//! tests take the auth service down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::format::json_member;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// Request line and headers, without the blank line.
    pub(crate) head: String,
    /// The body (Content-Length bytes).
    pub(crate) body: String,
}

impl Recorded {
    /// `POST /path?q HTTP/1.1` -> `POST`.
    pub(crate) fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or_default()
    }

    /// The path, without the query.
    pub(crate) fn path(&self) -> &str {
        let target = self.head.split(' ').nth(1).unwrap_or_default();
        target.split('?').next().unwrap_or_default()
    }

    /// The value of header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// A field of the request: from the JSON body of a POST, or the query of a GET.
    pub(crate) fn field(&self, name: &str) -> Option<String> {
        if self.method() == "POST" {
            return json_member(&self.body, name);
        }
        let target = self.head.split(' ').nth(1)?;
        let query = target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// What to answer: a delay, then these bytes, then close.
pub(crate) type Reply = (Duration, Vec<u8>);

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A running test server.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Starts a server answering each request with `handler`.
    pub(crate) async fn start(
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let most_open = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (r, o, m) = (requests.clone(), open.clone(), most_open.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (r, o, m, handler) = (r.clone(), o.clone(), m.clone(), handler.clone());
                tokio::spawn(async move {
                    let now_open = o.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now_open, Ordering::SeqCst);
                    if let Some(request) = read_request(&mut stream).await {
                        r.lock().unwrap().push(request.clone());
                        let (delay, reply) = handler(&request);
                        tokio::time::sleep(delay).await;
                        let _ = stream.write_all(&reply).await;
                        let _ = stream.shutdown().await;
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        TestServer {
            addr,
            requests,
            open,
            most_open,
            task,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Number of requests so far.
    pub(crate) fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Most connections open at once.
    pub(crate) fn most_open(&self) -> usize {
        let _ = self.open.load(Ordering::SeqCst);
        self.most_open.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut recorded = Recorded {
        head,
        body: String::new(),
    };
    let length: usize = recorded
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    recorded.body = String::from_utf8(body).ok()?;
    Some(recorded)
}

/// A response with a Content-Length body.
pub(crate) fn response(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `response(200, {"result": "<word>"})`, answered at once.
pub(crate) fn result(word: &str) -> Reply {
    (
        Duration::ZERO,
        response(200, &format!("{{\"result\": \"{word}\"}}")),
    )
}
