//! Password file: argon2id round trips, Mosquitto's `$7$` and `$6$` hashes (fixed lines, and
//! fresh ones from `mosquitto_passwd` when it is installed), unknown users, malformed lines.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::passwords::{
    hash_password, hash_password_with, PasswordFile, StoredHash, DECOY, HASHES_COMPUTED,
};

/// Written by Debian's mosquitto_passwd 2.0.11: `mosquitto_passwd -c -b FILE alice 'correct
/// horse'` ($7$, its default) and `-H sha512` for carol ($6$), and `-I 1000` for dave.
const MOSQUITTO_FILE: &str = "\
alice:$7$101$M89j0i0Gr9S0Mwb3$1TLas0mUfSCcZNaGV2pDjX5pWxq2wA+gRWwWxUyTh09zl50yWdOg7GU+TkYKPSg0+my1WXo+1oZdjy3OmL3QFg==
carol:$6$qXmesPk2RmGI3uW6$h6ZAdxqmnlQtMxBmNRp2Na1NEKl+4jX+5FxOHI/kmpLYDMrT7pc2MlGzndRv99OtN/jcoxQeOReoAWNr8yKAMw==
dave:$7$1000$hBhLrYbSZ7SHYFdU$kYKYG/LLUqecoBer8NZvqgysAz8qGDUde+ieYlEL1EedRq2atZFpDuJ9Ez8+lx8+0pzSI6xKAOVRREE9N3tycQ==
";

const MOSQUITTO_PASSWD: &str = "/usr/bin/mosquitto_passwd";

/// Cheap argon2id parameters: the tests check the logic, not the cost.
fn cheap(password: &str) -> String {
    hash_password_with(password.as_bytes(), 64, 1)
}

#[test]
fn argon2id_round_trip() {
    let phc = hash_password(b"s3cret").unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=4096,t=3,p=1$"), "{phc}");
    let hash = StoredHash::parse(&phc).unwrap();
    assert!(hash.verify(b"s3cret"));
    assert!(!hash.verify(b"s3cret "));
    assert!(!hash.verify(b""));
    // A fresh salt each time.
    assert_ne!(hash_password(b"s3cret").unwrap(), phc);
}

#[test]
fn password_file_with_argon2id_users() {
    let text = format!(
        "# users\n\nalice:{}\nbob:{}\n",
        cheap("a-pw"),
        cheap("b-pw")
    );
    let file = PasswordFile::parse(&text).unwrap();
    assert_eq!(file.len(), 2);
    assert!(file.verify("alice", Some(b"a-pw")));
    assert!(file.verify("bob", Some(b"b-pw")));
    assert!(
        !file.verify("alice", Some(b"b-pw")),
        "another user's password"
    );
    assert!(!file.verify("alice", None), "no password");
    assert!(!file.verify("carol", Some(b"a-pw")), "unknown user");
    assert!(
        !file.verify("Alice", Some(b"a-pw")),
        "user names are case-sensitive"
    );
}

#[test]
fn mosquitto_hashes_from_a_fixed_file() {
    let file = PasswordFile::parse(MOSQUITTO_FILE).unwrap();
    assert_eq!(file.len(), 3);
    assert!(file.verify("alice", Some(b"correct horse")));
    assert!(!file.verify("alice", Some(b"correct horsE")));
    assert!(file.verify("carol", Some(b"old style")));
    assert!(!file.verify("carol", Some(b"old styl")));
    assert!(file.verify("dave", Some(b"pw")));
    assert!(!file.verify("dave", Some(b"")));
    assert!(matches!(
        StoredHash::parse(
            MOSQUITTO_FILE
                .lines()
                .nth(2)
                .unwrap()
                .split_once(':')
                .unwrap()
                .1
        ),
        Ok(StoredHash::Pbkdf2Sha512 {
            iterations: 1000,
            ..
        })
    ));
}

