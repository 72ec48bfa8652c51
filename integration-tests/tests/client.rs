//! `sluice-client` against a real Sluice broker running in this process.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{broker, Broker};
use sluice_client::admin::{ConfigSource, NewTopic, Resource};
use sluice_client::partitioner::partition_for_key;
use sluice_client::{
    Admin, Assignor, ClientConfig, Compression, Consumer, ConsumerConfig, ConsumerRecord, Header,
    Offset, OffsetReset, Producer, ProducerConfig, ProducerRecord, RebalanceListener,
    TopicPartition,
};

fn client(b: &Broker) -> ClientConfig {
    ClientConfig {
        api_timeout: Duration::from_secs(20),
        ..ClientConfig::new(&b.addr)
    }
}

async fn create(b: &Broker, topic: &str, partitions: i32) {
    common::create_topic(&b.addr, topic, partitions).await;
}

/// Reads until `n` records arrived or 20 s passed.
async fn read(c: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(c.poll(Duration::from_millis(200)).await.expect("poll"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_with_every_codec() {
    let b = broker().await;
    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("codec-{i}");
        create(&b, &topic, 1).await;
        let producer = Producer::new(ProducerConfig {
            client: client(&b),
            compression: codec,
            batch_size: 4096,
            ..ProducerConfig::default()
        })
        .await
        .unwrap();
        assert!(producer.producer_id().is_some(), "idempotent by default");
        let mut futures = Vec::new();
        for n in 0..500 {
            let mut r = ProducerRecord::new(&topic, format!("value-{n}"))
                .key(format!("key-{n}"))
                .header("n", n.to_string())
                .timestamp(1_700_000_000_000 + n);
            if n == 7 {
                r.value = None; // a tombstone
            }
            futures.push(producer.send(r).await.unwrap());
        }
        for (n, f) in futures.into_iter().enumerate() {
            let m = f.await.expect("delivered");
            assert_eq!((m.partition, m.offset), (0, n as i64), "{codec:?}");
        }
        let mut c = Consumer::new(ConsumerConfig {
            client: client(&b),
            ..ConsumerConfig::default()
        })
        .unwrap();
        c.assign(vec![(topic.clone(), 0)]);
        c.seek((topic.clone(), 0), Offset::Beginning);
        let got = read(&mut c, 500).await;
        assert_eq!(got.len(), 500, "{codec:?}");
        for (n, r) in got.iter().enumerate() {
            assert_eq!(r.offset, n as i64);
            assert_eq!(r.key.as_deref(), Some(format!("key-{n}").as_bytes()));
            if n == 7 {
                assert_eq!(r.value, None);
            } else {
                assert_eq!(r.value.as_deref(), Some(format!("value-{n}").as_bytes()));
            }
            assert_eq!(r.headers, vec![Header::new("n", n.to_string())]);
            assert_eq!(r.timestamp, 1_700_000_000_000 + n as i64);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_go_where_the_java_partitioner_puts_them() {
    let b = broker().await;
    create(&b, "keyed", 5).await;
    let producer = Producer::new(ProducerConfig {
        client: client(&b),
        linger: Duration::ZERO,
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    for n in 0..50 {
        let key = format!("user-{n}");
        let m = producer
            .send(ProducerRecord::new("keyed", "v").key(key.clone()))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(m.partition, partition_for_key(key.as_bytes(), 5));
    }
    // Records without a key stick to a partition per batch but still spread over time.
    let mut partitions = BTreeSet::new();
    for _ in 0..200 {
        let f = producer
            .send(ProducerRecord::new("keyed", "x"))
            .await
            .unwrap();
        partitions.insert(f.await.unwrap().partition);
    }
    assert!(partitions.len() > 1, "{partitions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeks_by_offset_timestamp_and_end() {
    let b = broker().await;
    create(&b, "seek", 1).await;
    let producer = Producer::new(ProducerConfig {
        client: client(&b),
        acks: 1,
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    assert!(
        producer.producer_id().is_none(),
        "idempotence needs acks=all"
    );
    for n in 0..10 {
        producer
            .send(ProducerRecord::new("seek", format!("{n}")).timestamp(1000 * n))
            .await
            .unwrap();
    }
    producer.flush().await;
    let mut c = Consumer::new(ConsumerConfig {
        client: client(&b),
        ..ConsumerConfig::default()
    })
    .unwrap();
    let tp: TopicPartition = ("seek".into(), 0);
    c.assign(vec![tp.clone()]);
    c.seek(tp.clone(), Offset::At(4));
    assert_eq!(read(&mut c, 6).await.first().map(|r| r.offset), Some(4));
    c.seek(tp.clone(), Offset::Timestamp(6500));
    assert_eq!(read(&mut c, 3).await.first().map(|r| r.offset), Some(7));
    c.seek(tp.clone(), Offset::End);
    assert!(c.poll(Duration::from_millis(300)).await.unwrap().is_empty());
    assert_eq!(c.position(&tp), Some(10));
    producer
        .send(ProducerRecord::new("seek", "new"))
        .await
        .unwrap()
        .await
        .unwrap();
    let got = read(&mut c, 1).await;
    assert_eq!(got[0].value.as_deref(), Some(&b"new"[..]));
}

fn group_config(b: &Broker, group: &str, assignor: Assignor) -> ConsumerConfig {
    ConsumerConfig {
        client: client(b),
        group_id: Some(group.into()),
        auto_offset_reset: OffsetReset::Earliest,
        // Auto-commit runs inside poll and before partitions are given up, so it stays right
        // across rebalances; a commit from outside the poll loop could race one.
        enable_auto_commit: true,
        auto_commit_interval: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        assignors: vec![assignor],
        ..ConsumerConfig::default()
    }
}

/// Rebalance callbacks as they came: (assigned?, partitions).
#[derive(Clone, Default)]
struct Events(std::sync::Arc<std::sync::Mutex<Vec<Event>>>);

/// Whether partitions were assigned (or revoked), and which.
type Event = (bool, Vec<TopicPartition>);

impl RebalanceListener for Events {
    fn on_partitions_revoked(&mut self, partitions: &[TopicPartition]) {
        self.0.lock().unwrap().push((false, partitions.to_vec()));
    }
    fn on_partitions_assigned(&mut self, partitions: &[TopicPartition]) {
        self.0.lock().unwrap().push((true, partitions.to_vec()));
    }
}

impl Events {
    /// What the callbacks say is owned now, and the most partitions revoked at once.
    fn replay(&self) -> (BTreeSet<TopicPartition>, usize) {
        let mut owned = BTreeSet::new();
        let mut most = 0;
        for (assigned, tps) in self.0.lock().unwrap().iter() {
            if *assigned {
                owned.extend(tps.iter().cloned());
            } else {
                most = most.max(tps.len());
                for tp in tps {
                    owned.remove(tp);
                }
            }
        }
        (owned, most)
    }
}

/// What a polling member last owned, and its positions.
type View = (Vec<TopicPartition>, BTreeMap<TopicPartition, i64>);

/// A group member polling in its own task, as an application would run it: a member that
/// is not polled cannot take part in a rebalance.
struct Member {
    stop: tokio::sync::watch::Sender<bool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<ConsumerRecord>>>,
    view: std::sync::Arc<std::sync::Mutex<View>>,
    task: tokio::task::JoinHandle<Consumer>,
}

impl Member {
    fn start(mut c: Consumer, topic: &str) -> Member {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let view = std::sync::Arc::new(std::sync::Mutex::new(Default::default()));
        let (s, v, topic) = (seen.clone(), view.clone(), topic.to_string());
        let task = tokio::spawn(async move {
            while !*stopped.borrow_and_update() {
                let got = c.poll(Duration::from_millis(100)).await.expect("poll");
                s.lock().unwrap().extend(got);
                let positions = (0..4)
                    .filter_map(|p| {
                        let tp = (topic.clone(), p);
                        c.position(&tp).map(|o| (tp, o))
                    })
                    .collect();
                *v.lock().unwrap() = (c.assignment(), positions);
            }
            c
        });
        Member {
            stop,
            seen,
            view,
            task,
        }
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.view.lock().unwrap().0.clone()
    }

    fn position(&self, tp: &TopicPartition) -> Option<i64> {
        let v = self.view.lock().unwrap();
        v.0.contains(tp).then(|| v.1.get(tp).copied()).flatten()
    }

    async fn until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> (Consumer, Vec<ConsumerRecord>) {
        self.stop.send(true).unwrap();
        let c = self.task.await.unwrap();
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        (c, seen)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_split_partitions_rebalance_and_resume_from_commits() {
    for (group, assignor) in [
        ("eager", Assignor::Range),
        ("coop", Assignor::CooperativeSticky),
    ] {
        let b = broker().await;
        let topic = format!("grp-{group}");
        create(&b, &topic, 4).await;
        let producer = Producer::new(ProducerConfig {
            client: client(&b),
            ..ProducerConfig::default()
        })
        .await
        .unwrap();
        for n in 0..400 {
            producer
                .send(ProducerRecord::new(&topic, n.to_string()).key(n.to_string()))
                .await
                .unwrap();
        }
        producer.flush().await;

        let mut first = Consumer::new(group_config(&b, group, assignor)).unwrap();
        let events = Events::default();
        first.set_rebalance_listener(Box::new(events.clone()));
        first.subscribe(vec![topic.clone()]).unwrap();
        let mut seen = read(&mut first, 1).await;
        assert_eq!(
            first.assignment().len(),
            4,
            "{group}: the only member owns everything"
        );
        let one = Member::start(first, &topic);

        let mut second = Consumer::new(group_config(&b, group, assignor)).unwrap();
        second.subscribe(vec![topic.clone()]).unwrap();
        let two = Member::start(second, &topic);
        one.until("the partitions to be split", || {
            one.assignment().len() == 2 && two.assignment().len() == 2
        })
        .await;
        let owned: BTreeSet<TopicPartition> = one
            .assignment()
            .into_iter()
            .chain(two.assignment())
            .collect();
        assert_eq!(owned.len(), 4, "{group}: no partition owned twice");

        // Read the rest and commit; then the second member leaves and the first takes over.
        one.until("every partition to be read", || {
            let read: i64 = (0..4)
                .filter_map(|p| {
                    let tp = (topic.clone(), p);
                    one.position(&tp).or(two.position(&tp))
                })
                .sum();
            read == 400
        })
        .await;
        let (first, a) = one.stop().await;
        let (second, b2) = two.stop().await;
        let (owns, most_revoked) = events.replay();
        assert_eq!(
            owns,
            first.assignment().into_iter().collect(),
            "{group}: callbacks tell what is owned"
        );
        // Eager members give up everything in a rebalance; cooperative ones only what moves.
        let expected = if assignor.is_cooperative() { 2 } else { 4 };
        assert_eq!(most_revoked, expected, "{group}");
        seen.extend(a);
        seen.extend(b2);
        second.close().await.unwrap();
        let one = Member::start(first, &topic);
        one.until("the survivor to take over", || one.assignment().len() == 4)
            .await;
        let (first, a) = one.stop().await;
        seen.extend(a);
        assert_eq!(events.replay().0.len(), 4, "{group}: told of the takeover");
        // Two rebalances happened (a member joined, a member left) and no spurious one:
        // eager members revoke and reassign in each, cooperative ones only when things move.
        let callbacks = events.0.lock().unwrap().len();
        assert_eq!(
            callbacks,
            if assignor.is_cooperative() { 3 } else { 5 },
            "{group}"
        );
        let values: BTreeSet<String> = seen
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
            .collect();
        assert_eq!(values.len(), 400, "{group}: every record read");
        first.close().await.unwrap();

        // A new member resumes from the commits: nothing is read twice.
        let admin = Admin::new(client(&b)).unwrap();
        let committed = admin.group_offsets(group).await.unwrap();
        assert_eq!(committed.values().map(|c| c.offset).sum::<i64>(), 400);
        producer
            .send(ProducerRecord::new(&topic, "late").key("k"))
            .await
            .unwrap();
        producer.flush().await;
        let mut three = Consumer::new(group_config(&b, group, assignor)).unwrap();
        three.subscribe(vec![topic.clone()]).unwrap();
        let got = read(&mut three, 1).await;
        assert_eq!(got.len(), 1, "{group}");
        assert_eq!(got[0].value.as_deref(), Some(&b"late"[..]));
        // A manual commit by the only member, then the group's offsets are all read.
        three.commit().await.unwrap();
        let committed = admin.group_offsets(group).await.unwrap();
        assert_eq!(committed.values().map(|c| c.offset).sum::<i64>(), 401);
        three.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_manages_topics_configs_and_groups() {
    let b = broker().await;
    let admin = Admin::new(client(&b)).unwrap();
    admin
        .create_topics(&[NewTopic {
            name: "adm".into(),
            partitions: 2,
            replication_factor: 1,
            configs: vec![("retention.ms".into(), "3600000".into())],
            replica_assignment: Vec::new(),
        }])
        .await
        .unwrap();
    let again = admin
        .create_topics(&[NewTopic {
            name: "adm".into(),
            partitions: 2,
            replication_factor: 1,
            configs: Vec::new(),
            replica_assignment: Vec::new(),
        }])
        .await
        .unwrap_err();
    assert_eq!(again.kafka().map(|e| e.code()), Some(36), "{again}");
    assert!(again.to_string().contains("adm"), "{again}");

    let topics = admin.describe_topics(&["adm".into()]).await.unwrap();
    assert_eq!(topics[0].partitions.len(), 2);
    admin.create_partitions("adm", 3).await.unwrap();
    assert_eq!(
        admin.describe_topics(&["adm".into()]).await.unwrap()[0]
            .partitions
            .len(),
        3
    );
    assert!(admin
        .list_topics()
        .await
        .unwrap()
        .iter()
        .any(|t| t.name == "adm"));

    let configs = admin
        .describe_configs(&Resource::Topic("adm".into()))
        .await
        .unwrap();
    let retention = configs.iter().find(|c| c.name == "retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::Topic);
    admin
        .alter_configs(
            &Resource::Topic("adm".into()),
            &[
                ("retention.ms".into(), None),
                ("cleanup.policy".into(), Some("compact".into())),
            ],
        )
        .await
        .unwrap();
    let configs = admin
        .describe_configs(&Resource::Topic("adm".into()))
        .await
        .unwrap();
    let get = |k: &str| configs.iter().find(|c| c.name == k).unwrap().clone();
    assert_eq!(get("retention.ms").source, ConfigSource::Default);
    assert_eq!(get("cleanup.policy").value.as_deref(), Some("compact"));

    // Group offsets set by an admin, listed, described and deleted.
    let offsets: BTreeMap<TopicPartition, i64> = [(("adm".to_string(), 0), 0)].into();
    admin.set_group_offsets("g", &offsets).await.unwrap();
    assert_eq!(
        admin.group_offsets("g").await.unwrap()[&("adm".to_string(), 0)].offset,
        0
    );
    assert!(admin
        .list_groups()
        .await
        .unwrap()
        .iter()
        .any(|g| g.group_id == "g"));
    assert_eq!(admin.describe_group("g").await.unwrap().members.len(), 0);
    admin.delete_groups(&["g".into()]).await.unwrap();
    assert!(admin.group_offsets("g").await.unwrap().is_empty());

    let cluster = admin.describe_cluster().await.unwrap();
    assert_eq!(cluster.brokers.len(), 1);
    admin.delete_topics(&["adm".into()]).await.unwrap();
    let gone = admin.describe_topics(&["adm".into()]).await.unwrap_err();
    assert_eq!(gone.kafka().map(|e| e.code()), Some(3), "{gone}");
}
