//! The HTTP client against a real server on loopback (canned responses: status codes, JSON and
//! plain bodies, chunked, oversized, slow, refused), the answer rules, the request encodings,
//! the JSON reader, the cache, and the service's cache and request slots.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::cache::{AnswerCache, KeyBuilder};
use super::client::{send, HttpError, HttpUrl, Request, Response, MAX_BODY};
use super::test_server::{response, result, TestServer};
use super::*;
use crate::config::HttpAuthConfig;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A server that answers every connection with `reply` (raw bytes), after reading the request
/// head, then closes.
async fn canned(reply: Vec<u8>) -> TestServer {
    TestServer::start(move |_| (Duration::ZERO, reply.clone())).await
}

async fn post(url: &str, body: &[u8]) -> Result<Response, HttpError> {
    let url = HttpUrl::parse(url).unwrap();
    let headers = [("Authorization".to_owned(), "Bearer t".to_owned())];
    let request = Request {
        url: &url,
        query: None,
        body,
        headers: &headers,
    };
    send(request, TIMEOUT).await
}

#[tokio::test]
async fn a_post_carries_host_length_type_headers_and_body() {
    let server = TestServer::start(|_| result("allow")).await;
    let r = post(&server.url("/auth?v=1"), b"{\"a\":\"b\"}")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(interpret(&r), Ok(Answer::Allow));
    let seen = &server.requests()[0];
    assert!(
        seen.head.starts_with("POST /auth?v=1 HTTP/1.1\r\n"),
        "{}",
        seen.head
    );
    assert_eq!(seen.header("host"), Some(&*server.addr.to_string()));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("content-length"), Some("9"));
    assert_eq!(seen.header("connection"), Some("close"));
    assert_eq!(seen.header("authorization"), Some("Bearer t"));
    assert_eq!(seen.body, "{\"a\":\"b\"}");
}

#[tokio::test]
async fn a_get_appends_its_query_to_the_urls_own() {
    let server = TestServer::start(|_| (Duration::ZERO, response(204, ""))).await;
    for (path, expected) in [("/acl", "GET /acl?a=1 "), ("/acl?k=v", "GET /acl?k=v&a=1 ")] {
        let url = HttpUrl::parse(&server.url(path)).unwrap();
        let request = Request {
            url: &url,
            query: Some("a=1"),
            body: b"",
            headers: &[],
        };
        let r = send(request, TIMEOUT).await.unwrap();
        assert_eq!((r.status, interpret(&r)), (204, Ok(Answer::Allow)));
        let last = server.requests().pop().unwrap();
        assert!(last.head.starts_with(expected), "{}", last.head);
        assert_eq!(last.header("content-length"), None);
    }
}

#[tokio::test]
async fn status_codes_and_bodies_decide() {
    let cases: [(&[u8], Result<Answer, ()>); 12] = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{\"result\": \"deny\"}\n", Ok(Answer::Deny)),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nallow\n", Ok(Answer::Allow)),
        // No length: the body ends at the close.
        (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n IGNORE ", Ok(Answer::Ignore)),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"ok\":true,\"n\":[1,{}],\"result\":\"allow\"}\n", Ok(Answer::Allow)),
        (b"HTTP/1.1 204 No Content\r\n\r\n", Ok(Answer::Allow)),
        (b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nallow", Ok(Answer::Deny)),
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", Ok(Answer::Deny)),
        (b"HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\nallow", Err(())),
        (b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n", Err(())),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Err(())),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"result\": \"yes\"}", Err(())),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"result\": 1}", Err(())),
    ];
    for (reply, expected) in cases {
        let server = canned(reply.to_vec()).await;
        let r = post(&server.url("/"), b"{}").await.unwrap();
        let got = interpret(&r).map_err(drop);
        assert_eq!(got, expected, "{}", String::from_utf8_lossy(reply));
    }
}

