//! Fault injection at the storage engine's I/O calls (`--features failpoints`).
//!
//! Fail points are process-global, so every scenario runs inside one test, in sequence.

use sluice_storage::batch::BatchIter;
use sluice_storage::record::BatchBuilder;
use sluice_storage::{
    AppendOptions, Log, LogConfig, Offset, ReadOptions, StorageError, TopicPartition,
};

fn batch() -> Vec<u8> {
    BatchBuilder::new()
        .record(Some(b"k"), Some(b"value"), 1_700_000_000_000)
        .build()
}

/// The base offset of every batch readable from the log start, following next offsets.
fn read_bases(log: &Log) -> Vec<i64> {
    let mut out = Vec::new();
    let mut at = log.offsets().log_start;
    loop {
        let data = log.read(&ReadOptions::from(at)).expect("read").records;
        if data.is_empty() {
            return out;
        }
        for (_, h) in BatchIter::new(&data) {
            out.push(h.base_offset);
            at = Offset(h.next_offset());
        }
    }
}

/// A media error, as a bad sector reads.
fn is_eio(e: Option<&StorageError>) -> bool {
    matches!(e, Some(StorageError::Io { source, .. }) if source.raw_os_error() == Some(5))
}

fn open(dir: &std::path::Path, config: LogConfig) -> Log {
    Log::open(&dir.join("f-0"), TopicPartition::new("f", 0), config).expect("open")
}

/// A log flushed after every record (`flush.messages=1`, so appends use `pwrite`), holding one.
fn flushed_log_with_one_record() -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 1,
            ..LogConfig::default()
        },
    );
    log.append(&batch(), &AppendOptions::default())
        .expect("append");
    (dir, log)
}

/// Appending to `log` fails with an I/O error while fail point `point` fires.
fn append_fails_at(log: &Log, point: &str) {
    fail::cfg(point, "return").expect("cfg");
    let result = log.append(&batch(), &AppendOptions::default());
    fail::remove(point);
    assert!(
        matches!(result, Err(StorageError::Io { .. })),
        "{point}: {result:?}"
    );
}

