//! `sluice bench produce` against a broker on port 0: it runs, and what it sent is in the log.

use sluice_broker::tools::bench::{produce, ProduceArgs};

mod common;

#[tokio::test(flavor = "multi_thread")]
async fn bench_produce_writes_what_it_reports() {
    let (addr, dir, _stop) = common::start(&[]).await;
    let args = ProduceArgs {
        bootstrap: addr.to_string(),
        topic: "bench".into(),
        partitions: 2,
        record_size: 100,
        batch_size: 1000,
        acks: -1,
        producers: 2,
        in_flight: 3,
        rate: 0,
        seconds: 1,
        broker_pid: None,
    };
    produce(args).await.expect("bench runs");
    // Each request carried whole batches of 10 records of 100 bytes to its partitions.
    let size: u64 = std::fs::read_dir(dir.path().join("bench-0"))
        .expect("partition dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(size > 1000, "records reached partition 0 ({size} bytes)");
}
