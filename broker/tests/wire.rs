//! Wire-level behaviour against a broker on port 0: KIP-511 version fallback, frames that
//! break the protocol close only their connection, and requests pipelined on one connection
//! are answered in order.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

fn frame(api: ApiKey, version: i16, corr: i32, body: impl FnOnce(&mut BytesMut)) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("wire-test")))
        .encode(
            &mut b,
            api.request_header_version(version.min(api.valid_versions().max)),
        )
        .expect("header");
    body(&mut b);
    let n = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    b
}

async fn read_frame(s: &mut TcpStream) -> Option<bytes::Bytes> {
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    Some(buf.into())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_too_new_api_versions_request_gets_a_v0_unsupported_version_reply() {
    let (addr, _dir, _stop) = common::start(&[]).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&frame(ApiKey::ApiVersions, 99, 7, |b| {
        b.put_slice(&[0, 0, 0])
    }))
    .await
    .expect("send");
    let mut resp = read_frame(&mut s)
        .await
        .expect("a reply, not a closed connection");
    let h = ResponseHeader::decode(&mut resp, 0).expect("header v0");
    assert_eq!(h.correlation_id, 7);
    let body = ApiVersionsResponse::decode(&mut resp, 0).expect("body v0");
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16));
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_closes_only_its_connection_and_pipelined_requests_answer_in_order() {
    let (addr, _dir, _stop) = common::start(&[]).await;
    for junk in [
        &[0u8, 0, 0, 1][..],
        &[0x7f, 0xff, 0xff, 0xff],
        &[0, 0, 0, 12, 0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff],
    ] {
        let mut bad = TcpStream::connect(addr).await.expect("connect");
        bad.write_all(junk).await.expect("send");
        assert!(
            read_frame(&mut bad).await.is_none(),
            "connection closed without a reply"
        );
    }
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut out = BytesMut::new();
    for corr in 0..20 {
        out.extend_from_slice(&frame(ApiKey::Metadata, 12, corr, |b| {
            MetadataRequest::default()
                .with_topics(Some(vec![]))
                .encode(b, 12)
                .expect("encode")
        }));
    }
    s.write_all(&out).await.expect("send");
    for corr in 0..20 {
        let mut resp = read_frame(&mut s).await.expect("reply");
        let h = ResponseHeader::decode(&mut resp, 1).expect("header");
        assert_eq!(h.correlation_id, corr, "responses come in request order");
        let m = MetadataResponse::decode(&mut resp, 12).expect("metadata");
        assert_eq!(m.brokers.len(), 1);
        assert!(!resp.has_remaining());
    }
}

/// A Fetch naming no partition has nothing to wait on: like Kafka, it waits out
/// `max_wait_ms` and answers (an empty incremental session fetch is this request).
#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_naming_no_partition_waits_out_max_wait_and_answers() {
    let (addr, _dir, _stop) = common::start(&[]).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let started = std::time::Instant::now();
    s.write_all(&frame(ApiKey::Fetch, 12, 3, |b| {
        FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(300)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .encode(b, 12)
            .expect("fetch")
    }))
    .await
    .expect("send");
    let mut resp = read_frame(&mut s)
        .await
        .expect("an answer, not a dropped reply");
    let h = ResponseHeader::decode(&mut resp, 1).expect("header");
    assert_eq!(h.correlation_id, 3);
    let f = FetchResponse::decode(&mut resp, 12).expect("fetch response");
    assert_eq!(f.error_code, 0);
    assert!(f.responses.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered only once max_wait_ms passed"
    );
}

/// Whether the broker closed `s` (end of stream or reset) within 5 s, rather than answering
/// or leaving it silent.
async fn closed_by_broker(s: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// An API the protocol knows but the registry does not serve (transactions, here) is not
/// advertised, and a client sending it anyway has its connection closed, as Kafka closes it
/// for an API it has not enabled; other connections go on.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_the_registry_lacks_is_not_advertised_and_closes_its_connection() {
    let (addr, _dir, _stop) = common::start(&[]).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&frame(ApiKey::ApiVersions, 3, 1, |b| {
        kafka_protocol::messages::ApiVersionsRequest::default()
            .encode(b, 3)
            .expect("encode")
    }))
    .await
    .expect("send");
    let mut resp = read_frame(&mut s).await.expect("api versions");
    ResponseHeader::decode(&mut resp, 0).expect("header");
    let versions = ApiVersionsResponse::decode(&mut resp, 3).expect("body");
    let unserved = ApiKey::AddPartitionsToTxn as i16;
    assert!(versions.api_keys.iter().all(|k| k.api_key != unserved));

    s.write_all(&frame(ApiKey::AddPartitionsToTxn, 3, 2, |b| {
        kafka_protocol::messages::AddPartitionsToTxnRequest::default()
            .encode(b, 3)
            .expect("encode")
    }))
    .await
    .expect("send");
    assert!(closed_by_broker(&mut s).await, "closed, not left waiting");
}

/// The replication fetcher's connection to another broker: a call is answered, and a peer
/// that stops answering fails the call within the timeout and closes the connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_peer_connection_calls_and_gives_up_on_a_silent_peer() {
    use sluice_broker::cluster::peer::Peer;
    let (addr, _dir, _stop) = common::start(&[]).await;
    let peer = Peer::connect(&addr.to_string(), "wire-test", Duration::from_secs(5))
        .await
        .expect("connect");
    let versions = peer
        .call_at(&kafka_protocol::messages::ApiVersionsRequest::default(), 3)
        .await
        .expect("answered");
    assert!(versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Fetch as i16));
    assert!(!peer.is_closed());

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let held = tokio::spawn(async move { silent.accept().await });
    let peer = Peer::connect(&silent_addr, "wire-test", Duration::from_millis(200))
        .await
        .expect("connect");
    let err = peer
        .call_at(&kafka_protocol::messages::ApiVersionsRequest::default(), 3)
        .await
        .expect_err("no answer");
    assert!(err.to_string().contains("no answer in time"), "{err}");
    assert!(peer.is_closed());
    held.abort();
}
