//! SASL/PLAIN on a SASL_PLAINTEXT listener, from the client's side of the socket: what is
//! answered, what closes the connection, and that nothing but ApiVersions and the SASL
//! requests is served before authentication.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_broker::config::BrokerConfig;
use sluice_broker::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";"#;

/// A broker with PLAINTEXT and SASL_PLAINTEXT listeners; the SASL listener's address.
async fn start() -> (
    std::net::SocketAddr,
    std::net::SocketAddr,
    tempfile::TempDir,
    tokio::sync::watch::Sender<bool>,
) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = BrokerConfig::default();
    c.set(
        "listeners",
        "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
    )
    .expect("listeners");
    c.set("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS)
        .expect("jaas");
    c.set("log.dirs", &dir.path().display().to_string())
        .expect("dirs");
    c.set("sluice.metrics.listener", "").expect("metrics");
    c.validate().expect("valid");
    let server = Server::bind(c).await.expect("bind");
    let addrs = server.listener_addrs().expect("addrs");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server.run(rx));
    (addrs[0].1, addrs[1].1, dir, tx)
}

fn frame<R: Encodable>(api: ApiKey, version: i16, corr: i32, req: &R) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("t")))
        .encode(&mut b, api.request_header_version(version))
        .expect("header");
    req.encode(&mut b, version).expect("body");
    let n = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    b
}

/// Reads until EOF: the broker closed the connection, having sent nothing (or a reset).
async fn assert_closed_without_reply(s: &mut TcpStream) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the broker closes the connection");
    if read.is_ok() {
        assert!(rest.is_empty(), "no reply expected, got {rest:?}");
    }
}

fn handshake(mechanism: &'static str) -> SaslHandshakeRequest {
    SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism))
}

fn plain(user: &str, password: &str) -> SaslAuthenticateRequest {
    SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(format!("\0{user}\0{password}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_before_authentication_closes_the_connection_unanswered() {
    let (_, sasl, _dir, _stop) = start().await;
    let mut s = TcpStream::connect(sasl).await.expect("connect");
    s.write_all(&frame(ApiKey::Metadata, 12, 1, &MetadataRequest::default()))
        .await
        .expect("send");
    assert_closed_without_reply(&mut s).await;

    // After ApiVersions and the handshake too: only SaslAuthenticate is taken.
    let mut c = common::Conn::connect(sasl).await;
    let v: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let advertised = |k: ApiKey| v.api_keys.iter().any(|a| a.api_key == k as i16);
    assert!(advertised(ApiKey::SaslHandshake) && advertised(ApiKey::SaslAuthenticate));
    let h: SaslHandshakeResponse = c.call(ApiKey::SaslHandshake, 1, &handshake("PLAIN")).await;
    assert_eq!(h.error_code, 0);
    c.s.write_all(&frame(ApiKey::Metadata, 12, 9, &MetadataRequest::default()))
        .await
        .expect("send");
    assert_closed_without_reply(&mut c.s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_v1_authenticates_then_serves() {
    let (_, sasl, _dir, _stop) = start().await;
    let mut c = common::Conn::connect(sasl).await;
    let h: SaslHandshakeResponse = c.call(ApiKey::SaslHandshake, 1, &handshake("PLAIN")).await;
    assert_eq!(h.error_code, 0);
    assert_eq!(h.mechanisms, [StrBytes::from_static_str("PLAIN")]);
    let a: SaslAuthenticateResponse = c
        .call(ApiKey::SaslAuthenticate, 2, &plain("alice", "alice-secret"))
        .await;
    assert_eq!((a.error_code, a.error_message), (0, None));
    let m: MetadataResponse = c
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    assert_eq!(m.brokers.len(), 1);
    // Once authenticated, another exchange is refused as Kafka refuses it.
    let h: SaslHandshakeResponse = c.call(ApiKey::SaslHandshake, 1, &handshake("PLAIN")).await;
    assert_eq!(h.error_code, 34, "ILLEGAL_SASL_STATE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_get_58_then_the_connection_closes() {
    let (_, sasl, _dir, _stop) = start().await;
    for (user, password) in [("alice", "admin-secret"), ("mallory", "alice-secret")] {
        let mut c = common::Conn::connect(sasl).await;
        let _: SaslHandshakeResponse = c.call(ApiKey::SaslHandshake, 1, &handshake("PLAIN")).await;
        let a: SaslAuthenticateResponse = c
            .call(ApiKey::SaslAuthenticate, 1, &plain(user, password))
            .await;
        assert_eq!(a.error_code, 58, "SASL_AUTHENTICATION_FAILED for {user}");
        assert_eq!(
            a.error_message.as_deref(),
            Some("Authentication failed: Invalid username or password")
        );
        assert_closed_without_reply(&mut c.s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unenabled_mechanism_gets_33_with_the_enabled_ones() {
    let (_, sasl, _dir, _stop) = start().await;
    let mut c = common::Conn::connect(sasl).await;
    let h: SaslHandshakeResponse = c
        .call(ApiKey::SaslHandshake, 1, &handshake("SCRAM-SHA-256"))
        .await;
    assert_eq!(h.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    assert_eq!(h.mechanisms, [StrBytes::from_static_str("PLAIN")]);
    assert_closed_without_reply(&mut c.s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_v0_takes_a_raw_token_and_answers_a_raw_empty_one() {
    let (plaintext, sasl, _dir, _stop) = start().await;
    let mut c = common::Conn::connect(sasl).await;
    let h: SaslHandshakeResponse = c.call(ApiKey::SaslHandshake, 0, &handshake("PLAIN")).await;
    assert_eq!(h.error_code, 0);
    let token = b"\0admin\0admin-secret";
    let mut raw = (token.len() as i32).to_be_bytes().to_vec();
    raw.extend_from_slice(token);
    c.s.write_all(&raw).await.expect("token");
    let mut len = [0u8; 4];
    c.s.read_exact(&mut len).await.expect("answer");
    assert_eq!(i32::from_be_bytes(len), 0, "an empty server token");
    let m: MetadataResponse = c
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    assert_eq!(m.brokers.len(), 1);

    // A wrong raw token closes the connection: v0 has no error answer.
    let mut c = common::Conn::connect(sasl).await;
    let _: SaslHandshakeResponse = c.call(ApiKey::SaslHandshake, 0, &handshake("PLAIN")).await;
    let token = b"\0admin\0nope";
    let mut raw = (token.len() as i32).to_be_bytes().to_vec();
    raw.extend_from_slice(token);
    c.s.write_all(&raw).await.expect("token");
    assert_closed_without_reply(&mut c.s).await;

    // The PLAINTEXT listener is not SASL: a handshake there is ILLEGAL_SASL_STATE.
    let mut c = common::Conn::connect(plaintext).await;
    let h: SaslHandshakeResponse = c.call(ApiKey::SaslHandshake, 1, &handshake("PLAIN")).await;
    assert_eq!(h.error_code, 34);
}
