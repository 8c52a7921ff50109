//! The HTTP auth back-end: an HTTP service of the operator's answers whether a client may
//! connect (`url`) and whether it may publish to or subscribe to a topic (`acl_url`).
//!
//! # The order of back-ends
//!
//! CONNECT (a listener taking user names from client certificates checks no password and asks
//! nobody):
//!
//! 1. With `url` set, the service is asked first. `allow` lets the client in and `deny` refuses
//!    it with CONNACK 0x86 Bad user name or password (3.1.1: return code 4); both are final.
//! 2. `ignore`, or no answer (connection refused, timeout, a 5xx, a body that says nothing),
//!    falls through to the password file and the anonymous policy, as if there were no
//!    service. `allow_anonymous` defaults to false when `url` is set, so a service that is
//!    down lets nobody in unless the password file knows them or anonymous clients are
//!    explicitly allowed.
//!
//! PUBLISH, SUBSCRIBE and wills:
//!
//! 1. With `acl_url` set, the service is asked first; `allow` and `deny` are final.
//! 2. `ignore` or no answer falls through to the ACL file; without an ACL file the request is
//!    denied (as an ACL file without `default` denies). Add an ACL file with `default allow`
//!    to let undecided requests through.
//!
//! # Requests and answers
//!
//! `method = "post"` sends a JSON object, `"get"` the same fields as URL-encoded query
//! parameters appended to the URL's own: `username`, `clientid`, `password` and `ip` for
//! CONNECT; `username`, `clientid`, `ip`, `action` (`publish` or `subscribe`) and `topic` for
//! the ACL. A missing user name is sent as the empty string, and so is the client id of a
//! client that left it to the broker to assign (CONNECT only; ACL requests carry the assigned
//! one). A shared subscription is asked about by its inner filter. A password that is not
//! UTF-8 is never sent: the service is skipped for that CONNECT, as if it had said `ignore`.
//!
//! Status 200 with a body `{"result": "allow" | "deny" | "ignore"}` (other members are
//! ignored) or the bare word as plain text; 204 means allow; any 4xx means deny; anything
//! else is no answer. Each request is a new HTTP/1.1 connection (`Connection: close`) and
//! must be done within `timeout_ms`; `http://` only.
//!
//! # Never on a worker thread's critical path
//!
//! Requests are async I/O on the runtime: CONNECT waits for its answer within the CONNECT
//! timeout. A PUBLISH or SUBSCRIBE whose answer is not known yet is parked on its connection
//! while a task asks (the connection keeps writing and, up to a bound, reading; it parses
//! nothing after the parked packet, so packets keep their order) and is handled as soon as
//! the answer is in. Answers are cached for `cache_ttl_secs` (see [`cache`]), and each
//! connection also remembers its own last few ACL answers, so a client publishing again to the
//! same topic costs no request and no lock. At most `max_concurrent_requests` requests are
//! open at once: a CONNECT flood queues for a slot, within the same timeout, rather than
//! opening connections without bound. The cache is emptied on reload (SIGHUP).

pub mod cache;
pub mod client;
pub mod format;

#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use portable_atomic::AtomicU64;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use self::cache::{AnswerCache, CacheKey, KeyBuilder};
use self::client::{HttpUrl, Request, Response};
pub use self::format::{json_member, json_object, json_result, query_string};
use super::{Action, Subject};
use crate::config::{HttpAuthConfig, HttpMethod};

/// What the auth service said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Let it happen; final.
    Allow,
    /// Refuse it; final.
    Deny,
    /// Let the next back-end decide.
    Ignore,
}

/// The configured service, its cache and its request slots.
#[derive(Debug)]
pub struct HttpAuth {
    url: Option<HttpUrl>,
    acl_url: Option<HttpUrl>,
    method: HttpMethod,
    headers: Headers,
    timeout: Duration,
    cache: AnswerCache,
    slots: Semaphore,
    /// Requests that got no answer, for logging at warn once per power of two.
    failures: AtomicU64,
    /// Requests sent, for tests and log lines.
    sent: AtomicU64,
}

/// Extra request headers; their values (credentials, often) stay out of debug output.
struct Headers(Vec<(String, String)>);

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}: ...")))
            .finish()
    }
}

