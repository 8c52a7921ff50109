//! SCRAM-SHA-256 end to end with the real binary: users set with `nanomq passwd` log in with
//! their password in CONNECT and with the SCRAM exchange (the client here, written from RFC
//! 5802, checks the broker's signature), re-authenticate, and are refused with 0x86 for a wrong
//! password; a user set with `--no-scram` and an unknown user are refused the same way.

#[allow(dead_code)] // the helpers this suite does not use serve the others
mod common;

use std::process::Command;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use nanomq::mqtt::{Auth, Connect, Packet, Properties, ProtocolVersion, ReasonCode};
use sha2::{Digest, Sha256};

use common::{unique_dir, Broker, PacketStream};

const NANOMQ: &str = env!("CARGO_BIN_EXE_nanomq");
const METHOD: &str = "SCRAM-SHA-256";
const TIMEOUT: Duration = Duration::from_secs(20);

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The client's side of one SCRAM-SHA-256 exchange.
struct Scram {
    password: Vec<u8>,
    first_bare: String,
    expected_server_final: String,
}

impl Scram {
    fn new(user: &str, password: &str) -> Scram {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).unwrap();
        Scram {
            password: password.as_bytes().to_vec(),
            first_bare: format!("n={user},r={}", Base64::encode_string(&nonce)),
            expected_server_final: String::new(),
        }
    }

    fn client_first(&self) -> Bytes {
        Bytes::from(format!("n,,{}", self.first_bare))
    }

    fn client_final(&mut self, server_first: &[u8]) -> Bytes {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let (mut nonce, mut salt, mut iterations) = ("", Vec::new(), 0);
        for attribute in server_first.split(',') {
            match attribute.split_at(2) {
                ("r=", v) => nonce = v,
                ("s=", v) => salt = Base64::decode_vec(v).unwrap(),
                ("i=", v) => iterations = v.parse().unwrap(),
                _ => {}
            }
        }
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(&self.password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(&Sha256::digest(client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
        self.expected_server_final = format!("v={}", Base64::encode_string(&server_signature));
        Bytes::from(format!(
            "{without_proof},p={}",
            Base64::encode_string(&proof)
        ))
    }

    /// The broker proves it holds the verifier.
    fn check_server_final(&self, properties: &Properties) {
        assert_eq!(properties.authentication_method.as_deref(), Some(METHOD));
        let data = properties
            .authentication_data
            .as_deref()
            .unwrap_or_default();
        assert_eq!(
            std::str::from_utf8(data).unwrap(),
            self.expected_server_final
        );
    }
}

fn auth(reason: ReasonCode, data: Bytes) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: Properties {
            authentication_method: Some(METHOD.into()),
            authentication_data: Some(data),
            ..Properties::default()
        },
    })
}

struct Client(PacketStream);

impl Client {
    fn open(port: u16) -> Client {
        Client(PacketStream::open(port, TIMEOUT))
    }

    fn send(&mut self, p: Packet) {
        self.0.send(&p).unwrap();
    }

    fn recv(&mut self) -> Option<Packet> {
        self.0.recv()
    }

    /// CONNECT with the user's password; CONNACK's reason.
    fn plain(port: u16, user: &str, password: &str) -> ReasonCode {
        let mut c = Client::open(port);
        c.send(Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            username: Some(user.into()),
            password: Some(Bytes::copy_from_slice(password.as_bytes())),
            ..Connect::default()
        })));
        match c.recv() {
            Some(Packet::ConnAck(a)) => a.reason,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The SCRAM exchange at CONNECT; the client and CONNACK's reason (server-final checked
    /// on success).
    fn scram(port: u16, user: &str, password: &str) -> (Client, ReasonCode) {
        let mut scram = Scram::new(user, password);
        let mut c = Client::open(port);
        c.send(Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            properties: Properties {
                authentication_method: Some(METHOD.into()),
                authentication_data: Some(scram.client_first()),
                ..Properties::default()
            },
            ..Connect::default()
        })));
        let challenge = match c.recv() {
            Some(Packet::Auth(a)) if a.reason == ReasonCode::CONTINUE_AUTHENTICATION => a,
            other => panic!("expected AUTH 0x18, got {other:?}"),
        };
        let server_first = challenge.properties.authentication_data.unwrap();
        c.send(auth(
            ReasonCode::CONTINUE_AUTHENTICATION,
            scram.client_final(&server_first),
        ));
        match c.recv() {
            Some(Packet::ConnAck(a)) => {
                if a.reason == ReasonCode::SUCCESS {
                    scram.check_server_final(&a.properties);
                }
                (c, a.reason)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Re-authentication (AUTH 0x19): true when it ends with AUTH 0x00 and a good signature.
    fn reauthenticate(&mut self, user: &str, password: &str) -> bool {
        let mut scram = Scram::new(user, password);
        self.send(auth(ReasonCode::RE_AUTHENTICATE, scram.client_first()));
        let Some(Packet::Auth(challenge)) = self.recv() else {
            return false;
        };
        let server_first = challenge.properties.authentication_data.unwrap();
        self.send(auth(
            ReasonCode::CONTINUE_AUTHENTICATION,
            scram.client_final(&server_first),
        ));
        match self.recv() {
            Some(Packet::Auth(a)) if a.reason == ReasonCode::SUCCESS => {
                scram.check_server_final(&a.properties);
                true
            }
            _ => false,
        }
    }
}

fn passwd(file: &str, user: &str, password: &str, extra: &[&str]) {
    let out = Command::new(NANOMQ)
        .args(["passwd", file, user, "--password", password])
        .args(extra)
        .output()
        .expect("run nanomq passwd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn passwd_users_log_in_with_their_password_or_with_scram() {
    let dir = unique_dir("nanomq-scram");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    let path = file.to_str().unwrap();
    passwd(path, "erin", "erin-pw", &[]);
    passwd(path, "frank", "frank-pw", &["--no-scram"]);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(':').collect()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0].len(), 3, "erin:HASH:VERIFIER: {text}");
    assert!(lines[0][1].starts_with("$argon2id$"), "{text}");
    assert!(lines[0][2].starts_with("$scram-sha-256$i=4096$"), "{text}");
    assert_eq!(lines[1].len(), 2, "frank:HASH only: {text}");

    let config =
        format!("[[listeners]]\nbind = \"127.0.0.1:0\"\n\n[auth]\npassword_file = \"{path}\"\n");
    let broker = Broker::start_nanomq(dir.clone(), &config);
    let port = broker.port;
    assert_eq!(Client::plain(port, "erin", "erin-pw"), ReasonCode::SUCCESS);
    assert_eq!(
        Client::plain(port, "frank", "frank-pw"),
        ReasonCode::SUCCESS
    );
    let (mut erin, reason) = Client::scram(port, "erin", "erin-pw");
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert!(erin.reauthenticate("erin", "erin-pw"));
    erin.send(Packet::PingReq);
    assert_eq!(erin.recv(), Some(Packet::PingResp));
    for (user, password) in [
        ("erin", "wrong"),
        ("frank", "frank-pw"),
        ("nobody", "erin-pw"),
    ] {
        let (mut c, reason) = Client::scram(port, user, password);
        assert_eq!(
            reason,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "{user}: {}",
            broker.log_text()
        );
        assert_eq!(c.recv(), None, "closed after the refusal");
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
