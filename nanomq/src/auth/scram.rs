//! SCRAM-SHA-256 (RFC 5802, RFC 7677), the server's side of the MQTT 5 enhanced authentication
//! method `SCRAM-SHA-256`. Pure: no I/O and no clock; the caller passes the server nonce in, so
//! the RFC 7677 test vector replays exactly.
//!
//! The exchange, in the Authentication Data of the packets named on the right:
//!
//! ```text
//! client-first   n,,n=USER,r=CNONCE                       CONNECT (or AUTH 0x19)
//! server-first   r=CNONCE+SNONCE,s=SALT,i=ITERATIONS      AUTH 0x18
//! client-final   c=biws,r=CNONCE+SNONCE,p=PROOF           AUTH 0x18
//! server-final   v=SIGNATURE                              CONNACK 0x00 (or AUTH 0x00)
//! ```
//!
//! [`ClientFirst::parse`] reads the first message and names the user, the caller looks up that
//! user's [`ScramVerifier`], [`start`] answers, and [`finish`] checks the proof and returns the
//! server signature, with which the client authenticates the server in turn.
//!
//! The server keeps a verifier, never the password: with SaltedPassword =
//! PBKDF2-HMAC-SHA-256(password, salt, i), StoredKey = SHA-256(HMAC(SaltedPassword, "Client
//! Key")) checks the client's proof and ServerKey = HMAC(SaltedPassword, "Server Key") signs the
//! answer. Checking a proof costs three HMACs and one hash, microseconds; the PBKDF2 work is the
//! client's.
//!
//! Supported: no channel binding (the `n` flag, or `y`, which says the client could bind but
//! thinks the server cannot: true here); `p=` (channel binding asked for), an authorization
//! identity (`a=`) and the mandatory extension `m=` are refused. User names are compared byte
//! for byte after `=2C`/`=3D` are decoded; no SASLprep, so a client that normalises a non-ASCII
//! name or password must have had it stored normalised.
//!
//! A user without a verifier (unknown, or known by a password hash only) gets a decoy: a salt
//! derived from the user name with a per-process random key, so it is the same on every attempt
//! while the process runs, and the iteration count real users have. The server-first message
//! does not tell such users apart, and the exchange fails at the proof after the same work.

use std::fmt;
use std::sync::OnceLock;

use base64ct::{Base64, Encoding};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::passwords::constant_time_eq;

/// The Authentication Method, as MQTT 5 clients name it (a SASL mechanism name).
pub const METHOD: &str = "SCRAM-SHA-256";
/// PBKDF2 iterations of a new verifier: RFC 7677's minimum.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Bytes of salt in a new verifier.
pub const SALT_LEN: usize = 16;
/// Random bytes in a server nonce (24 characters of base64).
const NONCE_LEN: usize = 18;
/// How a verifier starts in a password file.
const PREFIX: &str = "$scram-sha-256$";
const FORMAT: &str = "expected `$scram-sha-256$i=ITERATIONS$SALT$STOREDKEY$SERVERKEY`";

type Key = [u8; 32];

/// Why an exchange failed. Only [`ScramError::Proof`] and [`ScramError::UnknownUser`] are
/// about the credentials; the others are about the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message that does not follow RFC 5802's grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asks for channel binding, or client-final's `c=` is not client-first's
    /// header.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// A mandatory extension (`m=`).
    #[error("mandatory SCRAM extensions are not supported")]
    Extension,
    /// An authorization identity (`a=`).
    #[error("authorization identities are not supported")]
    AuthorizationIdentity,
    /// client-final's nonce is not the one server-first sent.
    #[error("the nonce does not match")]
    Nonce,
    /// The proof does not come from the password.
    #[error("wrong proof")]
    Proof,
    /// The user has no verifier (unknown, or a password hash only): the exchange ran against a
    /// decoy.
    #[error("unknown user, or a user without a SCRAM verifier")]
    UnknownUser,
}

impl ScramError {
    /// True when the credentials are wrong, false when a message is.
    pub fn is_bad_credentials(self) -> bool {
        matches!(self, ScramError::Proof | ScramError::UnknownUser)
    }
}

/// What the server stores for a user: salt, iterations, StoredKey and ServerKey.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Box<[u8]>,
    stored_key: Key,
    server_key: Key,
    /// Made up for a user without a verifier: no proof passes.
    decoy: bool,
}

/// Leaves the keys out of logs.
impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .field("decoy", &self.decoy)
            .finish_non_exhaustive()
    }
}

