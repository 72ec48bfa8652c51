//! Named listeners: each accepts connections, and Metadata answers with the addresses of the
//! listener the request came in on.

mod common;

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use sluice_broker::config::BrokerConfig;
use sluice_broker::server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_answers_with_the_addresses_of_the_listener_asked() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = BrokerConfig::default();
    c.set(
        "listeners",
        "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0,CLIENT://127.0.0.1:0",
    )
    .expect("listeners");
    c.set(
        "listener.security.protocol.map",
        "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CLIENT:PLAINTEXT",
    )
    .expect("map");
    c.set(
        "advertised.listeners",
        "INTERNAL://internal.example:19092,CLIENT://client.example:29092",
    )
    .expect("advertised");
    c.set("log.dirs", &dir.path().display().to_string())
        .expect("dirs");
    c.set("sluice.metrics.listener", "").expect("metrics");
    c.validate().expect("valid");
    let server = Server::bind(c).await.expect("bind");
    let addrs = server.listener_addrs().expect("addrs");
    let names: Vec<&str> = addrs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["PLAINTEXT", "INTERNAL", "CLIENT"]);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server.run(rx));
    let expected = [
        ("127.0.0.1".to_string(), addrs[0].1.port() as i32),
        ("internal.example".to_string(), 19092),
        ("client.example".to_string(), 29092),
    ];
    for ((name, addr), (host, port)) in addrs.iter().zip(expected) {
        let mut conn = common::Conn::connect(*addr).await;
        let r: MetadataResponse = conn
            .call(ApiKey::Metadata, 12, &MetadataRequest::default())
            .await;
        assert_eq!(r.brokers.len(), 1, "{name}");
        assert_eq!(
            (r.brokers[0].host.to_string(), r.brokers[0].port),
            (host, port),
            "Metadata on {name}"
        );
    }
}