/// One ACL question, owned, so a task of its own can ask it.
#[derive(Debug)]
pub struct AclQuestion {
    service: Arc<HttpAuth>,
    key: CacheKey,
    action: Action,
    topic: Box<str>,
    username: Box<str>,
    client_id: Box<str>,
    ip: IpAddr,
}

/// The outcome of an [`AclQuestion`]: None when the service gave no answer; `until` is how
/// long the answer may be reused.
#[derive(Debug, Clone)]
pub struct AclAnswer {
    /// What was asked.
    pub action: Action,
    /// About which topic (name or plain filter).
    pub topic: Box<str>,
    /// What the service said, if anything.
    pub answer: Option<Answer>,
    /// Until when the answer may be reused; None: only for the request that asked.
    pub until: Option<Instant>,
}

impl HttpAuth {
    /// The service `config` describes (validated by the config, so URLs parse).
    pub fn new(config: &HttpAuthConfig) -> Result<HttpAuth, String> {
        let parse = |url: &Option<String>, key: &str| match url {
            Some(u) => HttpUrl::parse(u)
                .map(Some)
                .map_err(|e| format!("auth.http.{key}: {e}")),
            None => Ok(None),
        };
        Ok(HttpAuth {
            url: parse(&config.url, "url")?,
            acl_url: parse(&config.acl_url, "acl_url")?,
            method: config.method,
            headers: Headers(
                config
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            timeout: Duration::from_millis(config.timeout_ms),
            cache: AnswerCache::new(
                Duration::from_secs(config.cache_ttl_secs),
                config.cache_max_entries,
            ),
            slots: Semaphore::new(config.max_concurrent_requests.max(1)),
            failures: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        })
    }

    /// Whether CONNECTs are asked about.
    pub fn checks_connect(&self) -> bool {
        self.url.is_some()
    }

    /// Whether PUBLISH and SUBSCRIBE are asked about.
    pub fn checks_acl(&self) -> bool {
        self.acl_url.is_some()
    }

    /// Requests sent so far.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Answers cached now (expired ones included until touched).
    pub fn cached_answers(&self) -> usize {
        self.cache.len()
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let show = |u: &Option<HttpUrl>| {
            u.as_ref().map_or("-".to_owned(), |u| {
                format!("http://{}{}", u.authority, u.target)
            })
        };
        format!(
            "HTTP auth (connect {}, ACL {}, timeout {:?}, cache {:?})",
            show(&self.url),
            show(&self.acl_url),
            self.timeout,
            self.cache.ttl()
        )
    }

    /// Asks whether the client may connect. None: no `url`, a password that is not UTF-8, or
    /// no answer (logged).
    pub async fn authenticate(
        &self,
        subject: &Subject<'_>,
        password: Option<&[u8]>,
    ) -> Option<Answer> {
        let url = self.url.as_ref()?;
        let password = match password.map(std::str::from_utf8) {
            None => "",
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                tracing::debug!(
                    client_id = subject.client_id,
                    "password is not UTF-8: not sent to the HTTP auth service"
                );
                return None;
            }
        };
        let username = subject.username.unwrap_or("");
        let ip = subject.ip.to_string();
        let mut key = KeyBuilder::new(b"connect");
        key.part(username.as_bytes())
            .part(subject.client_id.as_bytes())
            .part(ip.as_bytes())
            .part(password.as_bytes());
        let key = key.finish();
        if let Some((answer, _)) = self.cache.get(&key, Instant::now()) {
            return Some(answer);
        }
        let fields = [
            ("username", username),
            ("clientid", subject.client_id),
            ("password", password),
            ("ip", &ip),
        ];
        let answer = self.ask(url, &fields, "connect").await?;
        self.cache.insert(key, answer, Instant::now());
        Some(answer)
    }

    /// The ACL question for one request; `topic` is a topic name or a plain filter (no
    /// `$share/`).
    pub fn acl_question(
        self: &Arc<Self>,
        subject: &Subject<'_>,
        action: Action,
        topic: &str,
    ) -> AclQuestion {
        let username = subject.username.unwrap_or("");
        let mut key = KeyBuilder::new(b"acl");
        key.part(username.as_bytes())
            .part(subject.client_id.as_bytes())
            .part(&ip_bytes(subject.ip))
            .part(action_name(action).as_bytes())
            .part(topic.as_bytes());
        AclQuestion {
            service: self.clone(),
            key: key.finish(),
            action,
            topic: topic.into(),
            username: username.into(),
            client_id: subject.client_id.into(),
            ip: subject.ip,
        }
    }

