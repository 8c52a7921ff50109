//! Authentication and authorization: who may connect, and what a connected client may publish
//! and subscribe to.
//!
//! Configured in `[auth]`:
//!
//! - `allow_anonymous`: whether clients that send no user name may connect. Unset, it is false
//!   when a password file or an HTTP auth `url` is configured and true otherwise. Refused
//!   clients get CONNACK 0x87 Not authorized (3.1.1: return code 5).
//! - `password_file`: `user:hash` lines (see [`passwords`]); a client that sends a user name
//!   must know its password, or gets CONNACK 0x86 Bad user name or password (3.1.1: return code
//!   4), whether the user is unknown or the password wrong. Without a password file user names
//!   are not checked: such clients count as anonymous and are let in only when anonymous
//!   clients are.
//! - `acl_file`: rules for PUBLISH and SUBSCRIBE (see [`acl`]). Without one everything is
//!   allowed (unless an HTTP `acl_url` is configured).
//! - `[auth.http]`: an HTTP service asked before the files, for CONNECT (`url`) and for
//!   PUBLISH and SUBSCRIBE (`acl_url`). Its `allow` and `deny` are final; `ignore` or no answer
//!   falls through to the files. See [`http`] for the exact order, the requests and answers,
//!   and how a request waits for its answer without holding up a worker thread.
//!
//! MQTT 5 clients may instead authenticate with SCRAM-SHA-256 (enhanced authentication, the
//! AUTH packet; see [`scram`]) against the verifiers the password file holds beside the hashes:
//! the password never crosses the wire and the client authenticates the broker in turn. The
//! user name proven by the exchange is the client's user name for the ACL and session
//! ownership. Users without a verifier, and every user when there is no password file, cannot
//! use it (CONNACK 0x86, and 0x8C without a password file).
//!
//! Verifying a password costs tens of milliseconds of CPU, so it runs on tokio's blocking pool,
//! at most one verification per CPU at a time: a flood of CONNECTs queues for a permit (within
//! its CONNECT timeout) rather than piling work onto the pool.
//!
//! [`Authenticator::reload`] (SIGHUP) reads both files again and empties the HTTP answer
//! cache; a file that does not parse is refused as a whole and the rules in use stay. Clients already connected stay connected; the
//! new ACL applies to their next PUBLISH or SUBSCRIBE. Connections see a new ACL through an
//! [`AclView`], which costs one atomic load per check while nothing changed and no lock at all,
//! so the publish path stays cheap with or without an ACL.

pub mod acl;
pub mod http;
pub mod passwords;
pub mod scram;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_acl;
#[cfg(test)]
mod tests_passwords;
#[cfg(test)]
mod tests_scram;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use acl::{Access, Acl, Action, LineError, Subject};
pub use http::{AclAnswer, AclQuestion, Answer, HttpAuth};
pub use passwords::{
    check_user_name, hash_password, PasswordFile, StoredHash, ARGON2_LANES, ARGON2_MEMORY_KIB,
    ARGON2_PASSES, MAX_ARGON2_MEMORY_KIB,
};

use crate::config::AuthConfig;
use crate::mqtt::ReasonCode;

/// Why the password file or the ACL file could not be loaded. Each names the file, and the line
/// where there is one.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file is missing or unreadable.
    #[error("cannot read {kind} {}: {source}", path.display())]
    Read {
        /// "password file" or "ACL file".
        kind: &'static str,
        /// The path from the configuration.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line that does not parse.
    #[error("{kind} {}:{line}: {message}", path.display())]
    Invalid {
        /// "password file" or "ACL file".
        kind: &'static str,
        /// The path from the configuration.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The `[auth.http]` settings are unusable.
    #[error("{0}")]
    Http(String),
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No user name, and anonymous clients are not allowed.
    AnonymousNotAllowed,
    /// Unknown user, wrong or missing password, or a user name nothing can check.
    BadCredentials,
    /// No verification slot came free before the CONNECT timeout.
    Busy,
    /// The listener takes user names from client certificates, and this one has no name of
    /// the configured kind.
    CertificateWithoutName,
    /// The HTTP auth service said deny.
    DeniedByHttp,
}

impl Refusal {
    /// The CONNACK reason code (the codec maps it to the 3.x return code).
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Refusal::AnonymousNotAllowed => ReasonCode::NOT_AUTHORIZED,
            Refusal::BadCredentials => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            Refusal::Busy => ReasonCode::SERVER_BUSY,
            Refusal::CertificateWithoutName => ReasonCode::NOT_AUTHORIZED,
            Refusal::DeniedByHttp => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::AnonymousNotAllowed => "anonymous clients are not allowed",
            Refusal::BadCredentials => "bad user name or password",
            Refusal::Busy => "no password verification slot within the CONNECT timeout",
            Refusal::CertificateWithoutName => {
                "the client certificate has no name to use as the user name"
            }
            Refusal::DeniedByHttp => "the HTTP auth service denied it",
        })
    }
}

