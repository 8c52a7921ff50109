//! Certificate files: reloaded while the broker serves, and refused at start when unusable.

use nanomq::broker::bind;
use nanomq::config::Config;
use nanomq::mqtt::ProtocolVersion;

use crate::client::{tls_config, tls_connect, try_mqtt_over_tls, MqttClient, BOTH_VERSIONS};
use crate::pki::{toml_path, Pki};
use crate::{listener, TestBroker};

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections_only() {
    let pki = Pki::new();
    let broker =
        TestBroker::start(&(listener("tls", &pki.tls_table("")) + &listener("tcp", ""))).await;
    let addr = broker.addr(0);
    let trusts_first = || tls_config(&pki.ca, BOTH_VERSIONS, None);
    let trusts_second = || tls_config(&pki.other_ca, BOTH_VERSIONS, None);
    let tls = tls_connect(addr, trusts_first()).await.unwrap();
    let mut early = MqttClient::connect(tls, ProtocolVersion::V5, "early").await;
    assert_untrusted(tls_connect(addr, trusts_second()).await);

    pki.install_server(&pki.other_ca.server());
    assert!(broker.reloader(0).reload().unwrap());
    assert!(try_mqtt_over_tls(addr, trusts_second(), "second")
        .await
        .is_some());
    assert_untrusted(tls_connect(addr, trusts_first()).await);
    early.ping().await;
    assert!(
        !broker.reloader(1).reload().unwrap(),
        "a tcp listener has no certificates"
    );

    pki.write("server.crt", "not a certificate\n");
    let error = broker.reloader(0).reload().unwrap_err().to_string();
    let cert = pki.path("server.crt").display().to_string();
    assert!(error.contains(&cert), "{error:?} does not name {cert}");
    assert!(try_mqtt_over_tls(addr, trusts_second(), "kept")
        .await
        .is_some());
    assert_untrusted(tls_connect(addr, trusts_first()).await);
    early.ping().await;
}

/// The client refused the server's certificate as issued by a CA it does not trust.
fn assert_untrusted<S>(handshake: std::io::Result<S>) {
    match handshake {
        Err(e) => assert!(e.to_string().contains("UnknownIssuer"), "{e}"),
        Ok(_) => panic!("the client trusted a certificate from a CA it does not know"),
    }
}

#[tokio::test]
async fn unusable_files_are_refused_at_start_with_their_path() {
    let pki = Pki::new();
    pki.write("garbage.crt", "this is not PEM\n");
    let path = |name: &str| toml_path(&pki.path(name));
    let table = |cert: &str, key: &str, extra: &str| {
        format!("[listeners.tls]\ncert = {cert}\nkey = {key}\n{extra}\n")
    };
    let required = format!("verify = \"required\"\nca = {}", path("garbage.crt"));
    let cases = [
        (
            "missing.crt",
            table(&path("missing.crt"), &path("server.key"), ""),
        ),
        // A file with a certificate and no key where the key should be.
        ("ca.pem", table(&path("server.crt"), &path("ca.pem"), "")),
        (
            "garbage.crt",
            table(&path("garbage.crt"), &path("server.key"), ""),
        ),
        (
            "garbage.crt",
            table(&path("server.crt"), &path("server.key"), &required),
        ),
    ];
    for (culprit, tls) in cases {
        for kind in ["tls", "wss"] {
            let config = Config::parse(&listener(kind, &tls), "test.toml").unwrap();
            let error = match bind(&config).await {
                Ok(_) => panic!("{kind} listener with a bad {culprit} started"),
                Err(e) => e.to_string(),
            };
            let named = pki.path(culprit).display().to_string();
            assert!(error.contains(&named), "{error:?} does not name {named}");
        }
    }
}