    /// The cached answer to `question`, if there is one, and until when it stays good.
    pub fn cached(&self, question: &AclQuestion, now: Instant) -> Option<(Answer, Instant)> {
        self.cache.get(&question.key, now)
    }

    /// Asks `url` with `fields`; None when there is no answer (logged).
    async fn ask(&self, url: &HttpUrl, fields: &[(&str, &str)], what: &str) -> Option<Answer> {
        let deadline = Instant::now() + self.timeout;
        let outcome = match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Ok(Ok(_permit)) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                let (query, body) = match self.method {
                    HttpMethod::Get => (Some(query_string(fields)), Vec::new()),
                    HttpMethod::Post => (None, json_object(fields).into_bytes()),
                };
                let request = Request {
                    url,
                    query: query.as_deref(),
                    body: &body,
                    headers: &self.headers.0,
                };
                let left = deadline.saturating_duration_since(Instant::now());
                match client::send(request, left).await {
                    Ok(response) => interpret(&response),
                    Err(e) => Err(e.to_string()),
                }
            }
            _ => Err(format!("no request slot free within {:?}", self.timeout)),
        };
        match outcome {
            Ok(answer) => {
                tracing::debug!(?answer, "HTTP auth service answered a {what} request");
                Some(answer)
            }
            Err(e) => {
                let total = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let target = format!("http://{}{}", url.authority, url.target);
                if total.is_power_of_two() {
                    tracing::warn!(
                        url = target,
                        failures_total = total,
                        "HTTP auth service gave no answer to a {what} request, falling \
                         through to the next back-end: {e}"
                    );
                } else {
                    tracing::debug!(url = target, "HTTP auth service gave no answer: {e}");
                }
                None
            }
        }
    }
}

impl AclQuestion {
    /// What is asked.
    pub fn action(&self) -> Action {
        self.action
    }

    /// About which topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Asks the service (the cache first) and caches its answer.
    pub async fn ask(self) -> AclAnswer {
        let service = &self.service;
        let now = Instant::now();
        if let Some((answer, until)) = service.cached(&self, now) {
            return self.answered(Some(answer), Some(until));
        }
        let Some(url) = service.acl_url.as_ref() else {
            return self.answered(None, None);
        };
        let ip = self.ip.to_string();
        let fields = [
            ("username", &*self.username),
            ("clientid", &*self.client_id),
            ("ip", &ip),
            ("action", action_name(self.action)),
            ("topic", &*self.topic),
        ];
        let answer = service.ask(url, &fields, action_name(self.action)).await;
        let until = answer.map(|a| service.cache.insert(self.key, a, Instant::now()));
        let until = until.filter(|_| !service.cache.ttl().is_zero());
        self.answered(answer, until)
    }

    fn answered(self, answer: Option<Answer>, until: Option<Instant>) -> AclAnswer {
        AclAnswer {
            action: self.action,
            topic: self.topic,
            answer,
            until,
        }
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Publish => "publish",
        Action::Subscribe => "subscribe",
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// What a response means: 200 with a result, 204 allow, 4xx deny; the rest is no answer.
pub fn interpret(response: &Response) -> Result<Answer, String> {
    match response.status {
        200 => {
            let text = std::str::from_utf8(&response.body)
                .map_err(|_| "status 200 with a body that is not UTF-8".to_owned())?
                .trim();
            let word = if text.starts_with('{') {
                json_result(text).ok_or_else(|| {
                    "status 200 with a JSON body without a string \"result\"".to_owned()
                })?
            } else {
                text.to_owned()
            };
            match word.to_ascii_lowercase().as_str() {
                "allow" => Ok(Answer::Allow),
                "deny" => Ok(Answer::Deny),
                "ignore" => Ok(Answer::Ignore),
                _ => Err(format!(
                    "status 200 with result {:?}, not allow, deny or ignore",
                    word.chars().take(32).collect::<String>()
                )),
            }
        }
        204 => Ok(Answer::Allow),
        400..=499 => Ok(Answer::Deny),
        status => Err(format!("status {status}")),
    }
}