/// The password file, ACL, HTTP service and anonymous policy in force, swapped whole on
/// reload (which is what empties the HTTP answer cache).
#[derive(Debug)]
struct Policy {
    allow_anonymous: bool,
    passwords: Option<Arc<PasswordFile>>,
    acl: Option<Arc<Acl>>,
    http: Option<Arc<HttpAuth>>,
    /// One line for the log: what was loaded from where.
    summary: String,
}

/// Checks CONNECT credentials and hands out the ACL; shared by every connection and the reload
/// handler.
#[derive(Debug)]
pub struct Authenticator {
    policy: RwLock<Arc<Policy>>,
    /// Bumped after every reload, so [`AclView`]s know to look again.
    generation: AtomicUsize,
    /// Whether an ACL file or an HTTP ACL is in force: connections without an identity of
    /// their own make one only then.
    acl_present: AtomicBool,
    /// One permit per password verification running.
    verifications: Arc<Semaphore>,
}

/// A connection's copy of the ACL in force; [`Authenticator::refresh`] brings it up to date.
/// With an HTTP ACL it also remembers the connection's last few answers.
#[derive(Debug, Clone)]
pub struct AclView {
    generation: usize,
    acl: Option<Arc<Acl>>,
    /// The HTTP service, when it has an `acl_url`.
    http: Option<Arc<HttpAuth>>,
    /// The last few HTTP answers and until when each holds, so a client publishing to the
    /// same topics again costs neither a request nor the shared cache's lock.
    recent: Vec<(Action, Box<str>, Answer, Instant)>,
    /// Answers fetched for the request waiting for them, whatever the cache keeps; see
    /// [`AclView::answered`].
    fresh: Vec<AclAnswer>,
}

/// Answers a connection remembers of its own (a small list, searched in order).
const RECENT_ANSWERS: usize = 8;

/// What the ACL says about a request, or the question to ask the HTTP service first.
#[derive(Debug)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refused.
    Deny,
    /// Ask this, record the answer with [`AclView::answered`], then check again.
    Ask(AclQuestion),
}

impl AclView {
    fn new(generation: usize, policy: &Policy) -> AclView {
        AclView {
            generation,
            acl: policy.acl.clone(),
            http: policy.http.clone().filter(|h| h.checks_acl()),
            recent: Vec::new(),
            fresh: Vec::new(),
        }
    }

    /// The ACL file as of the last refresh; None when there is none.
    pub fn get(&self) -> Option<&Acl> {
        self.acl.as_deref()
    }

    /// Whether requests may need an HTTP answer first.
    pub fn asks_http(&self) -> bool {
        self.http.is_some()
    }

    /// The verdict on `subject` doing `action` on `topic` (a topic name, or a valid filter
    /// that may be a `$share/` one). HTTP first, when configured: a fresh answer, one
    /// remembered, one cached, or else the question to ask. `ignore` or no answer falls
    /// through to the ACL file, and without one to deny. Without HTTP: the ACL file, or allow
    /// without one.
    pub fn check(&mut self, subject: &Subject<'_>, action: Action, topic: &str) -> Verdict {
        let plain = match (action, acl::inner_filter(topic)) {
            (Action::Subscribe, Some(inner)) => inner,
            _ => topic,
        };
        if self.http.is_some() {
            let answer = match self.known(action, plain) {
                Some(answer) => answer,
                None => {
                    let Some(http) = &self.http else {
                        return Verdict::Deny;
                    };
                    let question = http.acl_question(subject, action, plain);
                    match http.cached(&question, Instant::now()) {
                        Some((answer, until)) => {
                            self.remember(action, plain, answer, until);
                            Some(answer)
                        }
                        None => return Verdict::Ask(question),
                    }
                }
            };
            match answer {
                Some(Answer::Allow) => return Verdict::Allow,
                Some(Answer::Deny) => return Verdict::Deny,
                Some(Answer::Ignore) | None => {}
            }
            return match &self.acl {
                Some(acl) if self.file_allows(acl, subject, action, topic) => Verdict::Allow,
                _ => Verdict::Deny,
            };
        }
        match &self.acl {
            Some(acl) if !self.file_allows(acl, subject, action, topic) => Verdict::Deny,
            _ => Verdict::Allow,
        }
    }

