//! `sluice-client` across a broker restart: the producer retries through the outage and,
//! being idempotent, writes every record exactly once and in order; a consumer that was
//! reading carries on from where it was.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice_broker::config::BrokerConfig;
use sluice_broker::server::Server;
use sluice_client::admin::NewTopic;
use sluice_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The number a record's value holds.
fn number(r: &sluice_client::ConsumerRecord) -> i64 {
    std::str::from_utf8(r.value.as_deref().unwrap())
        .unwrap()
        .parse()
        .unwrap()
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn start(dir: &Path, port: u16) -> (u16, Running) {
    let mut c = BrokerConfig::default();
    c.set("listeners", &format!("PLAINTEXT://127.0.0.1:{port}"))
        .unwrap();
    c.set("log.dirs", &dir.display().to_string()).unwrap();
    c.set("sluice.metrics.listener", "").unwrap();
    let server = Server::bind(c).await.expect("bind");
    let port = server.local_addr().unwrap().port();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        server.run(rx).await.expect("broker runs");
    });
    (port, Running { stop, task })
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_ride_through_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (port, broker) = start(dir.path(), 0).await;
    let addr = format!("127.0.0.1:{port}");
    let client = ClientConfig {
        // Retries must outlast the outage.
        api_timeout: Duration::from_secs(30),
        ..ClientConfig::new(&addr)
    };
    Admin::new(client.clone())
        .unwrap()
        .create_topics(&[NewTopic {
            name: "r".into(),
            partitions: 2,
            replication_factor: 1,
            configs: Vec::new(),
            replica_assignment: Vec::new(),
        }])
        .await
        .unwrap();
    let producer = Producer::new(ProducerConfig {
        client: client.clone(),
        linger: Duration::from_millis(2),
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    assert!(producer.producer_id().is_some(), "idempotent by default");
    let mut consumer = Consumer::new(ConsumerConfig {
        client: client.clone(),
        ..ConsumerConfig::default()
    })
    .unwrap();
    let tps = vec![("r".to_string(), 0), ("r".to_string(), 1)];
    consumer.assign(tps.clone());
    for tp in tps {
        consumer.seek(tp, Offset::Beginning);
    }

    let mut deliveries = Vec::new();
    let mut broker = Some(broker);
    let mut read = Vec::new();
    for i in 0..600 {
        let record = ProducerRecord::new("r", format!("{i}")).key(format!("k{}", i % 7));
        deliveries.push(producer.send(record).await.unwrap());
        if i == 300 {
            // Mid-stream: the broker stops (cleanly) and comes back on the same port.
            read.extend(consumer.poll(Duration::from_millis(100)).await.unwrap());
            broker.take().unwrap().stop().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            broker = Some(start(dir.path(), port).await.1);
        }
    }
    for d in deliveries {
        d.await.expect("delivered despite the restart");
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    while read.len() < 600 && Instant::now() < deadline {
        read.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    let mut values: Vec<i64> = read.iter().map(number).collect();
    // Per key, in the order sent; over all, each exactly once.
    for k in 0..7 {
        let per_key: Vec<i64> = read
            .iter()
            .filter(|r| r.key.as_deref() == Some(format!("k{k}").as_bytes()))
            .map(number)
            .collect();
        assert!(
            per_key.windows(2).all(|w| w[0] < w[1]),
            "key k{k} out of order: {per_key:?}"
        );
    }
    values.sort_unstable();
    assert_eq!(
        values,
        (0..600).collect::<Vec<i64>>(),
        "every record exactly once"
    );
    producer.close().await;
    broker.unwrap().stop().await;
}