#[tokio::test]
async fn chunked_bodies_are_decoded() {
    let reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\n{\"res\r\n\
        D\r\nult\": \"deny\"}\r\n\
        0\r\nX-Trailer: t\r\n\r\n";
    let server = canned(reply.to_vec()).await;
    let r = post(&server.url("/"), b"").await.unwrap();
    assert_eq!(r.body, b"{\"result\": \"deny\"}");
    assert_eq!(interpret(&r), Ok(Answer::Deny));
    // Without trailers, and a chunk arriving in pieces.
    let reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n5\r\nallow\r\n0\r\n\r\n";
    let server = canned(reply.to_vec()).await;
    let r = post(&server.url("/"), b"").await.unwrap();
    assert_eq!(interpret(&r), Ok(Answer::Allow));
}

#[tokio::test]
async fn malformed_responses_are_errors() {
    let cases: [&[u8]; 7] = [
        b"HTTP/2 200 OK\r\n\r\n",
        b"hello\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    ];
    for reply in cases {
        let server = canned(reply.to_vec()).await;
        let e = post(&server.url("/"), b"").await.unwrap_err();
        assert!(
            matches!(e, HttpError::Malformed(_)),
            "{}: {e}",
            String::from_utf8_lossy(reply)
        );
    }
}

#[tokio::test]
async fn oversized_responses_are_refused() {
    let big = "x".repeat(MAX_BODY + 1);
    let chunked = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let cases = [
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        ),
        format!("HTTP/1.1 200 OK\r\n\r\n{big}"),
        chunked,
        format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "h".repeat(20_000)),
    ];
    for reply in cases {
        let server = canned(reply.clone().into_bytes()).await;
        let e = post(&server.url("/"), b"").await.unwrap_err();
        assert!(matches!(e, HttpError::TooLarge(_)), "{}: {e}", &reply[..60]);
    }
    // Exactly the limit is fine.
    let body = "y".repeat(MAX_BODY);
    let server = canned(format!("HTTP/1.1 200 OK\r\n\r\n{body}").into_bytes()).await;
    assert_eq!(
        post(&server.url("/"), b"").await.unwrap().body.len(),
        MAX_BODY
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts, reads, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            held.push(s);
        }
    });
    let url = HttpUrl::parse(&format!("http://{addr}/")).unwrap();
    let request = Request {
        url: &url,
        query: None,
        body: b"{}",
        headers: &[],
    };
    let t0 = Instant::now();
    let e = send(request, Duration::from_millis(200)).await.unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, HttpError::Timeout(_)), "{e}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // A server that answers half a response and stalls: the same.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
            held.push(s);
        }
    });
    let url = HttpUrl::parse(&format!("http://{addr}/")).unwrap();
    let request = Request {
        url: &url,
        query: None,
        body: b"{}",
        headers: &[],
    };
    let e = send(request, Duration::from_millis(200)).await.unwrap_err();
    assert!(matches!(e, HttpError::Timeout(_)), "{e}");
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e = post(&format!("http://{addr}/"), b"").await.unwrap_err();
    assert!(matches!(e, HttpError::Connect(..)), "{e}");
}

