use super::*;
use crate::security::SecurityProtocol;

#[test]
fn kafka_keys_layer_and_unknown_keys_are_refused_naming_them() {
    let mut c = BrokerConfig::default();
    c.set("listeners", "PLAINTEXT://127.0.0.1:0")
        .expect("listeners");
    c.set("log.retention.hours", "2").expect("hours");
    assert_eq!(c.log_defaults.retention_ms, 7_200_000);
    c.set("message.max.bytes", "2000").expect("max");
    assert_eq!(c.log_defaults.max_message_bytes, 2000);
    c.apply_env(
        [
            ("SLUICE_NUM_PARTITIONS".to_string(), "3".to_string()),
            ("OTHER".into(), "x".into()),
        ]
        .into_iter(),
    )
    .expect("env");
    assert_eq!(c.num_partitions, 3);
    let e = c.set("log.retention.hourz", "1").expect_err("unknown");
    assert!(e.to_string().contains("log.retention.hourz"));
    let e = c.set("num.partitions", "zero").expect_err("bad value");
    assert!(e.to_string().contains("num.partitions"));
    assert!(c.set("listeners", "SSL//h:1").is_err());
}

#[test]
fn cleaner_and_producer_state_keys_reach_every_log() {
    let mut c = BrokerConfig::default();
    c.set("log.cleaner.dedupe.buffer.size", "16777216")
        .expect("dedupe buffer");
    assert_eq!(c.log_defaults.cleaner_dedupe_buffer_bytes, 16 << 20);
    let e = c
        .set("log.cleaner.dedupe.buffer.size", "1000")
        .expect_err("too small");
    assert!(
        e.to_string().contains("log.cleaner.dedupe.buffer.size"),
        "{e}"
    );
    c.set("producer.id.expiration.ms", "60000")
        .expect("producer ids");
    assert_eq!(c.log_defaults.producer_id_expiration_ms, 60_000);
    let described = c.describe();
    assert_eq!(
        described
            .get("log.cleaner.dedupe.buffer.size")
            .map(String::as_str),
        Some("16777216")
    );
    assert_eq!(
        described
            .get("producer.id.expiration.ms")
            .map(String::as_str),
        Some("60000")
    );
}

#[test]
fn cluster_keys_parse_and_are_checked_together() {
    let mut c = BrokerConfig::default();
    c.set("node.id", "2").expect("id");
    c.set("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .expect("listeners");
    assert_eq!(c.listeners.kafka[0].port, 9092);
    assert_eq!(
        c.cluster.controller_listener.as_ref().map(|l| l.port),
        Some(9093)
    );
    c.set("controller.quorum.voters", "1@a:9093,2@b:9093,3@c:9093")
        .expect("voters");
    assert_eq!(c.cluster.voters[1], (2, "b:9093".to_string()));
    assert_eq!(c.cluster.offsets_rf(), 3, "Kafka's default in a cluster");
    c.set("offsets.topic.replication.factor", "2").expect("rf");
    assert_eq!(c.cluster.offsets_rf(), 2, "as set");
    assert_eq!(
        BrokerConfig::default().cluster.offsets_rf(),
        1,
        "a single node"
    );
    c.set("process.roles", "broker,controller").expect("roles");
    c.validate().expect("a voter with a controller listener");
    c.set("node.id", "4").expect("id");
    let e = c.validate().expect_err("not a voter");
    assert!(e.to_string().contains("process.roles"), "{e}");
    assert!(c
        .set("controller.quorum.voters", "1@a:9093,1@b:9093")
        .is_err());
    assert!(c.set("controller.quorum.voters", "x@a:9093").is_err());
    assert!(c.set("controller.quorum.voters", "1@a").is_err());
    assert!(c.set("process.roles", "controller").is_err());
    assert!(c.set("listeners", "PLAINTEXT://:1,PLAINTEXT://:2").is_err());
}

#[test]
fn properties_and_toml_files_are_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("server.properties");
    std::fs::write(
        &p,
        "# comment\nnode.id=7\nlog.dirs = /tmp/a,/tmp/b\nauto.create.topics.enable: false\n",
    )
    .expect("write");
    let mut c = BrokerConfig::default();
    c.apply_file(&p).expect("properties");
    assert_eq!(
        (c.node_id, c.log_dirs.len(), c.auto_create_topics),
        (7, 2, false)
    );
    let t = dir.path().join("sluice.toml");
    std::fs::write(
        &t,
        "\"num.partitions\" = 4\n\"log.cleanup.policy\" = \"compact\"\n",
    )
    .expect("write");
    c.apply_file(&t).expect("toml");
    assert_eq!(c.num_partitions, 4);
}

#[test]
fn cleaner_ratio_lag_and_timestamp_bounds_take_kafkas_broker_synonyms() {
    let mut c = BrokerConfig::default();
    c.set("log.cleaner.min.cleanable.ratio", "0.2")
        .expect("ratio");
    c.set("log.cleaner.max.compaction.lag.ms", "60000")
        .expect("lag");
    c.set("log.message.timestamp.before.max.ms", "1000")
        .expect("before");
    c.set("log.message.timestamp.after.max.ms", "2000")
        .expect("after");
    let d = &c.log_defaults;
    assert_eq!(d.min_cleanable_dirty_ratio.get(), 0.2);
    assert_eq!(d.max_compaction_lag_ms, 60_000);
    assert_eq!(
        (
            d.message_timestamp_before_max_ms,
            d.message_timestamp_after_max_ms
        ),
        (1000, 2000)
    );
    let e = c
        .set("log.cleaner.min.cleanable.ratio", "2")
        .expect_err("out of range");
    assert!(
        e.to_string().contains("log.cleaner.min.cleanable.ratio"),
        "{e}"
    );
}

