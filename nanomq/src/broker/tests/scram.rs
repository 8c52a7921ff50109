//! Enhanced authentication with SCRAM-SHA-256 seen from a client that speaks it (written here
//! from RFC 5802, apart from the broker's code): the full exchange with the server's signature
//! checked, wrong passwords, unknown users and users without a verifier alike, other methods,
//! user name rules, protocol errors before CONNACK, the CONNECT timeout, 3.1.1 clients, the ACL
//! and session owner of a SCRAM user, and re-authentication.

use std::path::PathBuf;

use base64ct::{Base64, Encoding};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::*;
use crate::auth::passwords::hash_password_with;
use crate::auth::scram::ScramVerifier;
use crate::mqtt::{Auth, PubAck, Publish};

const METHOD: &str = "SCRAM-SHA-256";

/// carol has a hash and a verifier, dave a hash only; the ACL lets carol use `carol/#`.
fn scram_config(name: &str) -> (Config, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("nanomq-broker-scram-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let users = format!(
        "carol:{}:{}\ndave:{}\n",
        hash_password_with(b"carol-pw", 64, 1),
        ScramVerifier::derive(b"carol-pw", b"carol's own salt", 4096),
        hash_password_with(b"dave-pw", 64, 1),
    );
    std::fs::write(dir.join("passwd"), users).unwrap();
    std::fs::write(
        dir.join("acl"),
        "allow user:carol both carol/#\ndefault deny\n",
    )
    .unwrap();
    let mut config = Config::default();
    config.auth.password_file = Some(dir.join("passwd"));
    config.auth.acl_file = Some(dir.join("acl"));
    (config, dir)
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The client's side of one exchange.
struct ScramClient {
    password: Vec<u8>,
    first_bare: String,
    /// The server signature server-final must carry, once client-final is made.
    expected_signature: Option<String>,
}

impl ScramClient {
    fn new(user: &str, password: &str) -> ScramClient {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).unwrap();
        let name = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            password: password.as_bytes().to_vec(),
            first_bare: format!("n={name},r={}", Base64::encode_string(&nonce)),
            expected_signature: None,
        }
    }

    fn client_first(&self) -> Bytes {
        format!("n,,{}", self.first_bare).into_bytes().into()
    }

    /// client-final for `server_first`; checks the nonce starts with ours.
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
        let ours = self.first_bare.split_once(",r=").unwrap().1;
        assert!(
            nonce.starts_with(ours) && nonce.len() > ours.len(),
            "{nonce}"
        );
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(&self.password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        let server_signature = hmac(&server_key, auth_message.as_bytes());
        self.expected_signature = Some(format!("v={}", Base64::encode_string(&server_signature)));
        format!("{without_proof},p={}", Base64::encode_string(&proof))
            .into_bytes()
            .into()
    }

    /// Mutual authentication: server-final must carry the signature only the verifier gives.
    fn verify_server_final(&self, server_final: Option<&Bytes>) {
        let server_final = server_final.expect("server-final in Authentication Data");
        assert_eq!(
            Some(std::str::from_utf8(server_final).unwrap()),
            self.expected_signature.as_deref(),
            "the server proved it knows the verifier"
        );
    }
}

fn auth(reason: ReasonCode, method: &str, data: Bytes) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: Properties {
            authentication_method: Some(method.into()),
            authentication_data: Some(data),
            ..Properties::default()
        },
    })
}

fn scram_connect(client_id: &str, username: Option<&str>, first: Bytes) -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: client_id.into(),
        username: username.map(str::to_owned),
        properties: Properties {
            authentication_method: Some(METHOD.into()),
            authentication_data: Some(first),
            ..Properties::default()
        },
        ..Connect::default()
    }
}

/// Sends CONNECT and returns the broker's AUTH 0x18 (server-first).
async fn begin(addr: SocketAddr, c: Connect) -> (Client, Auth) {
    let mut client = Client::open(addr).await;
    client.send(Packet::Connect(Box::new(c))).await;
    match client.recv().await {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.reason, ReasonCode::CONTINUE_AUTHENTICATION);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
            (client, a)
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
}

