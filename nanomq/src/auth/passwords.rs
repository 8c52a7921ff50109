//! The password file: one `user:hash[:scram]` line per user, managed with `nanomq passwd`.
//!
//! Hashes are argon2id PHC strings (`$argon2id$v=19$m=4096,t=3,p=1$SALT$HASH`), sized for small
//! devices: 4 MiB of memory and three passes cost tens of milliseconds on an ARM core. Mosquitto
//! password files are read too, so a device can move over with its users: `$7$` lines
//! (`$7$ITERATIONS$SALT$HASH`, PBKDF2-HMAC-SHA512, what `mosquitto_passwd` writes since 2.0)
//! and the older `$6$` lines (`$6$SALT$HASH`, SHA-512 of the password then the salt), salt and
//! hash in padded base64. `nanomq passwd` writes argon2id for every user it sets, so a migrated
//! file is upgraded user by user.
//!
//! A second field after another `:` holds the user's SCRAM-SHA-256 verifier, for MQTT 5
//! enhanced authentication (see [`super::scram`]):
//!
//! ```text
//! alice:$argon2id$v=19$m=4096,t=3,p=1$SALT$HASH:$scram-sha-256$i=4096$SALT$STOREDKEY$SERVERKEY
//! ```
//!
//! salt, StoredKey and ServerKey in padded base64. `nanomq passwd` writes it for every user it
//! sets, unless told not to; a user without one (every Mosquitto line, older nanomq lines)
//! cannot use SCRAM but logs in with its password as before. Neither form holds a `:` of its
//! own, so the first `:` ends the user name and the next one the password hash.
//!
//! Blank lines and lines starting with `#` are ignored; a user name cannot hold `:`. Plain-text
//! passwords are refused.
//!
//! Verification compares in constant time, and a user the file does not know still costs one
//! verification (against the first user's hash, or a built-in argon2id hash when the file is
//! empty), so timing does not tell which users exist.

use std::collections::HashMap;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha512};

use super::acl::LineError;
use super::scram::{ScramVerifier, DEFAULT_ITERATIONS};

/// Memory of a new argon2id hash, in KiB.
pub const ARGON2_MEMORY_KIB: u32 = 4096;
/// Passes over that memory.
pub const ARGON2_PASSES: u32 = 3;
/// Lanes; one, since a broker verifies on one blocking thread per CONNECT.
pub const ARGON2_LANES: u32 = 1;

/// Largest argon2 memory accepted from a file, in KiB: every verification running at once holds
/// this much, so a mistyped `m=` must not take a small device's memory.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;

/// What an unknown user is verified against when the file has no user: the parameters of a new
/// hash, and a hash no password gives (all zeros).
pub(crate) const DECOY: &str = "$argon2id$v=19$m=4096,t=3,p=1$AAAAAAAAAAAAAAAAAAAAAA\
                     $AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[cfg(test)]
thread_local! {
    /// Hashes computed on this thread: lets tests see that unknown users and missing passwords
    /// cost a full verification, without timing anything.
    pub(crate) static HASHES_COMPUTED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A parsed password file.
#[derive(Debug, Clone)]
pub struct PasswordFile {
    users: HashMap<Box<str>, User>,
    /// Verified for unknown users, so they cost what a known one does.
    decoy: StoredHash,
    /// Iterations of the decoy SCRAM verifiers of users without one: those of the file's first
    /// verifier, so that users with and without look alike.
    decoy_iterations: u32,
}

/// One line of the file.
#[derive(Debug, Clone)]
struct User {
    hash: StoredHash,
    scram: Option<ScramVerifier>,
}

/// One user's stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredHash {
    /// argon2 (any variant the PHC string names; `nanomq passwd` writes argon2id).
    Argon2(Box<PasswordHash>),
    /// Mosquitto `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        /// PBKDF2 rounds.
        iterations: u32,
        /// Decoded salt.
        salt: Box<[u8]>,
        /// Decoded derived key.
        hash: Box<[u8]>,
    },
    /// Mosquitto `$6$`: SHA-512 of password then salt.
    Sha512 {
        /// Decoded salt.
        salt: Box<[u8]>,
        /// Decoded digest.
        hash: Box<[u8]>,
    },
}

