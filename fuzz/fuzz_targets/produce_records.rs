//! Any bytes as the records of one partition in a Produce request, appended as the broker
//! appends a client's records (to a compacted topic when the first byte is odd). With the
//! second bit of the first byte set, the bytes instead make a well-formed batch (each byte a
//! record, keyed or not) whose header's record count and last offset delta come from the
//! input and whose CRC is then made right: a producer lying about its records. The append
//! never panics; it is refused whole or taken whole; what it took reads back as batches that
//! validate, holding exactly the records their headers count, and the log end moved by as
//! many records as the batches say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_storage::batch::{compute_crc, BatchIter};
use sluice_storage::record::{records_section, BatchBuilder, RecordIter};
use sluice_storage::{AppendOptions, CleanupPolicy, Log, LogConfig, Offset, ReadOptions, TopicPartition};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let built;
    let records = if mode & 2 == 0 {
        rest
    } else {
        built = lying_batch(rest);
        &built[..]
    };
    // On /dev/shm: a log per input on a disk would make the target a hundred times slower.
    let dir = tempfile::Builder::new()
        .prefix("produce-records-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir");
    let config = LogConfig {
        cleanup_policy: if mode & 1 == 1 {
            CleanupPolicy::Compact
        } else {
            CleanupPolicy::Delete
        },
        ..LogConfig::default()
    };
    let tp = TopicPartition::new("f", 0);
    let log = Log::open(&dir.path().join(tp.dir_name()), tp, config).expect("open");
    let Ok(info) = log.append(records, &AppendOptions::default()) else {
        assert_eq!(log.offsets().log_end, Offset(0), "a refused append left records");
        return;
    };
    let data = log
        .read(&ReadOptions::from(Offset(0)))
        .expect("read")
        .records;
    let mut counted = 0i64;
    let mut it = BatchIter::new(&data);
    for (at, h) in it.by_ref() {
        let (_, section) = records_section(&data[at..at + h.size()], 64 << 20)
            .expect("a served batch decodes");
        let decoded = RecordIter::new(&section, h.record_count as usize)
            .map(|r| r.expect("a served record decodes"))
            .count();
        assert_eq!(decoded as i64, h.record_count as i64, "header and records agree");
        counted += h.record_count as i64;
    }
    assert!(it.stop().1.is_none(), "served a bad batch");
    assert_eq!(log.offsets().log_end.0, counted, "the log end moved by the records taken");
    assert_eq!(info.last_offset.0 + 1, counted);
});

/// A batch of one record per input byte (odd bytes keyed), whose record count and last
/// offset delta are then overwritten from the first eight bytes, CRC recomputed.
fn lying_batch(input: &[u8]) -> Vec<u8> {
    let (counts, values) = input.split_at(input.len().min(8));
    let mut b = BatchBuilder::new();
    for v in values.iter().take(64) {
        let byte = [*v];
        let key = (v & 1 == 1).then_some(&byte[..]);
        b = b.record(key, Some(&byte[..]), 1);
    }
    let mut batch = b.build();
    if counts.len() == 8 {
        batch[23..27].copy_from_slice(&counts[..4]);
        batch[57..61].copy_from_slice(&counts[4..]);
        let crc = compute_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    batch
}
