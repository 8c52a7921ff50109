//! SCRAM-SHA-256: RFC 7677's test vector replayed byte for byte, wrong proofs, malformed
//! messages, decoys for unknown users, and verifiers in the password file.

use base64ct::{Base64, Encoding};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::passwords::{hash_password_with, PasswordFile};
use super::scram::{finish, start, ClientFirst, ScramError, ScramVerifier, DEFAULT_ITERATIONS};

// RFC 7677 section 3.
const RFC_PASSWORD: &[u8] = b"pencil";
const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_verifier() -> ScramVerifier {
    let salt = Base64::decode_vec(RFC_SALT).unwrap();
    ScramVerifier::derive(RFC_PASSWORD, &salt, 4096)
}

/// The RFC's exchange up to server-first.
fn rfc_start() -> super::scram::ServerState {
    let first = ClientFirst::parse(RFC_CLIENT_FIRST.as_bytes()).unwrap();
    let (state, server_first) = start(first, rfc_verifier(), RFC_SERVER_NONCE);
    assert_eq!(server_first, RFC_SERVER_FIRST);
    state
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A client's side, written from RFC 5802 apart from the server code: client-final for
/// `password`, given client-first-bare, server-first and the channel binding attribute.
fn client_final(password: &[u8], first_bare: &str, server_first: &str, c: &str) -> String {
    let mut nonce = "";
    let mut salt = Vec::new();
    let mut iterations = 0;
    for attribute in server_first.split(',') {
        match attribute.split_at(2) {
            ("r=", v) => nonce = v,
            ("s=", v) => salt = Base64::decode_vec(v).unwrap(),
            ("i=", v) => iterations = v.parse().unwrap(),
            _ => {}
        }
    }
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, &salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let without_proof = format!("c={c},r={nonce}");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    format!("{without_proof},p={}", Base64::encode_string(&proof))
}

#[test]
fn rfc7677_vector_gives_the_exact_messages() {
    let state = rfc_start();
    assert_eq!(state.user(), "user");
    assert_eq!(
        finish(state, RFC_CLIENT_FINAL.as_bytes()).as_deref(),
        Ok(RFC_SERVER_FINAL)
    );
    // The client side used by the other tests agrees with the RFC.
    let bare = &RFC_CLIENT_FIRST[3..];
    assert_eq!(
        client_final(RFC_PASSWORD, bare, RFC_SERVER_FIRST, "biws"),
        RFC_CLIENT_FINAL
    );
}

#[test]
fn a_wrong_proof_fails() {
    let bare = &RFC_CLIENT_FIRST[3..];
    let wrong = client_final(b"pencil2", bare, RFC_SERVER_FIRST, "biws");
    assert_eq!(
        finish(rfc_start(), wrong.as_bytes()),
        Err(ScramError::Proof)
    );
    // One bit off in the RFC's own proof.
    let flipped = RFC_CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
    assert_eq!(
        finish(rfc_start(), flipped.as_bytes()),
        Err(ScramError::Proof)
    );
    assert!(ScramError::Proof.is_bad_credentials());
}

#[test]
fn malformed_client_first_messages_are_refused() {
    use ScramError::*;
    let cases: &[(&[u8], ScramError)] = &[
        (b"", Malformed("no GS2 header")),
        (b"n,", Malformed("no GS2 header")),
        (b"n,,", Malformed("no user name")),
        (b"n,,r=abc", Malformed("no user name")),
        (b"n,,n=user", Malformed("no nonce")),
        (b"n,,n=user,x=abc", Malformed("no nonce")),
        (b"n,,n=,r=abc", Malformed("empty user name")),
        (b"n,,n=user,r=", Malformed("bad nonce")),
        (b"n,,n=user,r=a b", Malformed("bad nonce")),
        (
            b"n,,n=us=er,r=abc",
            Malformed("bad `=` escape in the user name"),
        ),
        (
            b"n,,n=user=2,r=abc",
            Malformed("bad `=` escape in the user name"),
        ),
        (b"n,,n=user,r=abc,bad", Malformed("bad attribute")),
        (b"n,,n=user\xff,r=abc", Malformed("not UTF-8")),
        // Channel binding flags other than n and y.
        (b"p=tls-unique,,n=user,r=abc", ChannelBinding),
        (b"p=tls-server-end-point,,n=user,r=abc", ChannelBinding),
        (b"x,,n=user,r=abc", Malformed("bad channel binding flag")),
        (b",,n=user,r=abc", Malformed("bad channel binding flag")),
        (b"N,,n=user,r=abc", Malformed("bad channel binding flag")),
        (b"n,a=admin,n=user,r=abc", AuthorizationIdentity),
        (b"n,x,n=user,r=abc", Malformed("bad authorization identity")),
        (b"n,,m=ext,n=user,r=abc", Extension),
    ];
    for (message, expected) in cases {
        assert_eq!(
            ClientFirst::parse(message),
            Err(*expected),
            "{}",
            String::from_utf8_lossy(message)
        );
        assert!(!expected.is_bad_credentials());
    }
    // Escapes decode; optional extensions are ignored.
    let first = ClientFirst::parse(b"n,,n=a=2Cb=3Dc,r=abc,x=ignored").unwrap();
    assert_eq!(first.user(), "a,b=c");
}

#[test]
fn malformed_client_final_messages_are_refused() {
    use ScramError::*;
    let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let proof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let cases = [
        (format!("c=biws,r={nonce}"), Malformed("no proof")),
        (
            format!("r={nonce},p={proof}"),
            Malformed("no channel binding attribute"),
        ),
        (format!("c=biws,p={proof}"), Malformed("no nonce")),
        (
            format!("c=biws,r={nonce},p=!!!!"),
            Malformed("proof is not base64"),
        ),
        (
            format!("c=biws,r={nonce},p=AAAA"),
            Malformed("proof is not 32 bytes"),
        ),
        (
            format!("c=b!ws,r={nonce},p={proof}"),
            Malformed("channel binding is not base64"),
        ),
        (
            format!("c=biws,r={nonce},1=x,p={proof}"),
            Malformed("bad attribute"),
        ),
        // `y,,` where client-first said `n,,`, and a header with channel binding data.
        (format!("c=eSws,r={nonce},p={proof}"), ChannelBinding),
        (format!("c=biwsAAAA,r={nonce},p={proof}"), ChannelBinding),
        // Nonce mismatch: the client's part only, another server part, one character more.
        (format!("c=biws,r=rOprNGfwEbeRWgbNEkqO,p={proof}"), Nonce),
        (
            format!("c=biws,r=rOprNGfwEbeRWgbNEkqOxxxx,p={proof}"),
            Nonce,
        ),
        (format!("c=biws,r={nonce}x,p={proof}"), Nonce),
    ];
    for (message, expected) in cases {
        assert_eq!(
            finish(rfc_start(), message.as_bytes()),
            Err(expected),
            "{message}"
        );
    }
    assert_eq!(
        finish(rfc_start(), b"c=biws,r=\xff,p=AAAA"),
        Err(Malformed("not UTF-8"))
    );
}

#[test]
fn the_y_flag_is_accepted_and_must_be_repeated() {
    // `y`: the client could bind a channel but thinks the server cannot, which is true.
    let verifier = rfc_verifier();
    let first = ClientFirst::parse(b"y,,n=user,r=cnonce").unwrap();
    let (state, server_first) = start(first, verifier.clone(), "snonce");
    let answer = client_final(RFC_PASSWORD, "n=user,r=cnonce", &server_first, "eSws");
    assert!(finish(state, answer.as_bytes()).is_ok());
    // The same answer with `c=biws` (n,,) is a channel binding mismatch.
    let first = ClientFirst::parse(b"y,,n=user,r=cnonce").unwrap();
    let (state, server_first) = start(first, verifier, "snonce");
    let answer = client_final(RFC_PASSWORD, "n=user,r=cnonce", &server_first, "biws");
    assert_eq!(
        finish(state, answer.as_bytes()),
        Err(ScramError::ChannelBinding)
    );
}

#[test]
fn verifier_round_trips_through_its_text_form() {
    let v = rfc_verifier();
    let text = v.to_string();
    assert!(
        text.starts_with("$scram-sha-256$i=4096$W22ZaJ0SNY7soEsUEjb6gQ==$"),
        "{text}"
    );
    assert!(!text.contains(':'));
    assert_eq!(ScramVerifier::parse(&text), Ok(v));
    let fresh = ScramVerifier::generate(b"pw").unwrap();
    assert_eq!(fresh.iterations(), DEFAULT_ITERATIONS);
    assert_ne!(
        fresh,
        ScramVerifier::generate(b"pw").unwrap(),
        "a fresh salt each time"
    );
    assert!(
        !format!("{fresh:?}").contains(&fresh.to_string()[20..40]),
        "no keys in Debug"
    );
    let key = Base64::encode_string(&[7u8; 32]);
    for bad in [
        "$scram-sha-256$i=4096$c2FsdA==$AAAA".to_owned(),
        format!("$scram-sha-256$i=0$c2FsdA==${key}${key}"),
        format!("$scram-sha-256$4096$c2FsdA==${key}${key}"),
        format!("$scram-sha-256$i=4096$$${key}"),
        format!("$scram-sha-256$i=4096$c2FsdA==$AAAA${key}"),
        format!("$scram-sha-256$i=4096$c2FsdA==${key}${key}$x"),
        format!("$scram-sha-1$i=4096$c2FsdA==${key}${key}"),
    ] {
        assert!(ScramVerifier::parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn unknown_users_get_a_stable_decoy_and_fail_at_the_proof() {
    let a = ScramVerifier::decoy("mallory", 4096);
    assert_eq!(a, ScramVerifier::decoy("mallory", 4096), "stable");
    assert_ne!(a, ScramVerifier::decoy("trudy", 4096));
    let first = ClientFirst::parse(b"n,,n=mallory,r=cnonce").unwrap();
    let (state, server_first) = start(first, a, "snonce");
    // Looks like a real user's: a 16-byte salt, the usual iterations.
    let salt = server_first.split(',').nth(1).unwrap();
    assert_eq!(Base64::decode_vec(&salt[2..]).unwrap().len(), 16);
    assert!(server_first.ends_with(",i=4096"), "{server_first}");
    let answer = client_final(b"any", "n=mallory,r=cnonce", &server_first, "biws");
    let err = finish(state, answer.as_bytes()).unwrap_err();
    assert_eq!(err, ScramError::UnknownUser);
    assert!(err.is_bad_credentials());
}

#[test]
fn password_file_keeps_verifiers_beside_the_hashes() {
    let argon = hash_password_with(b"pw", 64, 1);
    let scram = ScramVerifier::derive(b"pw", b"0123456789abcdef", 1000);
    let text = format!(
        "alice:{argon}:{scram}\nbob:{argon}\ncarol:$6$c2FsdA==${}\n",
        Base64::encode_string(&[0u8; 64])
    );
    let file = PasswordFile::parse(&text).unwrap();
    assert_eq!(file.len(), 3);
    // Plain passwords still go through the hash.
    assert!(file.verify("alice", Some(b"pw")));
    assert!(!file.verify("alice", Some(b"nope")));
    assert_eq!(file.scram_verifier("alice"), scram);
    // bob (argon2id only) and strangers get decoys with the file's iteration count.
    for user in ["bob", "carol", "nobody"] {
        let v = file.scram_verifier(user);
        assert_ne!(v, scram);
        assert_eq!(v.iterations(), 1000, "{user}");
        let first = ClientFirst::parse(format!("n,,n={user},r=c").as_bytes()).unwrap();
        let (state, server_first) = start(first, v, "s");
        let answer = client_final(b"pw", &format!("n={user},r=c"), &server_first, "biws");
        assert_eq!(
            finish(state, answer.as_bytes()),
            Err(ScramError::UnknownUser)
        );
    }
    // A file without verifiers shows the default count.
    let plain = PasswordFile::parse(&format!("bob:{argon}\n")).unwrap();
    assert_eq!(plain.scram_verifier("bob").iterations(), DEFAULT_ITERATIONS);
}

#[test]
fn bad_verifier_fields_name_their_line() {
    let argon = hash_password_with(b"pw", 64, 1);
    let scram = ScramVerifier::derive(b"pw", b"salt", 10).to_string();
    let cases = [
        (
            format!("a:{argon}\nb:{argon}:$scram-sha-256$i=x$a$b$c\n"),
            2,
            "i=ITERATIONS",
        ),
        (format!("a:{argon}:{scram}:extra\n"), 1, "not padded base64"),
        (format!("a:{scram}\n"), 1, "comes after a password hash"),
        (format!("a:{argon}:\n"), 1, "expected `$scram-sha-256$"),
    ];
    for (text, line, message) in cases {
        let e = PasswordFile::parse(&text).unwrap_err();
        assert_eq!(e.line, line, "{text}");
        assert!(e.message.contains(message), "{}", e.message);
    }
}