impl PasswordFile {
    /// Parses the text of a password file; the error names the first bad line.
    pub fn parse(text: &str) -> Result<PasswordFile, LineError> {
        let mut users: HashMap<Box<str>, User> = HashMap::new();
        let mut first_line: HashMap<Box<str>, usize> = HashMap::new();
        let mut decoy = None;
        let mut decoy_iterations = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |message: String| LineError { line, message };
            let Some((user, hash)) = split_line(raw).map_err(|m| err(m.to_owned()))? else {
                continue;
            };
            let (hash, scram) = match hash.split_once(':') {
                Some((hash, scram)) => (hash.trim(), Some(scram.trim())),
                None => (hash, None),
            };
            let hash = StoredHash::parse(hash).map_err(|m| err(format!("user `{user}`: {m}")))?;
            let scram = scram
                .map(ScramVerifier::parse)
                .transpose()
                .map_err(|m| err(format!("user `{user}`: {m}")))?;
            if let Some(first) = first_line.get(user) {
                return Err(err(format!("user `{user}` again (first on line {first})")));
            }
            first_line.insert(user.into(), line);
            decoy.get_or_insert_with(|| hash.clone());
            if let Some(v) = &scram {
                decoy_iterations.get_or_insert(v.iterations());
            }
            users.insert(user.into(), User { hash, scram });
        }
        let decoy = match decoy {
            Some(d) => d,
            None => StoredHash::parse(DECOY).map_err(|m| LineError {
                line: 0,
                message: format!("built-in decoy hash: {m}"),
            })?,
        };
        Ok(PasswordFile {
            users,
            decoy,
            decoy_iterations: decoy_iterations.unwrap_or(DEFAULT_ITERATIONS),
        })
    }

    /// Number of users, for log lines.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when the file names no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `user` knows its password. CPU-heavy (tens of milliseconds for argon2id): call it
    /// from a blocking thread. A missing password never matches, and an unknown user or a missing
    /// password cost one verification all the same.
    pub fn verify(&self, user: &str, password: Option<&[u8]>) -> bool {
        match (self.users.get(user).map(|u| &u.hash), password) {
            (Some(hash), Some(password)) => hash.verify(password),
            (Some(hash), None) => {
                hash.verify(b"");
                false
            }
            (None, password) => {
                self.decoy.verify(password.unwrap_or_default());
                false
            }
        }
    }

    /// `user`'s SCRAM-SHA-256 verifier, or a decoy ([`ScramVerifier::decoy`]) for a user the
    /// file does not know or knows by a password hash only. Cheap (three HMACs); the decoy is
    /// made for every user, so the lookup costs the same either way.
    pub fn scram_verifier(&self, user: &str) -> ScramVerifier {
        let decoy = ScramVerifier::decoy(user, self.decoy_iterations);
        match self.users.get(user).and_then(|u| u.scram.as_ref()) {
            Some(verifier) => verifier.clone(),
            None => decoy,
        }
    }
}

/// Splits a line into user and hash; `Ok(None)` for blank and comment lines.
pub(crate) fn split_line(raw: &str) -> Result<Option<(&str, &str)>, &'static str> {
    let line = raw.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return Ok(None);
    }
    let Some((user, hash)) = line.split_once(':') else {
        return Err("expected `user:hash`");
    };
    if user.is_empty() {
        return Err("empty user name");
    }
    Ok(Some((user, hash.trim())))
}

/// Checks that `user` can be written to a password file and named in an ACL rule.
pub fn check_user_name(user: &str) -> Result<(), &'static str> {
    if user.is_empty() {
        return Err("the user name is empty");
    }
    if user.contains(':') {
        return Err("a user name cannot hold `:`");
    }
    if user.starts_with('#') {
        return Err("a user name cannot start with `#` (it would read as a comment)");
    }
    if user.chars().any(char::is_control) {
        return Err("a user name cannot hold control characters");
    }
    if user.len() > usize::from(u16::MAX) {
        return Err("a user name has at most 65535 bytes");
    }
    Ok(())
}

