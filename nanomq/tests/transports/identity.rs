//! Client certificates as identities: the user name taken from a verified certificate
//! (`tls.username_from`), with no password, and ACL rules that name a certificate's CN.

use nanomq::mqtt::{Packet, ProtocolVersion, ReasonCode};

use crate::client::{
    connect_packet, subscribe_packet, tls_config, tls_connect, MqttClient, BOTH_VERSIONS,
};
use crate::pki::{toml_path, Pki};
use crate::{listener, TestBroker};

/// SUBSCRIBE to `filter`; the reason code of the SUBACK.
async fn subscribe_code<S>(client: &mut MqttClient<S>, filter: &str) -> ReasonCode
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    client.send(&subscribe_packet(filter)).await.unwrap();
    match client.recv().await {
        Some(Packet::SubAck(ack)) => ack.reasons[0],
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn user_names_from_certificates_and_cn_rules() {
    let pki = Pki::new();
    pki.write(
        "acl",
        "default deny\n\
         allow user:meter-7 both users/%u/#\n\
         allow cn:gateway subscribe cn/#\n",
    );
    let ca = format!("ca = {}\n", toml_path(&pki.path("ca.pem")));
    let cn = pki.tls_table(&format!(
        "{ca}verify = \"required\"\nusername_from = \"cn\""
    ));
    let san = pki.tls_table(&format!(
        "{ca}verify = \"required\"\nusername_from = \"san\""
    ));
    let optional = pki.tls_table(&format!(
        "{ca}verify = \"optional\"\nusername_from = \"cn\""
    ));
    let toml = format!(
        "[auth]\nallow_anonymous = false\nacl_file = {}\n\n{}{}{}",
        toml_path(&pki.path("acl")),
        listener("tls", &cn),
        listener("tls", &san),
        listener("tls", &optional)
    );
    let broker = TestBroker::start(&toml).await;
    let meter = pki.ca.client(Some("meter-7"), &["meter-7"]);
    let gateway = pki.ca.client(Some("gateway"), &["gw.example"]);
    let nameless = pki.ca.client(None, &[]);
    let connect = |i: usize, identity| {
        let config = tls_config(&pki.ca, BOTH_VERSIONS, identity);
        let addr = broker.addr(i);
        async move {
            let tls = tls_connect(addr, config).await.expect("TLS handshake");
            let mut client = MqttClient::new(tls, ProtocolVersion::V5);
            // No user name and no password: anonymous clients are refused, so a CONNACK
            // that accepts means the certificate gave the user name.
            client
                .send(&connect_packet(ProtocolVersion::V5, ""))
                .await
                .unwrap();
            match client.recv().await {
                Some(Packet::ConnAck(ack)) => (client, ack.reason),
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }
    };

    // CN as the user name: the ACL's %u rule sees "meter-7".
    let (mut by_cn, reason) = connect(0, Some(&meter)).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(
        subscribe_code(&mut by_cn, "users/meter-7/#").await,
        ReasonCode::GRANTED_QOS_0
    );
    assert_eq!(
        subscribe_code(&mut by_cn, "users/other/#").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        subscribe_code(&mut by_cn, "cn/x").await,
        ReasonCode::NOT_AUTHORIZED
    );

    // The first SAN as the user name; the CN still matches `cn:` rules.
    let (mut by_san, reason) = connect(1, Some(&gateway)).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(
        subscribe_code(&mut by_san, "cn/x").await,
        ReasonCode::GRANTED_QOS_0
    );
    assert_eq!(
        subscribe_code(&mut by_san, "users/gw.example/a").await,
        ReasonCode::NOT_AUTHORIZED
    );
    let (mut meter_by_san, reason) = connect(1, Some(&meter)).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(
        subscribe_code(&mut meter_by_san, "users/meter-7/a").await,
        ReasonCode::GRANTED_QOS_0
    );

    // A certificate without the configured name is refused, not let in anonymously.
    assert_eq!(
        connect(0, Some(&nameless)).await.1,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        connect(1, Some(&nameless)).await.1,
        ReasonCode::NOT_AUTHORIZED
    );
    // Without a certificate (verify = "optional") CONNECT's user name counts: none here.
    assert_eq!(connect(2, None).await.1, ReasonCode::NOT_AUTHORIZED);
    let (_, reason) = connect(2, Some(&meter)).await;
    assert_eq!(reason, ReasonCode::SUCCESS);

    by_cn.ping().await;
    broker.shutdown().await;
}
