//! MQTT over TLS: protocol versions, ALPN and client certificates.

use nanomq::mqtt::ProtocolVersion;
use rustls::{ProtocolVersion as TlsVersion, SupportedProtocolVersion};

use crate::client::{tls_config, tls_connect, try_mqtt_over_tls, MqttClient, BOTH_VERSIONS};
use crate::pki::Pki;
use crate::{listener, TestBroker};

const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

#[tokio::test]
async fn mqtt_5_and_3_1_1_over_tls_1_3_and_1_2() {
    let pki = Pki::new();
    let broker = TestBroker::start(&listener("tls", &pki.tls_table(""))).await;
    let addr = broker.addr(0);
    let cases = [
        (TLS13, TlsVersion::TLSv1_3, ProtocolVersion::V5),
        (TLS13, TlsVersion::TLSv1_3, ProtocolVersion::V311),
        (TLS12, TlsVersion::TLSv1_2, ProtocolVersion::V5),
        (TLS12, TlsVersion::TLSv1_2, ProtocolVersion::V311),
    ];
    let tls = tls_connect(addr, tls_config(&pki.ca, BOTH_VERSIONS, None));
    let mut publisher = MqttClient::connect(tls.await.unwrap(), ProtocolVersion::V5, "pub").await;
    for (i, (versions, negotiated, mqtt)) in cases.into_iter().enumerate() {
        let tls = tls_connect(addr, tls_config(&pki.ca, versions, None));
        let tls = tls.await.unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(negotiated));
        let id = format!("sub-{i}");
        let mut subscriber = MqttClient::connect(tls, mqtt, &id).await;
        let topic = format!("tls/{i}");
        subscriber.subscribe(&topic).await;
        publisher.publish(&topic, b"over tls").await;
        subscriber.expect_publish(&topic, b"over tls").await;
    }
}

#[tokio::test]
async fn alpn_offers_mqtt_and_can_be_turned_off() {
    let pki = Pki::new();
    let toml = listener("tls", &pki.tls_table("")) + &listener("tls", &pki.tls_table("alpn = []"));
    let broker = TestBroker::start(&toml).await;
    let (default, off) = (broker.addr(0), broker.addr(1));
    let offering = |protocols: &[&str]| {
        let mut config = tls_config(&pki.ca, BOTH_VERSIONS, None);
        config.alpn_protocols = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        config
    };

    let tls = tls_connect(default, offering(&["mqtt"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"mqtt"[..]));
    MqttClient::connect(tls, ProtocolVersion::V5, "alpn-mqtt").await;

    let tls = tls_connect(default, offering(&[])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    MqttClient::connect(tls, ProtocolVersion::V5, "alpn-none").await;

    match tls_connect(default, offering(&["h2"])).await {
        Err(e) => assert!(e.to_string().contains("NoApplicationProtocol"), "{e}"),
        Ok(_) => panic!("an h2-only client must be refused"),
    }

    let tls = tls_connect(off, offering(&["h2"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    MqttClient::connect(tls, ProtocolVersion::V5, "alpn-off-h2").await;
}

#[tokio::test]
async fn client_certificates_required_and_optional() {
    let pki = Pki::new();
    let ca = format!("ca = {}\n", crate::pki::toml_path(&pki.path("ca.pem")));
    let required = pki.tls_table(&format!("{ca}verify = \"required\""));
    let optional = pki.tls_table(&format!("{ca}verify = \"optional\""));
    let toml = listener("tls", &required) + &listener("tls", &optional);
    let broker = TestBroker::start(&toml).await;
    let (required, optional) = (broker.addr(0), broker.addr(1));
    let trusted = || Some(&pki.client);
    let foreign = || Some(&pki.stranger);
    // TLS 1.3 finishes the client's side of the handshake before the server has checked the
    // client's certificate: a refusal may show only on the first read, so go as far as CONNACK.
    for versions in [TLS13, TLS12] {
        let cases = [
            (required, None, false, "required, no certificate"),
            (
                required,
                trusted(),
                true,
                "required, certificate from the CA",
            ),
            (
                required,
                foreign(),
                false,
                "required, certificate from another CA",
            ),
            (optional, None, true, "optional, no certificate"),
            (
                optional,
                trusted(),
                true,
                "optional, certificate from the CA",
            ),
            (
                optional,
                foreign(),
                false,
                "optional, certificate from another CA",
            ),
        ];
        for (addr, identity, accepted, case) in cases {
            let config = tls_config(&pki.ca, versions, identity);
            let client = try_mqtt_over_tls(addr, config, "mtls").await;
            assert_eq!(client.is_some(), accepted, "{case} ({versions:?})");
        }
    }
}