/// The password file form: `$scram-sha-256$i=ITERATIONS$SALT$STOREDKEY$SERVERKEY`, padded
/// standard base64 (no `:` and no `$`, so it sits in a `user:hash:verifier` line).
impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}i={}${}${}${}",
            self.iterations,
            Base64::encode_string(&self.salt),
            Base64::encode_string(&self.stored_key),
            Base64::encode_string(&self.server_key)
        )
    }
}

impl ScramVerifier {
    /// The verifier of `password` with `salt` and `iterations` (PBKDF2: costs what the
    /// iterations say).
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramVerifier {
        let salted: Key = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramVerifier {
            iterations,
            salt: salt.into(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, &[b"Server Key"]),
            decoy: false,
        }
    }

    /// A new verifier for `password`: [`SALT_LEN`] random bytes of salt from the operating
    /// system, [`DEFAULT_ITERATIONS`].
    pub fn generate(password: &[u8]) -> Result<ScramVerifier, getrandom::Error> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt)?;
        Ok(ScramVerifier::derive(password, &salt, DEFAULT_ITERATIONS))
    }

    /// The stand-in for a user without a verifier: salt and keys derived from the name with a
    /// per-process random key (stable while the process runs, unguessable outside it), the
    /// `iterations` real users have. No proof passes it.
    pub fn decoy(user: &str, iterations: u32) -> ScramVerifier {
        let key = decoy_key();
        let part = |label: &[u8]| hmac(key, &[label, b"\0", user.as_bytes()]);
        ScramVerifier {
            iterations,
            salt: part(b"salt")[..SALT_LEN].into(),
            stored_key: part(b"stored key"),
            server_key: part(b"server key"),
            decoy: true,
        }
    }

    /// Parses the password file form (see the [`Display`](fmt::Display) impl).
    pub fn parse(s: &str) -> Result<ScramVerifier, String> {
        let rest = s.strip_prefix(PREFIX).ok_or(FORMAT)?;
        let mut parts = rest.split('$');
        let (Some(iterations), Some(salt), Some(stored), Some(server), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(FORMAT.to_owned());
        };
        let iterations = match iterations.strip_prefix("i=").map(str::parse::<u32>) {
            Some(Ok(n)) if n > 0 => n,
            _ => return Err(format!("`{iterations}` is not `i=ITERATIONS`")),
        };
        let salt = match Base64::decode_vec(salt) {
            Ok(salt) if !salt.is_empty() => salt.into_boxed_slice(),
            Ok(_) => return Err("empty SCRAM salt".to_owned()),
            Err(_) => return Err("SCRAM salt is not padded base64".to_owned()),
        };
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: decode_key(stored, "StoredKey")?,
            server_key: decode_key(server, "ServerKey")?,
            decoy: false,
        })
    }

    /// PBKDF2 iterations.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }
}

fn decode_key(b64: &str, what: &str) -> Result<Key, String> {
    let bytes =
        Base64::decode_vec(b64).map_err(|_| format!("SCRAM {what} is not padded base64"))?;
    bytes
        .try_into()
        .map_err(|_| format!("SCRAM {what} is not 32 bytes"))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Key {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The key of decoy salts: random, once per process.
fn decoy_key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // std seeds its hash keys from the operating system as well, by its own means.
            use std::hash::BuildHasher;
            let seeded = std::collections::hash_map::RandomState::new();
            for (i, chunk) in key.chunks_mut(8).enumerate() {
                chunk.copy_from_slice(&seeded.hash_one(i).to_le_bytes());
            }
        }
        key
    })
}

/// A fresh server nonce: random bytes from the operating system, in base64 (printable and
/// without `,`, as RFC 5802 wants).
pub fn server_nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; NONCE_LEN];
    getrandom::fill(&mut bytes)?;
    Ok(Base64::encode_string(&bytes))
}

/// A parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// `n,,` or `y,,`: client-final's `c=` must be its base64.
    gs2_header: Box<str>,
    /// The message without the header: the start of AuthMessage.
    bare: Box<str>,
    /// The user name, `=2C` and `=3D` decoded.
    user: Box<str>,
    nonce: Box<str>,
}