#[test]
fn json_members_are_found_and_bad_json_refused() {
    let ok = [
        (r#"{"result":"allow"}"#, Some("allow")),
        (
            r#" { "a" : null , "result" : "d\u0065ny" , "b": [true, false, -1.5e3, {"result": "x"}] } "#,
            Some("deny"),
        ),
        (
            r#"{"result":"\ud83d\ude00\n\"\\\/"}"#,
            Some("\u{1f600}\n\"\\/"),
        ),
        (r#"{}"#, None),
        (r#"{"result": ["allow"]}"#, None),
        (r#"{"other": "allow"}"#, None),
        (r#"{"result":"allow"} x"#, None),
        (r#"{"result":"allow""#, None),
        (r#"{"result":"al\qow"}"#, None),
        (r#"{"result":"\ud83d"}"#, None),
        (r#"["allow"]"#, None),
        (r#"{"a":tru, "result":"allow"}"#, None),
        ("{\"result\":\"a\u{1}\"}", None),
    ];
    for (text, expected) in ok {
        assert_eq!(json_result(text).as_deref(), expected, "{text}");
    }
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
    assert_eq!(json_member(&deep, "a"), None, "nesting is bounded");
    let fine = format!(
        "{{\"a\":{}{},\"result\":\"allow\"}}",
        "[".repeat(20),
        "]".repeat(20)
    );
    assert_eq!(json_result(&fine).as_deref(), Some("allow"));
}

#[test]
fn fields_are_escaped_for_json_and_queries() {
    let fields = [("username", "a\"b\\c\nd\u{1}é"), ("topic", "x/+ &=?%")];
    let json = json_object(&fields);
    assert_eq!(
        json,
        r#"{"username":"a\"b\\c\nd\u0001é","topic":"x/+ &=?%"}"#
    );
    assert_eq!(json_member(&json, "username").as_deref(), Some(fields[0].1));
    assert_eq!(json_member(&json, "topic").as_deref(), Some(fields[1].1));
    assert_eq!(
        query_string(&fields),
        "username=a%22b%5Cc%0Ad%01%C3%A9&topic=x%2F%2B%20%26%3D%3F%25"
    );
}

#[test]
fn the_cache_keeps_answers_for_their_ttl_and_stays_bounded() {
    let t0 = Instant::now();
    let key = |n: u32| {
        let mut k = KeyBuilder::new(b"t");
        k.part(&n.to_be_bytes());
        k.finish()
    };
    let cache = AnswerCache::new(Duration::from_secs(10), 16);
    let until = cache.insert(key(1), Answer::Deny, t0);
    assert_eq!(until, t0 + Duration::from_secs(10));
    assert_eq!(
        cache.get(&key(1), t0 + Duration::from_secs(9)),
        Some((Answer::Deny, until))
    );
    assert_eq!(
        cache.get(&key(1), t0 + Duration::from_secs(10)),
        None,
        "expired"
    );
    assert!(cache.is_empty(), "an expired entry goes when touched");
    for n in 0..1000 {
        cache.insert(key(n), Answer::Allow, t0);
        assert!(cache.len() <= 16);
    }
    assert_eq!(
        cache.get(&key(999), t0),
        Some((Answer::Allow, until)),
        "the newest stays"
    );
    // Parts are length-prefixed: ("ab", "c") and ("a", "bc") differ.
    let mut a = KeyBuilder::new(b"t");
    a.part(b"ab").part(b"c");
    let mut b = KeyBuilder::new(b"t");
    b.part(b"a").part(b"bc");
    assert_ne!(a.finish(), b.finish());
    let off = AnswerCache::new(Duration::ZERO, 16);
    off.insert(key(1), Answer::Allow, t0);
    assert_eq!((off.get(&key(1), t0), off.len()), (None, 0));
}

fn service(url: &str, ttl: u64, slots: usize) -> Arc<HttpAuth> {
    let config = HttpAuthConfig {
        url: Some(url.to_owned()),
        acl_url: Some(url.to_owned()),
        cache_ttl_secs: ttl,
        max_concurrent_requests: slots,
        ..HttpAuthConfig::default()
    };
    Arc::new(HttpAuth::new(&config).unwrap())
}

fn subject<'a>(user: Option<&'a str>, client_id: &'a str) -> Subject<'a> {
    Subject {
        username: user,
        client_id,
        ip: "10.1.2.3".parse().unwrap(),
        cert_cn: None,
    }
}

#[tokio::test]
async fn answers_are_cached_per_password_and_not_when_the_service_fails() {
    let server = TestServer::start(|r| {
        result(if r.field("password").unwrap() == "good" {
            "allow"
        } else {
            "deny"
        })
    })
    .await;
    let http = service(&server.url("/"), 60, 4);
    let alice = subject(Some("alice"), "c1");
    assert_eq!(
        http.authenticate(&alice, Some(b"good")).await,
        Some(Answer::Allow)
    );
    assert_eq!(
        http.authenticate(&alice, Some(b"good")).await,
        Some(Answer::Allow)
    );
    assert_eq!(server.count(), 1, "the second one came from the cache");
    assert_eq!(
        http.authenticate(&alice, Some(b"bad")).await,
        Some(Answer::Deny)
    );
    assert_eq!(server.count(), 2, "another password is another question");
    let seen = &server.requests()[0];
    for (name, value) in [
        ("username", "alice"),
        ("clientid", "c1"),
        ("password", "good"),
        ("ip", "10.1.2.3"),
    ] {
        assert_eq!(seen.field(name).as_deref(), Some(value), "{name}");
    }
    // Not UTF-8: not sent.
    assert_eq!(http.authenticate(&alice, Some(&[0xff])).await, None);
    assert_eq!(server.count(), 2);
    // No cache: every time.
    let uncached = service(&server.url("/"), 0, 4);
    uncached.authenticate(&alice, Some(b"good")).await;
    uncached.authenticate(&alice, Some(b"good")).await;
    assert_eq!(server.count(), 4);
    // A failure is not cached: once the service is back, it is asked.
    let addr = server.addr;
    drop(server);
    tokio::task::yield_now().await;
    let down = service(&format!("http://{addr}/"), 60, 4);
    assert_eq!(down.authenticate(&alice, Some(b"good")).await, None);
    assert_eq!(down.cached_answers(), 0);
}

#[tokio::test]
async fn acl_questions_carry_action_and_topic_and_are_cached() {
    let server = TestServer::start(|r| {
        result(if r.field("topic").as_deref() == Some("open/x") {
            "allow"
        } else {
            "ignore"
        })
    })
    .await;
    let http = service(&server.url("/acl"), 60, 4);
    let who = subject(None, "c2");
    let q = http.acl_question(&who, Action::Subscribe, "open/x");
    let a = q.ask().await;
    assert_eq!(
        (a.action, &*a.topic, a.answer),
        (Action::Subscribe, "open/x", Some(Answer::Allow))
    );
    assert!(a.until.is_some());
    let seen = &server.requests()[0];
    assert_eq!(seen.path(), "/acl");
    for (name, value) in [
        ("username", ""),
        ("clientid", "c2"),
        ("ip", "10.1.2.3"),
        ("action", "subscribe"),
        ("topic", "open/x"),
    ] {
        assert_eq!(seen.field(name).as_deref(), Some(value), "{name}");
    }
    assert_eq!(seen.field("password"), None);
    let again = http.acl_question(&who, Action::Subscribe, "open/x");
    assert!(http.cached(&again, Instant::now()).is_some());
    assert_eq!(again.ask().await.answer, Some(Answer::Allow));
    let publish = http.acl_question(&who, Action::Publish, "open/x");
    assert!(
        http.cached(&publish, Instant::now()).is_none(),
        "publish is another question"
    );
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn requests_are_bounded_by_the_slots() {
    let server = TestServer::start(|_| (Duration::from_millis(100), response(204, ""))).await;
    let http = service(&server.url("/"), 0, 2);
    let mut tasks = Vec::new();
    for n in 0..6 {
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("c{n}");
            http.authenticate(&subject(Some("u"), &id), None).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Some(Answer::Allow));
    }
    assert_eq!(server.count(), 6);
    assert_eq!(
        server.most_open(),
        2,
        "never more than two requests at once"
    );
}

#[tokio::test]
async fn a_get_sends_the_fields_as_a_query() {
    let server = TestServer::start(|_| result("allow")).await;
    let config = HttpAuthConfig {
        url: Some(server.url("/auth?static=1")),
        method: crate::config::HttpMethod::Get,
        ..HttpAuthConfig::default()
    };
    let http = HttpAuth::new(&config).unwrap();
    let who = subject(Some("b o&b"), "c/3");
    assert_eq!(
        http.authenticate(&who, Some(b"p=w")).await,
        Some(Answer::Allow)
    );
    let seen = &server.requests()[0];
    assert_eq!(seen.method(), "GET");
    assert!(
        seen.head.starts_with(
            "GET /auth?static=1&username=b%20o%26b&clientid=c%2F3&password=p%3Dw&ip=10.1.2.3 "
        ),
        "{}",
        seen.head
    );
    assert_eq!(seen.field("username").as_deref(), Some("b o&b"));
    assert_eq!(seen.body, "");
}