    fn file_allows(&self, acl: &Acl, subject: &Subject<'_>, action: Action, topic: &str) -> bool {
        match action {
            Action::Publish => acl.may_publish(subject, topic),
            Action::Subscribe => acl.may_subscribe(subject, topic),
        }
    }

    /// A fresh answer (Some(None): the service gave none) or an unexpired remembered one.
    fn known(&mut self, action: Action, topic: &str) -> Option<Option<Answer>> {
        if let Some(f) = self
            .fresh
            .iter()
            .find(|f| f.action == action && &*f.topic == topic)
        {
            return Some(f.answer);
        }
        let i = self
            .recent
            .iter()
            .position(|(a, t, _, _)| *a == action && &**t == topic)?;
        if self.recent[i].3 > Instant::now() {
            return Some(Some(self.recent[i].2));
        }
        self.recent.swap_remove(i);
        None
    }

    fn remember(&mut self, action: Action, topic: &str, answer: Answer, until: Instant) {
        if self.recent.len() >= RECENT_ANSWERS {
            // The one that expires first goes.
            if let Some(i) = (0..self.recent.len()).min_by_key(|&i| self.recent[i].3) {
                self.recent.swap_remove(i);
            }
        }
        self.recent.push((action, topic.into(), answer, until));
    }

    /// Records the answer to a question [`AclView::check`] asked: the next check of the same
    /// request uses it (also with no cache, or when the service gave no answer) until
    /// [`AclView::forget_fresh`].
    pub fn answered(&mut self, answer: AclAnswer) {
        if let (Some(a), Some(until)) = (answer.answer, answer.until) {
            self.remember(answer.action, &answer.topic, a, until);
        }
        self.fresh.push(answer);
    }

    /// Drops the answers fetched for a request that is now handled.
    pub fn forget_fresh(&mut self) {
        self.fresh.clear();
    }
}

impl Authenticator {
    /// Loads the files `config` names; an error names the file and line.
    pub fn load(config: &AuthConfig) -> Result<Authenticator, AuthError> {
        let permits = std::thread::available_parallelism().map_or(1, |n| n.get());
        let policy = Policy::load(config)?;
        Ok(Authenticator {
            acl_present: AtomicBool::new(policy.has_acl()),
            policy: RwLock::new(Arc::new(policy)),
            generation: AtomicUsize::new(0),
            verifications: Arc::new(Semaphore::new(permits)),
        })
    }