/// The whole exchange; returns the client and CONNACK (server-final checked on success).
async fn login(
    addr: SocketAddr,
    mut c: Connect,
    user: &str,
    password: &str,
) -> (Client, crate::mqtt::ConnAck) {
    let mut scram = ScramClient::new(user, password);
    c.properties.authentication_data = Some(scram.client_first());
    let (mut client, challenge) = begin(addr, c).await;
    let answer = scram.client_final(challenge.properties.authentication_data.as_ref().unwrap());
    client
        .send(auth(ReasonCode::CONTINUE_AUTHENTICATION, METHOD, answer))
        .await;
    let ack = match client.recv().await {
        Some(Packet::ConnAck(a)) => a,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    if ack.reason == ReasonCode::SUCCESS {
        assert_eq!(
            ack.properties.authentication_method.as_deref(),
            Some(METHOD)
        );
        scram.verify_server_final(ack.properties.authentication_data.as_ref());
    }
    (client, ack)
}

async fn publish(c: &mut Client, topic: &str) -> ReasonCode {
    c.send(Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: topic.into(),
        packet_id: 1,
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    }))
    .await;
    match c.recv().await {
        Some(Packet::PubAck(PubAck { reason, .. })) => reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

async fn expect_connack_and_close(c: &mut Client, reason: ReasonCode) {
    match c.recv().await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.reason, reason),
        other => panic!("expected CONNACK 0x{:02x}, got {other:?}", reason.0),
    }
    assert_eq!(c.recv().await, None, "closed after the refusal");
}

async fn expect_disconnect_and_close(c: &mut Client, reason: ReasonCode) {
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason),
        other => panic!("expected DISCONNECT 0x{:02x}, got {other:?}", reason.0),
    }
    assert_eq!(c.recv().await, None, "closed after DISCONNECT");
}