#[test]
fn io_failures_refuse_writes_and_lose_nothing_acknowledged() {
    let scenario = fail::FailScenario::setup();

    // A failed flush poisons the log: what reached the disk is unknown, so it refuses writes.
    let (dir, log) = flushed_log_with_one_record();
    append_fails_at(&log, "storage::mmap::flush");
    assert!(matches!(
        log.append(&batch(), &AppendOptions::default()),
        Err(StorageError::Poisoned { .. })
    ));
    assert!(matches!(log.flush(), Err(StorageError::Poisoned { .. })));
    // Reads still serve what was appended.
    assert!(!log
        .read(&ReadOptions::from(Offset(0)))
        .expect("read")
        .records
        .is_empty());
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert!(
        log.offsets().log_end >= Offset(1),
        "the acknowledged record survives reopen"
    );

    // A full disk when the segment grows is an error for that append only, not a crash.
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(
        dir.path(),
        LogConfig {
            preallocate_chunk_bytes: 4096,
            ..LogConfig::default()
        },
    );
    log.append(&batch(), &AppendOptions::default())
        .expect("append");
    fail::cfg("storage::io::fallocate", "return").expect("cfg");
    let big = BatchBuilder::new()
        .record(None, Some(&vec![7u8; 64 * 1024]), 0)
        .build();
    assert!(matches!(
        log.append(&big, &AppendOptions::default()),
        Err(StorageError::Io { .. })
    ));
    fail::remove("storage::io::fallocate");
    assert_eq!(
        log.offsets().log_end,
        Offset(1),
        "the failed append left no trace"
    );
    log.append(&big, &AppendOptions::default())
        .expect("append once space is back");
    assert_eq!(log.offsets().log_end, Offset(2));

    // A nearly full disk with room for the append but not for the chunk ahead: the append
    // takes only what it needs, so a disk fills up before producers are refused.
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), LogConfig::default());
    fail::cfg("storage::io::fallocate_over_8k", "return").expect("cfg");
    for _ in 0..3 {
        log.append(&batch(), &AppendOptions::default())
            .expect("room for this append");
    }
    fail::remove("storage::io::fallocate_over_8k");
    assert_eq!(read_bases(&log), vec![0, 1, 2]);
    drop(dir);

    // A filesystem without fallocate(2) (EOPNOTSUPP: some network and FUSE filesystems, ZFS
    // before 2.2): the segment cannot preallocate, so its appends go through pwrite(2),
    // which needs no preallocation to be safe; the log appends and recovers as usual.
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        segment_bytes: 4096,
        preallocate_chunk_bytes: 4096,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config.clone());
    fail::cfg("storage::io::fallocate", "return(unsupported)").expect("cfg");
    for i in 0..200 {
        let appended = log.append(&batch(), &AppendOptions::default());
        assert!(
            appended.is_ok(),
            "append {i} without fallocate: {appended:?}"
        );
    }
    assert!(log.segment_count() > 1, "the log rolled");
    assert_eq!(read_bases(&log), (0..200).collect::<Vec<_>>());
    drop(log); // unclean
    let log = open(dir.path(), config);
    fail::remove("storage::io::fallocate");
    assert_eq!(
        read_bases(&log),
        (0..200).collect::<Vec<_>>(),
        "after recovery"
    );
    drop(log);

    // A media error while recovery reads a segment (read with pread(2), not through a
    // mapping) fails the open of that log with EIO: no SIGBUS takes the process down.
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), LogConfig::default());
    log.append(&batch(), &AppendOptions::default())
        .expect("append");
    drop(log); // unclean: the next open recovers the segment
    fail::cfg("storage::io::pread", "return").expect("cfg");
    let opened = Log::open(
        &dir.path().join("f-0"),
        TopicPartition::new("f", 0),
        LogConfig::default(),
    );
    fail::remove("storage::io::pread");
    assert!(
        matches!(&opened, Err(StorageError::Io { source, .. }) if source.raw_os_error() == Some(5)),
        "{opened:?}"
    );
    drop(opened);
    assert_eq!(
        open(dir.path(), LogConfig::default()).offsets().log_end,
        Offset(1)
    );

    // A media error under a live read (a fetch, a lookup by timestamp, a truncation) is that
    // call's EIO, not a SIGBUS: log data is read with pread(2), never through a mapping, and
    // the log serves again once the disk does.
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), LogConfig::default());
    for _ in 0..3 {
        log.append(&batch(), &AppendOptions::default())
            .expect("append");
    }
    fail::cfg("storage::io::pread", "return").expect("cfg");
    let read = log.read(&ReadOptions::from(Offset(1))).map(|d| d.records);
    let by_time = log.offset_for_timestamp(0);
    let cut = log.truncate_to(Offset(2));
    fail::remove("storage::io::pread");
    assert!(is_eio(read.as_ref().err()), "{read:?}");
    assert!(is_eio(by_time.as_ref().err()), "{by_time:?}");
    assert!(is_eio(cut.as_ref().err()), "{cut:?}");
    assert_eq!(
        read_bases(&log),
        vec![0, 1, 2],
        "the failed truncation cut nothing"
    );
    drop(log);

    // With a flush policy appends go through pwrite(2), where a full disk is that call's error.
    let (dir, log) = flushed_log_with_one_record();
    append_fails_at(&log, "storage::mmap::write_through");
    assert_eq!(
        log.offsets().log_end,
        Offset(1),
        "the failed append left no trace"
    );
    log.append(&batch(), &AppendOptions::default())
        .expect("append once space is back");
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(
        log.offsets().log_end,
        Offset(2),
        "both appends survive reopen"
    );

    // A roll leaves the sealed segment's flush to housekeeping; when that flush fails, the log
    // refuses writes as it does for any failed flush.
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 4096,
            ..LogConfig::default()
        },
    );
    fail::cfg("storage::mmap::flush", "return").expect("cfg");
    while log.offsets().log_end < Offset(100) {
        log.append(&batch(), &AppendOptions::default())
            .expect("appends that roll segments flush nothing");
    }
    assert!(log.segment_count() > 1, "the log rolled");
    let result = log.housekeeping(0);
    fail::remove("storage::mmap::flush");
    assert!(matches!(result, Err(StorageError::Io { .. })), "{result:?}");
    assert!(matches!(
        log.append(&batch(), &AppendOptions::default()),
        Err(StorageError::Poisoned { .. })
    ));
    assert_eq!(log.offsets().recovery_point, Offset(0));

    // A truncation that fails half way (here deleting a segment above the cut) refuses further
    // writes, and readers see the records below the cut: never a log end past a hole.
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config.clone());
    while log.offsets().log_end < Offset(150) {
        log.append(&batch(), &AppendOptions::default())
            .expect("append");
    }
    assert!(log.segment_count() > 2, "the log rolled");
    fail::cfg("storage::segment::delete", "return").expect("cfg");
    let result = log.truncate_to(Offset(10));
    fail::remove("storage::segment::delete");
    assert!(matches!(result, Err(StorageError::Io { .. })), "{result:?}");
    assert_eq!(log.offsets().log_end, Offset(10));
    assert_eq!(read_bases(&log), (0..10).collect::<Vec<_>>());
    assert!(matches!(
        log.append(&batch(), &AppendOptions::default()),
        Err(StorageError::Poisoned { .. })
    ));
    drop(log);
    let log = open(dir.path(), config);
    let bases = read_bases(&log);
    assert_eq!(
        bases[..10],
        (0..10).collect::<Vec<_>>(),
        "the prefix below the cut survives reopen"
    );
    assert_eq!(
        bases,
        (0..log.offsets().log_end.0).collect::<Vec<_>>(),
        "with no hole"
    );

    // Segments recovered at open are not known to be on disk (a killed process leaves them
    // in the page cache): the first flush makes each of them durable before the recovery
    // point passes them. Counted at the fail point every msync/fdatasync of a file passes.
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config.clone());
    while log.offsets().log_end < Offset(150) {
        log.append(&batch(), &AppendOptions::default())
            .expect("append");
    }
    drop(log); // unclean: nothing flushed, the recovery point is 0
    let log = open(dir.path(), config);
    let segments = log.segment_count();
    assert!(segments > 2, "the log rolled");
    assert_eq!(log.offsets().recovery_point, Offset(0));
    let flushes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&flushes);
    fail::cfg_callback("storage::mmap::flush", move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    })
    .expect("cfg");
    log.flush().expect("flush");
    fail::remove("storage::mmap::flush");
    assert_eq!(log.offsets().recovery_point, Offset(150));
    assert_eq!(
        flushes.load(std::sync::atomic::Ordering::SeqCst),
        3 * segments,
        "the .log, .index and .timeindex of every segment, recovered ones included"
    );

    scenario.teardown();
}
