//! Producer state across crashes and time: snapshots past the recovered end, and producers
//! idle for longer than `producer.id.expiration.ms`.

use super::tests::{open, small_config};
use super::*;
use crate::record::BatchBuilder;
use crate::segment::file_name;
use crate::AppendOptions;

fn opts() -> AppendOptions {
    AppendOptions {
        now_ms: 1,
        ..AppendOptions::default()
    }
}

/// A batch of `n` records of producer `pid` (epoch 0) from sequence `seq`, at time `ts`.
fn idempotent(pid: i64, seq: i32, n: usize, ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new().producer(pid, 0, seq);
    for _ in 0..n {
        b = b.record(Some(b"k"), Some(b"v"), ts);
    }
    b.build()
}

fn snapshot_path(log_dir: &std::path::Path, offset: i64) -> std::path::PathBuf {
    log_dir.join(file_name(Offset(offset), SNAPSHOT_EXT))
}

#[test]
fn a_snapshot_past_the_recovered_log_end_is_deleted_not_loaded_once_the_log_regrows() {
    let dir = tempfile::tempdir().expect("tmp");
    let part = dir.path().join("t-0");
    let log = open(dir.path(), small_config());
    log.append(&idempotent(7, 0, 1, 1000), &opts())
        .expect("append");
    log.close().expect("close"); // snapshot at offset 1: producer 7 ends at sequence 0
    drop(log);
    assert!(snapshot_path(&part, 1).exists());
    // The record is lost (the disk lost what the checkpoints say was there).
    std::fs::OpenOptions::new()
        .write(true)
        .open(part.join(file_name(Offset(0), "log")))
        .expect("log file")
        .set_len(0)
        .expect("cut");

    let log = open(dir.path(), small_config());
    assert_eq!(log.offsets().log_end, Offset(0));
    assert!(
        !snapshot_path(&part, 1).exists(),
        "a snapshot of history the log no longer holds was left behind"
    );
    // New history: the producer starts over with three records at offsets 0..=2.
    log.append(&idempotent(7, 0, 3, 2000), &opts())
        .expect("append");
    drop(log); // crash

    let log = open(dir.path(), small_config());
    assert_eq!(log.offsets().log_end, Offset(3));
    let next = log.append(&idempotent(7, 3, 1, 3000), &opts());
    assert!(
        next.is_ok(),
        "the next sequence after the new history is refused: {next:?}"
    );
}

#[test]
fn producers_idle_past_producer_id_expiration_ms_are_forgotten_and_leave_the_snapshot() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = small_config();
    config
        .set("producer.id.expiration.ms", "1000")
        .expect("a topic key, as in Kafka");
    assert_eq!(
        config.get("producer.id.expiration.ms").as_deref(),
        Some("1000")
    );
    assert_eq!(
        LogConfig::default()
            .get("producer.id.expiration.ms")
            .as_deref(),
        Some("86400000"),
        "Kafka's default"
    );
    let log = open(dir.path(), config.clone());
    log.append(&idempotent(1, 0, 1, 5_000), &opts())
        .expect("append");
    log.append(&idempotent(2, 0, 1, 5_900), &opts())
        .expect("append");
    log.housekeeping(5_999).expect("housekeeping");
    assert_eq!(log.writer.lock().producers.len(), 2);
    // Producer 1 wrote last at 5_000: at 6_500 it is 1_500 ms idle; producer 2 only 600.
    log.housekeeping(6_500).expect("housekeeping");
    assert_eq!(log.writer.lock().producers.len(), 1, "producer 1 expired");
    assert!(matches!(
        log.append(&idempotent(2, 5, 1, 6_500), &opts()),
        Err(StorageError::OutOfOrderSequence { expected: 1, .. })
    ));
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), config);
    assert_eq!(
        log.writer.lock().producers.len(),
        1,
        "the snapshot holds only the live producer"
    );
    log.append(&idempotent(1, 9, 1, 7_000), &opts())
        .expect("an expired producer is unknown: any sequence starts it again (KIP-360)");
}
