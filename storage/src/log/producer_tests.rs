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

/// Key, value and timestamp of every record of the batches read from offset 0, and each
/// batch's codec and producer fields.
type StoredRecord = (Vec<u8>, Vec<u8>, i64);
/// A stored batch's codec id, producer id, epoch and base sequence.
type StoredBatch = (u8, i64, i16, i32);

fn stored(log: &Log) -> (Vec<StoredRecord>, Vec<StoredBatch>) {
    let data = log
        .read(&crate::ReadOptions::from(Offset(0)))
        .expect("read")
        .records;
    let (mut records, mut batches) = (Vec::new(), Vec::new());
    for (at, h) in crate::batch::BatchIter::new(&data) {
        let (_, body) = crate::record::records_section(&data[at..at + h.size()], 1 << 20)
            .expect("a valid batch, CRC included");
        for r in crate::record::RecordIter::new(&body, h.record_count as usize) {
            let r = r.expect("record");
            records.push((
                r.key.expect("key").to_vec(),
                r.value.expect("value").to_vec(),
                h.base_timestamp + r.timestamp_delta,
            ));
        }
        batches.push((
            h.compression(),
            h.producer_id,
            h.producer_epoch,
            h.base_sequence,
        ));
    }
    (records, batches)
}

#[test]
fn a_topic_codec_recompresses_producer_batches_and_keeps_everything_else() {
    use crate::compression::Compression;
    let batch = |codec: Compression, seq: i32| {
        BatchBuilder::new()
            .compression(codec)
            .producer(7, 2, seq)
            .record(Some(b"a"), Some(&[b'x'; 300][..]), 1_000)
            .record(Some(b"b"), Some(&[b'y'; 300][..]), 1_005)
            .build()
    };
    let expected = |n: usize| {
        (0..n)
            .flat_map(|_| {
                [
                    (b"a".to_vec(), vec![b'x'; 300], 1_000),
                    (b"b".to_vec(), vec![b'y'; 300], 1_005),
                ]
            })
            .collect::<Vec<_>>()
    };
    for (setting, stored_as) in [
        ("zstd", Compression::Zstd.id()),
        ("lz4", Compression::Lz4.id()),
        ("gzip", Compression::Gzip.id()),
        ("snappy", Compression::Snappy.id()),
        ("uncompressed", Compression::None.id()),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = LogConfig::default();
        config.set("compression.type", setting).expect("codec");
        let log = open(dir.path(), config);
        log.append(&batch(Compression::None, 0), &AppendOptions::default())
            .expect("append");
        log.append(&batch(Compression::Gzip, 2), &AppendOptions::default())
            .expect("append");
        let (records, batches) = stored(&log);
        assert_eq!(records, expected(2), "{setting}");
        assert_eq!(
            batches,
            vec![(stored_as, 7, 2, 0), (stored_as, 7, 2, 2)],
            "{setting}"
        );
        assert!(
            log.append(&batch(Compression::Lz4, 2), &AppendOptions::default())
                .expect("retry")
                .duplicate,
            "{setting}: sequences still deduplicate"
        );
    }

    // `producer` keeps each batch as it came.
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), LogConfig::default());
    log.append(&batch(Compression::Gzip, 0), &AppendOptions::default())
        .expect("append");
    assert_eq!(stored(&log).1, vec![(Compression::Gzip.id(), 7, 2, 0)]);

    // The size is checked again after the rewrite: decompressed, the batch no longer fits.
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = LogConfig::default();
    config
        .set("compression.type", "uncompressed")
        .expect("codec");
    let compressible = BatchBuilder::new()
        .compression(Compression::Zstd)
        .record(Some(b"k"), Some(&[b'z'; 5000][..]), 1)
        .build();
    config
        .set("max.message.bytes", &(compressible.len() + 100).to_string())
        .expect("max");
    let log = open(dir.path(), config);
    assert!(matches!(
        log.append(&compressible, &AppendOptions::default()),
        Err(StorageError::RecordTooLarge { .. })
    ));
    assert_eq!(log.offsets().log_end, Offset(0));
}

#[test]
fn compression_keys_take_kafkas_values_and_levels() {
    let mut c = LogConfig::default();
    assert_eq!(c.get("compression.type").as_deref(), Some("producer"));
    assert_eq!(c.get("compression.zstd.level").as_deref(), Some("3"));
    assert_eq!(c.get("compression.lz4.level").as_deref(), Some("9"));
    assert_eq!(c.get("compression.gzip.level").as_deref(), Some("-1"));
    for ok in ["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"] {
        c.set("compression.type", ok).expect(ok);
        assert_eq!(c.get("compression.type").as_deref(), Some(ok));
    }
    for (key, bad) in [
        ("compression.type", "brotli"),
        ("compression.gzip.level", "0"),
        ("compression.gzip.level", "10"),
        ("compression.lz4.level", "18"),
        ("compression.zstd.level", "23"),
    ] {
        assert!(c.set(key, bad).is_err(), "{key}={bad}");
    }
    c.set("compression.zstd.level", "-5")
        .expect("negative zstd levels exist");
}