/// The same with lines `mosquitto_passwd` writes now, when it is installed.
#[test]
fn mosquitto_hashes_from_mosquitto_passwd() {
    if !Path::new(MOSQUITTO_PASSWD).exists() {
        println!("skipped: {MOSQUITTO_PASSWD} is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("nanomq-mosq-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("passwd");
    let run = |args: &[&str]| {
        let status = Command::new(MOSQUITTO_PASSWD)
            .args(args)
            .status()
            .expect("run mosquitto_passwd");
        assert!(status.success(), "mosquitto_passwd {args:?}: {status}");
    };
    let file = path.to_str().unwrap();
    run(&["-c", "-b", file, "pbkdf2-user", "pass word"]);
    run(&["-H", "sha512", "-b", file, "sha512-user", "päss"]);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(text.contains("pbkdf2-user:$7$"), "{text}");
    assert!(text.contains("sha512-user:$6$"), "{text}");
    let parsed = PasswordFile::parse(&text).unwrap();
    assert!(parsed.verify("pbkdf2-user", Some(b"pass word")));
    assert!(!parsed.verify("pbkdf2-user", Some(b"pass  word")));
    assert!(parsed.verify("sha512-user", Some("päss".as_bytes())));
    assert!(!parsed.verify("sha512-user", Some(b"pass")));
}

#[test]
fn malformed_lines_are_named() {
    let good = cheap("x");
    let cases = [
        (format!("a:{good}\nplain\n"), 2, "expected `user:hash`"),
        (format!("a:{good}\n\n:{good}\n"), 3, "empty user name"),
        ("a:hunter2\n".to_owned(), 1, "plain-text passwords are not accepted"),
        (format!("a:{good}\n# c\na:{good}\n"), 3, "again (first on line 1)"),
        ("a:$7$x$AAAA$AAAA\n".to_owned(), 1, "iteration count"),
        ("a:$7$101$!!!!$AAAA\n".to_owned(), 1, "salt is not padded base64"),
        ("a:$7$101$AAAA$AAAA\n".to_owned(), 1, "hash is 3 bytes, expected 64"),
        ("a:$6$AAAA\n".to_owned(), 1, "expected `$6$SALT$HASH`"),
        ("a:$argon2id$v=19$m=4096\n".to_owned(), 1, "argon2"),
        (
            "a:$argon2id$v=19$m=1048576,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
                .to_owned(),
            1,
            "more than the 262144 KiB accepted",
        ),
    ];
    for (text, line, message) in cases {
        let err = PasswordFile::parse(&text).expect_err(&text);
        assert_eq!(err.line, line, "{text:?}: {err:?}");
        assert!(err.message.contains(message), "{text:?}: {err:?}");
    }
}

/// Hashes `f` computes on this thread.
fn hashes_computed(f: impl FnOnce()) -> u32 {
    let before = HASHES_COMPUTED.with(|n| n.get());
    f();
    HASHES_COMPUTED.with(|n| n.get()) - before
}

/// The argon2 parameters (`m=...,t=...,p=...`) of a PHC string.
fn argon2_parameters(phc: &str) -> &str {
    phc.split('$').nth(3).unwrap()
}

#[test]
fn empty_file_refuses_everyone_at_full_cost() {
    let file = PasswordFile::parse("# nobody yet\n").unwrap();
    assert!(file.is_empty());
    assert_eq!(
        hashes_computed(|| assert!(!file.verify("anyone", Some(b"")))),
        1
    );
    // The built-in decoy hashes with the parameters of a new password.
    let new = hash_password(b"pw").unwrap();
    assert_eq!(argon2_parameters(DECOY), argon2_parameters(&new));
    assert!(StoredHash::parse(DECOY).is_ok());
}

#[test]
fn unknown_users_cost_a_verification() {
    // A known user, an unknown one and a missing password each cost exactly one hash: none
    // of them answers early.
    let file = PasswordFile::parse(&format!("u:{}\n", hash_password(b"pw").unwrap())).unwrap();
    assert_eq!(
        hashes_computed(|| assert!(file.verify("u", Some(b"pw")))),
        1
    );
    assert_eq!(
        hashes_computed(|| assert!(!file.verify("u", Some(b"wrong")))),
        1
    );
    assert_eq!(
        hashes_computed(|| assert!(!file.verify("nobody", Some(b"pw")))),
        1
    );
    assert_eq!(hashes_computed(|| assert!(!file.verify("u", None))), 1);
}

/// How long one CONNECT's verification takes with the default parameters. Prints, does not
/// assert: `cargo test --release -p nanomq --lib argon2_verify_time -- --nocapture`.
#[test]
fn argon2_verify_time() {
    let hash = StoredHash::parse(&hash_password(b"pw").unwrap()).unwrap();
    let rounds = 5;
    let t = Instant::now();
    for _ in 0..rounds {
        assert!(hash.verify(b"pw"));
    }
    let per = t.elapsed() / rounds;
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("argon2id m=4096 KiB, t=3, p=1: {per:?} per verification ({profile} build)");
}
