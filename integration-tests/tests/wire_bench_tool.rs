//! `sluice bench wire` against a broker on port 0: it runs, and what it sent is in the log.

use sluice_cli::tools::wire_bench::{produce, ProduceArgs};

mod common;

#[tokio::test(flavor = "multi_thread")]
async fn bench_produce_writes_what_it_reports() {
    let broker = common::broker().await;
    let args = ProduceArgs {
        bootstrap: broker.addr.clone(),
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
    // A record batch of 10 records sits at the start of partition 0's first segment.
    let log = std::fs::read(
        broker
            .dir
            .path()
            .join("bench-0")
            .join("00000000000000000000.log"),
    )
    .expect("segment");
    let batch_len = i32::from_be_bytes([log[8], log[9], log[10], log[11]]);
    let records = i32::from_be_bytes([log[57], log[58], log[59], log[60]]);
    assert!(
        batch_len > 49 && records == 10,
        "batch length {batch_len}, records {records}"
    );
}