impl ClientFirst {
    /// Parses `gs2-header client-first-message-bare` (RFC 5802 section 7).
    pub fn parse(data: &[u8]) -> Result<ClientFirst, ScramError> {
        let text = std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            _ if flag.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        if authzid.starts_with("a=") {
            return Err(ScramError::AuthorizationIdentity);
        }
        if !authzid.is_empty() {
            return Err(ScramError::Malformed("bad authorization identity"));
        }
        let mut attributes = bare.split(',');
        let first = attributes.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(ScramError::Extension);
        }
        let user = first
            .strip_prefix("n=")
            .ok_or(ScramError::Malformed("no user name"))?;
        let user = decode_saslname(user)?;
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        check_nonce(nonce)?;
        check_extensions(attributes)?;
        Ok(ClientFirst {
            gs2_header: text[..flag.len() + 2].into(),
            bare: bare.into(),
            user,
            nonce: nonce.into(),
        })
    }

    /// The user name the client authenticates as.
    pub fn user(&self) -> &str {
        &self.user
    }
}

/// `saslname`: `,` and `=` come as `=2C` and `=3D`; any other `=` is an error.
fn decode_saslname(s: &str) -> Result<Box<str>, ScramError> {
    if s.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad `=` escape in the user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out.into())
}

/// A nonce is one or more printable ASCII characters other than `,`.
fn check_nonce(nonce: &str) -> Result<(), ScramError> {
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7E).contains(&b) && b != b',')
    {
        return Err(ScramError::Malformed("bad nonce"));
    }
    Ok(())
}

/// Optional extensions (`x=value`) may follow; they are ignored, as RFC 5802 lets a server do.
fn check_extensions<'a>(attributes: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for a in attributes {
        let b = a.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_alphabetic() || b[1] != b'=' {
            return Err(ScramError::Malformed("bad attribute"));
        }
    }
    Ok(())
}

/// The server's side between server-first and client-final.
#[derive(Debug)]
pub struct ServerState {
    user: Box<str>,
    gs2_header: Box<str>,
    /// Client nonce and server nonce.
    nonce: Box<str>,
    /// client-first-message-bare "," server-first-message: AuthMessage without its end.
    auth_prefix: String,
    verifier: ScramVerifier,
}

impl ServerState {
    /// The user name from client-first.
    pub fn user(&self) -> &str {
        &self.user
    }
}

/// Answers client-first with server-first, for the user's verifier (or decoy) and a server
/// nonce from [`server_nonce`].
pub fn start(
    client_first: ClientFirst,
    verifier: ScramVerifier,
    server_nonce: &str,
) -> (ServerState, String) {
    let nonce = format!("{}{server_nonce}", client_first.nonce);
    let server_first = format!(
        "r={nonce},s={},i={}",
        Base64::encode_string(&verifier.salt),
        verifier.iterations
    );
    let auth_prefix = format!("{},{server_first}", client_first.bare);
    let state = ServerState {
        user: client_first.user,
        gs2_header: client_first.gs2_header,
        nonce: nonce.into(),
        auth_prefix,
        verifier,
    };
    (state, server_first)
}

/// Checks client-final against `state`; returns server-final (`v=SIGNATURE`) when the proof
/// comes from the password. The proof is compared in constant time, and a decoy costs the same
/// work as a real verifier.
pub fn finish(state: ServerState, client_final: &[u8]) -> Result<String, ScramError> {
    let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    // The proof is the last attribute (RFC 5802 section 7).
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or(ScramError::Malformed("no proof"))?;
    let mut attributes = without_proof.split(',');
    let binding = attributes
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or(ScramError::Malformed("no channel binding attribute"))?;
    let binding = Base64::decode_vec(binding)
        .map_err(|_| ScramError::Malformed("channel binding is not base64"))?;
    let nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::Malformed("no nonce"))?;
    check_extensions(attributes)?;
    let proof: Key = Base64::decode_vec(proof)
        .map_err(|_| ScramError::Malformed("proof is not base64"))?
        .try_into()
        .map_err(|_| ScramError::Malformed("proof is not 32 bytes"))?;
    if binding != state.gs2_header.as_bytes() {
        return Err(ScramError::ChannelBinding);
    }
    if nonce != &*state.nonce {
        return Err(ScramError::Nonce);
    }
    let auth_message = format!("{},{without_proof}", state.auth_prefix);
    let verifier = &state.verifier;
    let client_signature = hmac(&verifier.stored_key, &[auth_message.as_bytes()]);
    let mut client_key = proof;
    for (k, s) in client_key.iter_mut().zip(client_signature) {
        *k ^= s;
    }
    let stored_key: Key = Sha256::digest(client_key).into();
    let proven = constant_time_eq(&stored_key, &verifier.stored_key);
    let server_signature = hmac(&verifier.server_key, &[auth_message.as_bytes()]);
    if verifier.decoy {
        return Err(ScramError::UnknownUser);
    }
    if !proven {
        return Err(ScramError::Proof);
    }
    Ok(format!("v={}", Base64::encode_string(&server_signature)))
}