#[tokio::test]
async fn a_scram_login_is_the_user_for_the_acl_and_the_client_verifies_the_broker() {
    let (config, dir) = scram_config("login");
    let (addr, _stop) = start(config).await;
    // Without a User Name in CONNECT: the SCRAM user is the client's user.
    let (mut c, ack) = login(
        addr,
        scram_connect("c1", None, Bytes::new()),
        "carol",
        "carol-pw",
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        publish(&mut c, "carol/x").await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(publish(&mut c, "dave/x").await, ReasonCode::NOT_AUTHORIZED);
    // With the same User Name in CONNECT.
    let (mut c, ack) = login(
        addr,
        scram_connect("c2", Some("carol"), Bytes::new()),
        "carol",
        "carol-pw",
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        publish(&mut c, "carol/y").await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    // The plain password still works for the same user.
    let plain = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: "c3".into(),
        username: Some("carol".into()),
        password: Some(Bytes::from_static(b"carol-pw")),
        ..Connect::default()
    };
    let (_c, ack) = Client::connect(addr, plain).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.authentication_method, None);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn wrong_passwords_unknown_users_and_users_without_a_verifier_get_0x86() {
    let (config, dir) = scram_config("refused");
    let (addr, _stop) = start(config).await;
    let mut salts = Vec::new();
    for (user, password) in [
        ("carol", "wrong"),
        ("mallory", "x"),
        ("dave", "dave-pw"),
        ("mallory", "x"),
    ] {
        let mut scram = ScramClient::new(user, password);
        let (mut c, challenge) = begin(addr, scram_connect("r", None, scram.client_first())).await;
        // Unknown users look like known ones: a 16-byte salt and the file's iterations.
        let server_first = challenge.properties.authentication_data.unwrap();
        let text = std::str::from_utf8(&server_first).unwrap().to_owned();
        let salt = text.split(',').nth(1).unwrap().to_owned();
        assert_eq!(Base64::decode_vec(&salt[2..]).unwrap().len(), 16, "{text}");
        assert!(text.ends_with(",i=4096"), "{text}");
        salts.push(salt);
        let answer = scram.client_final(&server_first);
        c.send(auth(ReasonCode::CONTINUE_AUTHENTICATION, METHOD, answer))
            .await;
        expect_connack_and_close(&mut c, ReasonCode::BAD_USER_NAME_OR_PASSWORD).await;
    }
    assert_eq!(salts[1], salts[3], "an unknown user's salt is stable");
    assert_ne!(salts[1], salts[2]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn other_methods_and_brokers_without_a_password_file_get_0x8c() {
    let (config, dir) = scram_config("method");
    let (addr, _stop) = start(config).await;
    let mut c = scram_connect(
        "m",
        None,
        ScramClient::new("carol", "carol-pw").client_first(),
    );
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let (mut client, ack) = Client::connect(addr, c).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert_eq!(client.recv().await, None);
    // Method names are case-sensitive.
    let mut c = scram_connect(
        "m",
        None,
        ScramClient::new("carol", "carol-pw").client_first(),
    );
    c.properties.authentication_method = Some("scram-sha-256".into());
    let (_, ack) = Client::connect(addr, c).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);

    let (addr, _stop2) = start(Config::default()).await;
    let c = scram_connect(
        "m",
        None,
        ScramClient::new("carol", "carol-pw").client_first(),
    );
    let (mut client, ack) = Client::connect(addr, c).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert_eq!(client.recv().await, None);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn connect_user_name_must_be_the_scram_user_and_bad_messages_are_refused() {
    let (config, dir) = scram_config("names");
    let (addr, _stop) = start(config).await;
    let first = ScramClient::new("carol", "carol-pw").client_first();
    let (mut c, ack) = Client::connect(addr, scram_connect("n", Some("dave"), first)).await;
    assert_eq!(ack.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    assert_eq!(c.recv().await, None);
    // A malformed client-first (channel binding asked for), and none at all.
    for first in [&b"p=tls-unique,,n=carol,r=abc"[..], b""] {
        let c = scram_connect("n", None, Bytes::copy_from_slice(first));
        let (_, ack) = Client::connect(addr, c).await;
        assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    }
    // A malformed client-final: nonce mismatch.
    let scram = ScramClient::new("carol", "carol-pw");
    let (mut c, _) = begin(addr, scram_connect("n", None, scram.client_first())).await;
    let bad = Bytes::from_static(b"c=biws,r=other,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    c.send(auth(ReasonCode::CONTINUE_AUTHENTICATION, METHOD, bad))
        .await;
    expect_connack_and_close(&mut c, ReasonCode::NOT_AUTHORIZED).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn only_auth_or_disconnect_may_come_before_connack() {
    let (config, dir) = scram_config("order");
    let (addr, _stop) = start(config).await;
    let first = || ScramClient::new("carol", "carol-pw").client_first();
    // MQTT-3.1.2-30: anything else is a protocol error.
    let (mut c, _) = begin(addr, scram_connect("o", None, first())).await;
    c.send(Packet::PingReq).await;
    expect_connack_and_close(&mut c, ReasonCode::PROTOCOL_ERROR).await;
    // AUTH with another method, or with reason 0x19 instead of 0x18.
    let (mut c, _) = begin(addr, scram_connect("o", None, first())).await;
    c.send(auth(ReasonCode::CONTINUE_AUTHENTICATION, "PLAIN", first()))
        .await;
    expect_connack_and_close(&mut c, ReasonCode::BAD_AUTHENTICATION_METHOD).await;
    let (mut c, _) = begin(addr, scram_connect("o", None, first())).await;
    c.send(auth(ReasonCode::RE_AUTHENTICATE, METHOD, first()))
        .await;
    expect_connack_and_close(&mut c, ReasonCode::PROTOCOL_ERROR).await;
    // DISCONNECT: closed without CONNACK.
    let (mut c, _) = begin(addr, scram_connect("o", None, first())).await;
    c.send(Packet::Disconnect(Default::default())).await;
    assert_eq!(c.recv().await, None);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stalled_exchange_is_closed_at_the_connect_timeout() {
    let (mut config, dir) = scram_config("stall");
    config.limits.connect_timeout_secs = 7;
    let (addr, _stop) = start(config).await;
    let t0 = Instant::now();
    let first = ScramClient::new("carol", "carol-pw").client_first();
    let (mut c, _) = begin(addr, scram_connect("s", None, first)).await;
    // No client-final: closed without CONNACK when the CONNECT timeout runs out.
    assert_eq!(c.recv().await, None);
    assert_waited(t0, 7);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn mqtt311_clients_cannot_use_it() {
    let (config, dir) = scram_config("v311");
    let (addr, _stop) = start(config).await;
    // A 3.1.1 CONNECT has no properties: the method cannot even be written, and the codec
    // drops it. carol's password works; her name alone does not.
    let mut c = scram_connect(
        "v3",
        Some("carol"),
        ScramClient::new("carol", "x").client_first(),
    );
    c.protocol = ProtocolVersion::V311;
    let (_, ack) = Client::connect(addr, c.clone()).await;
    assert_eq!(ack.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    c.password = Some(Bytes::from_static(b"carol-pw"));
    let (mut client, ack) = Client::connect(addr, c).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    // AUTH (type 15) does not exist in 3.1.1: the connection is closed.
    client.stream.write_all(&[0xF0, 0x00]).await.unwrap();
    assert_eq!(client.recv().await, None);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_persistent_session_belongs_to_the_scram_user() {
    let (config, dir) = scram_config("owner");
    let (addr, _stop) = start(config).await;
    let mut c = scram_connect("owned", None, Bytes::new());
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(100);
    let (mut first, ack) = login(addr, c, "carol", "carol-pw").await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    first.send(Packet::Disconnect(Default::default())).await;
    assert_eq!(first.recv().await, None);
    let plain = |user: &str, password: &'static [u8]| Connect {
        protocol: ProtocolVersion::V5,
        client_id: "owned".into(),
        username: Some(user.into()),
        password: Some(Bytes::from_static(password)),
        properties: Properties {
            session_expiry_interval: Some(100),
            ..Properties::default()
        },
        ..Connect::default()
    };
    // carol again, by password: her session.
    let (mut again, ack) = Client::connect(addr, plain("carol", b"carol-pw")).await;
    assert!(ack.session_present, "resumed by its owner");
    again.send(Packet::Disconnect(Default::default())).await;
    assert_eq!(again.recv().await, None);
    // dave with the same client id starts afresh.
    let (_dave, ack) = Client::connect(addr, plain("dave", b"dave-pw")).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(!ack.session_present, "not dave's session");
    std::fs::remove_dir_all(dir).unwrap();
}

/// One re-authentication step pair on a connected client; returns the final AUTH.
async fn reauthenticate(c: &mut Client, user: &str, password: &str) -> Option<Packet> {
    let mut scram = ScramClient::new(user, password);
    c.send(auth(
        ReasonCode::RE_AUTHENTICATE,
        METHOD,
        scram.client_first(),
    ))
    .await;
    let challenge = match c.recv().await {
        Some(Packet::Auth(a)) if a.reason == ReasonCode::CONTINUE_AUTHENTICATION => a,
        other => return other,
    };
    // Other packets flow during the exchange.
    c.send(Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
    let answer = scram.client_final(challenge.properties.authentication_data.as_ref().unwrap());
    c.send(auth(ReasonCode::CONTINUE_AUTHENTICATION, METHOD, answer))
        .await;
    let done = c.recv().await;
    if let Some(Packet::Auth(a)) = &done {
        assert_eq!(a.reason, ReasonCode::SUCCESS);
        assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
        scram.verify_server_final(a.properties.authentication_data.as_ref());
    }
    done
}

#[tokio::test]
async fn reauthentication_repeats_the_exchange_and_ends_the_connection_on_failure() {
    let (config, dir) = scram_config("reauth");
    let (addr, _stop) = start(config).await;
    let connect = || scram_connect("re", None, Bytes::new());
    let (mut c, _) = login(addr, connect(), "carol", "carol-pw").await;
    for _ in 0..2 {
        let done = reauthenticate(&mut c, "carol", "carol-pw").await;
        assert!(matches!(done, Some(Packet::Auth(_))), "{done:?}");
    }
    assert_eq!(
        publish(&mut c, "carol/x").await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    // A wrong password ends the connection: DISCONNECT 0x87.
    match reauthenticate(&mut c, "carol", "wrong").await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.recv().await, None);
    // Another user: 0x87 at client-first.
    let (mut c, _) = login(addr, connect(), "carol", "carol-pw").await;
    let first = ScramClient::new("dave", "dave-pw").client_first();
    c.send(auth(ReasonCode::RE_AUTHENTICATE, METHOD, first))
        .await;
    expect_disconnect_and_close(&mut c, ReasonCode::NOT_AUTHORIZED).await;
    // Another method: 0x8C (MQTT-4.12.1-1).
    let (mut c, _) = login(addr, connect(), "carol", "carol-pw").await;
    let first = ScramClient::new("carol", "carol-pw").client_first();
    c.send(auth(ReasonCode::RE_AUTHENTICATE, "SCRAM-SHA-1", first))
        .await;
    expect_disconnect_and_close(&mut c, ReasonCode::BAD_AUTHENTICATION_METHOD).await;
    // Out of turn: client-final with no exchange under way.
    let (mut c, _) = login(addr, connect(), "carol", "carol-pw").await;
    let stray = Bytes::from_static(b"c=biws,r=x,p=AAAA");
    c.send(auth(ReasonCode::CONTINUE_AUTHENTICATION, METHOD, stray))
        .await;
    expect_disconnect_and_close(&mut c, ReasonCode::PROTOCOL_ERROR).await;
    // A client that used its password in CONNECT cannot start one (MQTT-4.12.0-7).
    let plain = Connect {
        protocol: ProtocolVersion::V5,
        client_id: "re-plain".into(),
        username: Some("carol".into()),
        password: Some(Bytes::from_static(b"carol-pw")),
        ..Connect::default()
    };
    let (mut c, _) = Client::connect(addr, plain).await;
    let first = ScramClient::new("carol", "carol-pw").client_first();
    c.send(auth(ReasonCode::RE_AUTHENTICATE, METHOD, first))
        .await;
    expect_disconnect_and_close(&mut c, ReasonCode::PROTOCOL_ERROR).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn reauthentication_checks_the_password_file_in_force() {
    let (config, dir) = scram_config("reload");
    let auth_config = config.auth.clone();
    let (addr, _stop, authenticator) = start_with_auth(config).await;
    let connect = || scram_connect("rl", None, Bytes::new());
    let (mut c, _) = login(addr, connect(), "carol", "carol-pw").await;
    // carol's password changes and the file is reloaded.
    let line = format!(
        "carol:{}:{}\n",
        hash_password_with(b"new-pw", 64, 1),
        ScramVerifier::derive(b"new-pw", b"another salt", 4096)
    );
    std::fs::write(dir.join("passwd"), line).unwrap();
    authenticator.reload(&auth_config).unwrap();
    // The connection stays; its next re-authentication needs the new password.
    assert_eq!(
        publish(&mut c, "carol/x").await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    match reauthenticate(&mut c, "carol", "carol-pw").await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("{other:?}"),
    }
    let (mut c, ack) = login(addr, connect(), "carol", "new-pw").await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(matches!(
        reauthenticate(&mut c, "carol", "new-pw").await,
        Some(Packet::Auth(_))
    ));
    std::fs::remove_dir_all(dir).unwrap();
}
