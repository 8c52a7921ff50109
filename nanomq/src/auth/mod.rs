//! Authentication and authorization: who may connect, and what a connected client may publish
//! and subscribe to.
//!
//! Configured in `[auth]`:
//!
//! - `allow_anonymous`: whether clients that send no user name may connect. Unset, it is false
//!   when a password file is configured and true otherwise. Refused clients get CONNACK 0x87
//!   Not authorized (3.1.1: return code 5).
//! - `password_file`: `user:hash` lines (see [`passwords`]); a client that sends a user name
//!   must know its password, or gets CONNACK 0x86 Bad user name or password (3.1.1: return code
//!   4), whether the user is unknown or the password wrong. Without a password file user names
//!   are not checked: such clients count as anonymous and are let in only when anonymous
//!   clients are.
//! - `acl_file`: rules for PUBLISH and SUBSCRIBE (see [`acl`]). Without one everything is
//!   allowed.
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
//! [`Authenticator::reload`] (SIGHUP) reads both files again; a file that does not parse is
//! refused as a whole and the rules in use stay. Clients already connected stay connected; the
//! new ACL applies to their next PUBLISH or SUBSCRIBE. Connections see a new ACL through an
//! [`AclView`], which costs one atomic load per check while nothing changed and no lock at all,
//! so the publish path stays cheap with or without an ACL.

pub mod acl;
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

pub use acl::{Access, Acl, Action, LineError, Subject};
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
}

impl Refusal {
    /// The CONNACK reason code (the codec maps it to the 3.x return code).
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Refusal::AnonymousNotAllowed => ReasonCode::NOT_AUTHORIZED,
            Refusal::BadCredentials => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            Refusal::Busy => ReasonCode::SERVER_BUSY,
            Refusal::CertificateWithoutName => ReasonCode::NOT_AUTHORIZED,
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
        })
    }
}

/// The password file, ACL and anonymous policy in force, swapped whole on reload.
#[derive(Debug)]
struct Policy {
    allow_anonymous: bool,
    passwords: Option<Arc<PasswordFile>>,
    acl: Option<Arc<Acl>>,
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
    /// Whether an ACL file is in force: connections without an identity of their own make
    /// one only then.
    acl_present: AtomicBool,
    /// One permit per password verification running.
    verifications: Arc<Semaphore>,
}

/// A connection's copy of the ACL in force; [`Authenticator::refresh`] brings it up to date.
#[derive(Debug, Clone)]
pub struct AclView {
    generation: usize,
    acl: Option<Arc<Acl>>,
}

impl AclView {
    /// The ACL as of the last refresh; None when there is no ACL file (everything allowed).
    pub fn get(&self) -> Option<&Acl> {
        self.acl.as_deref()
    }
}

impl Authenticator {
    /// Loads the files `config` names; an error names the file and line.
    pub fn load(config: &AuthConfig) -> Result<Authenticator, AuthError> {
        let permits = std::thread::available_parallelism().map_or(1, |n| n.get());
        let policy = Policy::load(config)?;
        Ok(Authenticator {
            acl_present: AtomicBool::new(policy.acl.is_some()),
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
        let acl_present = policy.acl.is_some();
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

    /// Checks CONNECT's user name and password. The password is verified on the blocking pool,
    /// once a verification slot is free; cancelling the returned future gives the slot back only
    /// when the verification already started has finished.
    pub async fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&Bytes>,
    ) -> Result<(), Refusal> {
        let policy = self.current();
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
        AclView {
            generation,
            acl: self.current().acl.clone(),
        }
    }

    /// Whether an ACL file is in force; one atomic load.
    pub fn has_acl(&self) -> bool {
        self.acl_present.load(Ordering::Acquire)
    }

    /// Brings `view` up to date after a reload; one atomic load when nothing changed.
    pub fn refresh(&self, view: &mut AclView) {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != view.generation {
            *view = AclView {
                generation,
                acl: self.current().acl.clone(),
            };
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
        let allow_anonymous = config
            .allow_anonymous
            .unwrap_or(config.password_file.is_none());
        if !allow_anonymous && passwords.is_none() {
            tracing::warn!(
                "auth.allow_anonymous is false and there is no auth.password_file: every client \
                 is refused"
            );
        }
        if passwords.is_none() && acl.as_ref().is_some_and(|a| a.trusts_user_names()) {
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
        } else {
            parts.push("no ACL (everything allowed)".to_owned());
        }
        parts.push(match allow_anonymous {
            true => "anonymous clients allowed".to_owned(),
            false => "anonymous clients refused".to_owned(),
        });
        Ok(Policy {
            allow_anonymous,
            passwords,
            acl,
            summary: parts.join(", "),
        })
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