impl StoredHash {
    /// Parses the hash part of a line.
    pub fn parse(s: &str) -> Result<StoredHash, String> {
        if s.starts_with("$argon2") {
            let phc = PasswordHash::new(s).map_err(|e| format!("bad argon2 PHC string: {e}"))?;
            Algorithm::try_from(phc.algorithm.as_str())
                .map_err(|e| format!("bad argon2 PHC string: {e}"))?;
            if let Some(version) = phc.version {
                Version::try_from(version).map_err(|e| format!("bad argon2 version: {e}"))?;
            }
            let params =
                Params::try_from(&phc).map_err(|e| format!("bad argon2 parameters: {e}"))?;
            if params.m_cost() > MAX_ARGON2_MEMORY_KIB {
                return Err(format!(
                    "argon2 memory m={} KiB is more than the {MAX_ARGON2_MEMORY_KIB} KiB accepted",
                    params.m_cost()
                ));
            }
            if phc.salt.is_none() || phc.hash.is_none() {
                return Err("argon2 PHC string without salt or hash".to_owned());
            }
            return Ok(StoredHash::Argon2(Box::new(phc)));
        }
        if let Some(rest) = s.strip_prefix("$7$") {
            let mut parts = rest.split('$');
            let (Some(iterations), Some(salt), Some(hash), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err("expected `$7$ITERATIONS$SALT$HASH`".to_owned());
            };
            let iterations = match iterations.parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("`{iterations}` is not a PBKDF2 iteration count")),
            };
            return Ok(StoredHash::Pbkdf2Sha512 {
                iterations,
                salt: decode(salt, "salt")?,
                hash: decode_digest(hash)?,
            });
        }
        if let Some(rest) = s.strip_prefix("$6$") {
            let Some((salt, hash)) = rest.split_once('$') else {
                return Err("expected `$6$SALT$HASH`".to_owned());
            };
            return Ok(StoredHash::Sha512 {
                salt: decode(salt, "salt")?,
                hash: decode_digest(hash)?,
            });
        }
        if s.starts_with("$scram-sha-256$") {
            return Err(
                "a SCRAM verifier comes after a password hash: `user:HASH:$scram-sha-256$...`"
                    .to_owned(),
            );
        }
        Err(
            "unknown hash: expected `$argon2id$...` (nanomq passwd), or Mosquitto's `$7$...` or \
             `$6$...`; plain-text passwords are not accepted"
                .to_owned(),
        )
    }

    /// Whether `password` gives this hash; compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        #[cfg(test)]
        HASHES_COMPUTED.with(|n| n.set(n.get() + 1));
        match self {
            StoredHash::Argon2(phc) => {
                // The algorithm, version and parameters come from the PHC string.
                Argon2::default().verify_password(password, &**phc).is_ok()
            }
            StoredHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                constant_time_eq(&out, hash)
            }
            StoredHash::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                constant_time_eq(&digest.finalize(), hash)
            }
        }
    }
}

fn decode(b64: &str, what: &str) -> Result<Box<[u8]>, String> {
    match Base64::decode_vec(b64) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes.into_boxed_slice()),
        Ok(_) => Err(format!("empty {what}")),
        Err(_) => Err(format!("{what} is not padded base64")),
    }
}

/// A SHA-512 sized hash (64 bytes), the only size Mosquitto writes.
fn decode_digest(b64: &str) -> Result<Box<[u8]>, String> {
    let hash = decode(b64, "hash")?;
    if hash.len() != 64 {
        return Err(format!("hash is {} bytes, expected 64", hash.len()));
    }
    Ok(hash)
}

/// Equal length and contents, in time that depends only on the length.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// Hashes `password` for a new password file line: argon2id with [`ARGON2_MEMORY_KIB`],
/// [`ARGON2_PASSES`] and [`ARGON2_LANES`], a random 16-byte salt from the operating system.
pub fn hash_password(password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    Ok(argon2.hash_password(password)?.to_string())
}

#[cfg(test)]
pub(crate) fn hash_password_with(password: &[u8], memory_kib: u32, passes: u32) -> String {
    let params = Params::new(memory_kib, passes, 1, None).unwrap();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    argon2.hash_password(password).unwrap().to_string()
}