#[test]
fn listeners_take_any_name_with_kafkas_default_protocol_map() {
    let mut c = BrokerConfig::default();
    c.set(
        "listeners",
        "PLAINTEXT://:9092,SSL://:9093,sasl_ssl://:9094,INTERNAL://:9095",
    )
    .expect("listeners");
    let names: Vec<&str> = c.listeners.kafka.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["PLAINTEXT", "SSL", "SASL_SSL", "INTERNAL"]);
    let l = &c.listeners;
    assert_eq!(l.protocol("SSL"), Some(SecurityProtocol::Ssl));
    assert_eq!(l.protocol("SASL_SSL"), Some(SecurityProtocol::SaslSsl));
    assert_eq!(l.protocol("INTERNAL"), Some(SecurityProtocol::Plaintext));
    assert_eq!(l.protocol("CONTROLLER"), Some(SecurityProtocol::Plaintext));
    assert_eq!(l.protocol("CLIENT"), None);
    c.validate().expect("every name is in the default map");
    assert_eq!(c.listeners.inter_broker_listener(), "PLAINTEXT");

    c.set("listeners", "CLIENT://:9092").expect("listeners");
    let e = c.validate().expect_err("CLIENT is not in the default map");
    assert_eq!(e.key, "listener.security.protocol.map", "{e}");
    c.set(
        "listener.security.protocol.map",
        "client:SASL_SSL,replication:ssl",
    )
    .expect("map");
    assert_eq!(
        c.listeners.protocol("CLIENT"),
        Some(SecurityProtocol::SaslSsl)
    );
    c.validate().expect("CLIENT is mapped");
    let e = c
        .set("listener.security.protocol.map", "CLIENT:TLS")
        .expect_err("no such protocol");
    assert!(e.to_string().contains("TLS"), "{e}");
    assert!(c
        .set("listener.security.protocol.map", "A:SSL,a:SSL")
        .is_err());
}

#[test]
fn advertised_and_inter_broker_listeners_must_name_a_listener() {
    let mut c = BrokerConfig::default();
    c.set("listeners", "PLAINTEXT://0.0.0.0:0,SSL://127.0.0.1:0")
        .expect("listeners");
    c.set("advertised.listeners", "SSL://broker1.example:9093")
        .expect("advertised");
    let (plain, ssl) = (&c.listeners.kafka[0], &c.listeners.kafka[1]);
    assert_eq!(
        c.listeners.advertised_address(plain, 4000),
        ("localhost".to_string(), 4000),
        "a wildcard bind advertises localhost and the bound port"
    );
    assert_eq!(
        c.listeners.advertised_address(ssl, 4001),
        ("broker1.example".to_string(), 9093)
    );
    c.validate().expect("valid");

    c.set("advertised.listeners", "SASL_SSL://h:1")
        .expect("parses");
    let e = c.validate().expect_err("no SASL_SSL listener");
    assert_eq!(e.key, "advertised.listeners", "{e}");
    c.set("advertised.listeners", "").expect("cleared");

    c.set("security.inter.broker.protocol", "SSL")
        .expect("protocol");
    assert_eq!(c.listeners.inter_broker_listener(), "SSL");
    c.validate().expect("SSL is a listener");
    c.set("inter.broker.listener.name", "plaintext")
        .expect("name");
    let e = c.validate().expect_err("both set");
    assert!(e.to_string().contains("only one"), "{e}");
    c.listeners.security_inter_broker_protocol = None;
    assert_eq!(c.listeners.inter_broker_listener(), "PLAINTEXT");
    c.set("inter.broker.listener.name", "INTERNAL")
        .expect("name");
    let e = c.validate().expect_err("no INTERNAL listener");
    assert_eq!(e.key, "inter.broker.listener.name", "{e}");
}

#[test]
fn the_controller_listener_stays_plaintext_and_replication_too() {
    let mut c = BrokerConfig::default();
    c.set("listeners", "SSL://:9092,CONTROLLER://:9093")
        .expect("listeners");
    c.set("controller.quorum.voters", "1@a:9093")
        .expect("voters");
    let e = c.validate().expect_err("replication over SSL");
    assert_eq!(e.key, "inter.broker.listener.name", "{e}");
    c.set(
        "listeners",
        "SSL://:9092,PLAINTEXT://:9094,CONTROLLER://:9093",
    )
    .expect("listeners");
    c.validate().expect("PLAINTEXT replication");
    c.set(
        "listener.security.protocol.map",
        "SSL:SSL,PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
    )
    .expect("map");
    let e = c.validate().expect_err("a TLS controller listener");
    assert!(e.to_string().contains("CONTROLLER"), "{e}");
    c.set(
        "listener.security.protocol.map",
        "SSL:SSL,PLAINTEXT:PLAINTEXT",
    )
    .expect("map");
    let e = c
        .validate()
        .expect_err("an explicit map must name CONTROLLER");
    assert!(e.to_string().contains("CONTROLLER"), "{e}");
}