    /// Reads the files `config` names again and puts them in force, or leaves everything as it
    /// was when one does not load. Returns the summary of what is in force now.
    pub fn reload(&self, config: &AuthConfig) -> Result<String, AuthError> {
        let policy = Arc::new(Policy::load(config)?);
        let summary = policy.summary.clone();
        let acl_present = policy.has_acl();
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = policy;
        self.acl_present.store(acl_present, Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(summary)
    }

    /// What is in force, in one line for the log.
    pub fn summary(&self) -> String {
        self.current().summary.clone()
    }

    fn current(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Checks a CONNECT: the HTTP service first when it has a `url`, then, when it says
    /// `ignore` or gives no answer, the password file and the anonymous policy as in
    /// [`Authenticator::authenticate`]. `subject.client_id` is the one CONNECT carried (empty
    /// when the broker is to assign one).
    pub async fn authenticate_client(
        &self,
        subject: &Subject<'_>,
        password: Option<&Bytes>,
    ) -> Result<(), Refusal> {
        let policy = self.current();
        if let Some(http) = policy.http.as_ref().filter(|h| h.checks_connect()) {
            match http.authenticate(subject, password.map(|p| &p[..])).await {
                Some(Answer::Allow) => return Ok(()),
                Some(Answer::Deny) => return Err(Refusal::DeniedByHttp),
                Some(Answer::Ignore) | None => {}
            }
        }
        self.check_files(policy, subject.username, password).await
    }

    /// Checks CONNECT's user name and password against the password file and the anonymous
    /// policy (not the HTTP service). The password is verified on the blocking pool, once a
    /// verification slot is free; cancelling the returned future gives the slot back only
    /// when the verification already started has finished.
    pub async fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&Bytes>,
    ) -> Result<(), Refusal> {
        self.check_files(self.current(), username, password).await
    }

    async fn check_files(
        &self,
        policy: Arc<Policy>,
        username: Option<&str>,
        password: Option<&Bytes>,
    ) -> Result<(), Refusal> {
        let Some(user) = username else {
            return match policy.allow_anonymous {
                true => Ok(()),
                false => Err(Refusal::AnonymousNotAllowed),
            };
        };
        let Some(passwords) = policy.passwords.clone() else {
            return match policy.allow_anonymous {
                true => Ok(()),
                false => Err(Refusal::BadCredentials),
            };
        };
        let permit = self
            .verifications
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Refusal::Busy)?;
        let user = user.to_owned();
        let password = password.cloned();
        let verified = tokio::task::spawn_blocking(move || {
            let ok = passwords.verify(&user, password.as_deref());
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false);
        if verified {
            Ok(())
        } else {
            Err(Refusal::BadCredentials)
        }
    }

    /// `user`'s SCRAM-SHA-256 verifier in the password file in force, or a decoy for a user
    /// without one (see [`PasswordFile::scram_verifier`]); None when there is no password file.
    pub fn scram_verifier(&self, user: &str) -> Option<scram::ScramVerifier> {
        let passwords = self.current().passwords.clone()?;
        Some(passwords.scram_verifier(user))
    }

    /// The ACL in force, for a connection to keep.
    pub fn acl_view(&self) -> AclView {
        let generation = self.generation.load(Ordering::Acquire);
        AclView::new(generation, &self.current())
    }

    /// The HTTP service in force, if one is configured.
    pub fn http(&self) -> Option<Arc<HttpAuth>> {
        self.current().http.clone()
    }

    /// Whether an ACL file or an HTTP ACL is in force; one atomic load.
    pub fn has_acl(&self) -> bool {
        self.acl_present.load(Ordering::Acquire)
    }

    /// Brings `view` up to date after a reload; one atomic load when nothing changed.
    pub fn refresh(&self, view: &mut AclView) {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != view.generation {
            *view = AclView::new(generation, &self.current());
        }
    }
}

impl Policy {
    fn load(config: &AuthConfig) -> Result<Policy, AuthError> {
        let passwords = match &config.password_file {
            Some(path) => Some(Arc::new(load_passwords(path)?)),
            None => None,
        };
        let acl = match &config.acl_file {
            Some(path) => Some(Arc::new(load_acl(path)?)),
            None => None,
        };
        let http = match &config.http {
            Some(h) => Some(Arc::new(HttpAuth::new(h).map_err(AuthError::Http)?)),
            None => None,
        };
        let http_connect = http.as_ref().is_some_and(|h| h.checks_connect());
        let allow_anonymous = config
            .allow_anonymous
            .unwrap_or(config.password_file.is_none() && !http_connect);
        if !allow_anonymous && passwords.is_none() && !http_connect {
            tracing::warn!(
                "auth.allow_anonymous is false and there is no auth.password_file: every client \
                 is refused"
            );
        }
        if passwords.is_none()
            && !http_connect
            && acl.as_ref().is_some_and(|a| a.trusts_user_names())
        {
            tracing::warn!(
                "the ACL names users, but without auth.password_file user names are not \
                 verified: a client can claim any of them"
            );
        }
        let mut parts = Vec::new();
        if let (Some(path), Some(p)) = (&config.password_file, &passwords) {
            parts.push(format!(
                "password file {} ({} users)",
                path.display(),
                p.len()
            ));
        }
        if let (Some(path), Some(a)) = (&config.acl_file, &acl) {
            let default = match a.default_access() {
                Access::Allow => "allow",
                Access::Deny => "deny",
            };
            parts.push(format!(
                "ACL file {} ({} rules, default {default})",
                path.display(),
                a.len()
            ));
        } else if !http.as_ref().is_some_and(|h| h.checks_acl()) {
            parts.push("no ACL (everything allowed)".to_owned());
        }
        if let Some(h) = &http {
            parts.push(h.summary());
        }
        parts.push(match allow_anonymous {
            true => "anonymous clients allowed".to_owned(),
            false => "anonymous clients refused".to_owned(),
        });
        Ok(Policy {
            allow_anonymous,
            passwords,
            acl,
            http,
            summary: parts.join(", "),
        })
    }

    fn has_acl(&self) -> bool {
        self.acl.is_some() || self.http.as_ref().is_some_and(|h| h.checks_acl())
    }
}

fn read(kind: &'static str, path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        kind,
        path: path.to_owned(),
        source,
    })
}

fn invalid(kind: &'static str, path: &Path, e: LineError) -> AuthError {
    AuthError::Invalid {
        kind,
        path: path.to_owned(),
        line: e.line,
        message: e.message,
    }
}

/// Reads and parses a password file.
pub fn load_passwords(path: &Path) -> Result<PasswordFile, AuthError> {
    const KIND: &str = "password file";
    PasswordFile::parse(&read(KIND, path)?).map_err(|e| invalid(KIND, path, e))
}

/// Reads and parses an ACL file.
pub fn load_acl(path: &Path) -> Result<Acl, AuthError> {
    const KIND: &str = "ACL file";
    Acl::parse(&read(KIND, path)?).map_err(|e| invalid(KIND, path, e))
}
