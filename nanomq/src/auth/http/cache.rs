//! Answers of the auth service, kept for a while so a client reconnecting or publishing again
//! does not cost another request.
//!
//! Entries are keyed by a hash of what the question was made of (for CONNECT that includes
//! the password): the first 256 bits of its SHA-512, which the password file already links in
//! (SHA-256 would add 10 KiB of code for the same strength). The cache holds no user name,
//! topic or password in the clear, and every entry has the same small size. The cache is bounded: when full, expired entries go first,
//! then an eighth of the entries, picked by the hash map's random order, so a flood of
//! distinct questions costs amortised constant time per insert. The lock is held for one map
//! operation and never across an await.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha512};
use tokio::time::Instant;

use super::Answer;

/// A question's digest.
pub type CacheKey = [u8; 32];

/// Builds a [`CacheKey`] from the question's parts; each part is length-prefixed, so no two
/// different questions feed the hash the same bytes.
#[derive(Debug, Clone)]
pub struct KeyBuilder(Sha512);

impl KeyBuilder {
    /// Starts a key for a question of `kind` (`b"connect"`, `b"acl"`).
    pub fn new(kind: &[u8]) -> KeyBuilder {
        let mut k = KeyBuilder(Sha512::new());
        k.part(kind);
        k
    }

    /// Adds one part.
    pub fn part(&mut self, bytes: &[u8]) -> &mut KeyBuilder {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        self.0.update(len.to_be_bytes());
        self.0.update(bytes);
        self
    }

    /// The key: SHA-512 truncated to 256 bits.
    pub fn finish(self) -> CacheKey {
        let digest = self.0.finalize();
        let mut key = [0; 32];
        key.copy_from_slice(&digest[..32]);
        key
    }
}

/// Answers by question, each for `ttl`; at most `max_entries` of them.
#[derive(Debug)]
pub struct AnswerCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<CacheKey, (Answer, Instant)>>,
}

impl AnswerCache {
    /// A cache keeping answers for `ttl` (zero: keeps nothing).
    pub fn new(ttl: Duration, max_entries: usize) -> AnswerCache {
        AnswerCache {
            ttl,
            max_entries: max_entries.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How long an answer is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The answer to `key` if one is kept and not expired at `now`, and when it expires.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Option<(Answer, Instant)> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut entries = self.lock();
        match entries.get(key) {
            Some(&(answer, expires)) if expires > now => Some((answer, expires)),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `answer` to `key` until `now` plus the TTL; returns that instant.
    pub fn insert(&self, key: CacheKey, answer: Answer, now: Instant) -> Instant {
        let expires = now + self.ttl;
        if self.ttl.is_zero() {
            return expires;
        }
        let mut entries = self.lock();
        if entries.len() >= self.max_entries && !entries.contains_key(&key) {
            entries.retain(|_, (_, e)| *e > now);
            if entries.len() >= self.max_entries {
                let drop = (self.max_entries / 8).max(1);
                let victims: Vec<CacheKey> = entries.keys().take(drop).copied().collect();
                for k in victims {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(key, (answer, expires));
        expires
    }

    /// Number of answers kept, expired ones included until they are next touched.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, (Answer, Instant)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
