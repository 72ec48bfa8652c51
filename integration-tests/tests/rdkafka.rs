//! The `rdkafka` crate (librdkafka 2.12, built from source) and `sluice-client` against one
//! Sluice broker: records written by either are read by the other with keys, headers and
//! every codec; keys land where librdkafka's Java-compatible partitioner puts them; an
//! rdkafka consumer group commits and resumes.

mod common;

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Header as RdHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig as RdConfig;
use sluice_client::partitioner::partition_for_key;
use sluice_client::{
    ClientConfig, Compression, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig,
    ProducerRecord,
};

const CODECS: [(&str, Compression); 5] = [
    ("none", Compression::None),
    ("gzip", Compression::Gzip),
    ("snappy", Compression::Snappy),
    ("lz4", Compression::Lz4),
    ("zstd", Compression::Zstd),
];

async fn create(addr: &str, topic: &str, partitions: i32) {
    common::create_topic(addr, topic, partitions).await;
}

fn rd_producer(addr: &str, codec: &str) -> FutureProducer {
    RdConfig::new()
        .set("bootstrap.servers", addr)
        .set("compression.type", codec)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("rdkafka producer")
}

fn rd_consumer(addr: &str, group: &str) -> StreamConsumer {
    RdConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("rdkafka consumer")
}

async fn sluice_read(addr: &str, topic: &str, n: usize) -> Vec<sluice_client::ConsumerRecord> {
    let mut c = Consumer::new(ConsumerConfig {
        client: ClientConfig::new(addr),
        ..ConsumerConfig::default()
    })
    .unwrap();
    let tp = (topic.to_string(), 0);
    c.assign(vec![tp.clone()]);
    c.seek(tp, Offset::Beginning);
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < n && tokio::time::Instant::now() < deadline {
        out.extend(c.poll(Duration::from_millis(200)).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_writes_and_sluice_client_reads_every_codec() {
    let b = common::broker().await;
    for (codec, _) in CODECS {
        let topic = format!("from-rdkafka-{codec}");
        create(&b.addr, &topic, 1).await;
        let p = rd_producer(&b.addr, codec);
        for i in 0..50 {
            let key = format!("k{i}");
            let value = format!("v{i}");
            let headers = OwnedHeaders::new().insert(RdHeader {
                key: "codec",
                value: Some(codec.as_bytes()),
            });
            p.send(
                FutureRecord::to(&topic)
                    .key(&key)
                    .payload(&value)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        }
        let got = sluice_read(&b.addr, &topic, 50).await;
        assert_eq!(got.len(), 50, "{codec}");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(
                r.key.as_deref(),
                Some(format!("k{i}").as_bytes()),
                "{codec}"
            );
            assert_eq!(
                r.value.as_deref(),
                Some(format!("v{i}").as_bytes()),
                "{codec}"
            );
            assert_eq!(r.headers[0].key, "codec");
            assert_eq!(r.headers[0].value.as_deref(), Some(codec.as_bytes()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_client_writes_and_an_rdkafka_group_reads_commits_and_resumes() {
    let b = common::broker().await;
    for (codec, compression) in CODECS {
        let topic = format!("from-sluice-{codec}");
        create(&b.addr, &topic, 3).await;
        let producer = Producer::new(ProducerConfig {
            client: ClientConfig::new(&b.addr),
            compression,
            ..ProducerConfig::default()
        })
        .await
        .unwrap();
        for i in 0..60 {
            producer
                .send(
                    ProducerRecord::new(&topic, format!("v{i}"))
                        .key(format!("k{i}"))
                        .header("codec", codec),
                )
                .await
                .unwrap();
        }
        producer.flush().await;

        let group = format!("g-{codec}");
        let c = rd_consumer(&b.addr, &group);
        c.subscribe(&[&topic]).unwrap();
        let mut seen = std::collections::BTreeMap::new();
        while seen.len() < 40 {
            let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
                .await
                .expect("records arrive")
                .unwrap();
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            assert_eq!(
                key[1..],
                value[1..],
                "{codec}: key and value belong together"
            );
            let h = m.headers().expect("headers").get(0);
            assert_eq!((h.key, h.value), ("codec", Some(codec.as_bytes())));
            seen.insert(key, ());
        }
        c.commit_consumer_state(CommitMode::Sync).unwrap();
        drop(c);

        // A new member of the group starts from the commits: the other 20, none seen before.
        let c = rd_consumer(&b.addr, &group);
        c.subscribe(&[&topic]).unwrap();
        for _ in 0..20 {
            let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
                .await
                .expect("the rest arrives")
                .unwrap();
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            assert!(
                seen.insert(key.clone(), ()).is_none(),
                "{codec}: {key} read twice"
            );
        }
        assert_eq!(seen.len(), 60);
        let more = tokio::time::timeout(Duration::from_millis(1500), c.recv()).await;
        assert!(more.is_err(), "{codec}: nothing beyond the 60 records");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_where_librdkafka_murmur2_puts_them() {
    let b = common::broker().await;
    create(&b.addr, "keys", 7).await;
    let p = rd_producer(&b.addr, "none");
    for i in 0..300 {
        let key = format!("user-{i}");
        let delivered = p
            .send(
                FutureRecord::to("keys").key(&key).payload("x"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        assert_eq!(
            delivered.partition,
            partition_for_key(key.as_bytes(), 7),
            "{key}"
        );
    }
}
