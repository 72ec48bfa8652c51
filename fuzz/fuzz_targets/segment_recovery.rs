//! Any bytes as a partition's only `.log` file (optionally with any `.index` and `.timeindex`
//! bytes), opened as after a crash: recovery never panics, every batch served validates, and
//! exactly the valid prefix survives: the batches that pass the CRC-32C check, in increasing
//! offsets that the segment can index.
//!
//! Input: a mode byte, then (mode bit 0) two length bytes and that many bytes of `.index` and
//! `.timeindex`, then (mode bit 1) a recipe byte for up to 7 valid batches written first,
//! then the rest of the `.log`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_storage::batch::BatchIter;
use sluice_storage::record::BatchBuilder;
use sluice_storage::{Log, LogConfig, Offset, ReadOptions, TopicPartition};

/// What recovery must keep: (base offset, size) of each batch of the valid prefix.
fn valid_prefix(log: &[u8]) -> Vec<(i64, usize)> {
    let mut out = Vec::new();
    let mut next = 0i64;
    for (_, h) in BatchIter::new(log) {
        let last = h.base_offset as i128 + h.last_offset_delta as i128;
        if h.base_offset < next || last > u32::MAX as i128 {
            break;
        }
        out.push((h.base_offset, h.size()));
        next = h.next_offset();
    }
    out
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (a, b) = data.split_at(n.min(data.len()));
    *data = b;
    a
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let Some(&mode) = take(&mut data, 1).first() else {
        return;
    };
    let (mut index, mut time_index) = (None, None);
    if mode & 1 != 0 {
        let lens = take(&mut data, 2).to_vec();
        index = Some(take(&mut data, *lens.first().unwrap_or(&0) as usize).to_vec());
        time_index = Some(take(&mut data, *lens.get(1).unwrap_or(&0) as usize).to_vec());
    }
    let mut log = Vec::new();
    let mut built = 0;
    if mode & 2 != 0 {
        let recipe = take(&mut data, 1).first().copied().unwrap_or(0);
        let mut base = (recipe >> 3) as i64;
        for i in 0..(recipe & 7) {
            let value = take(&mut data, i as usize + 1);
            let batch = BatchBuilder::new()
                .base_offset(base)
                .record(Some(&[i]), Some(value), 1_700_000_000_000 + i as i64)
                .record(None, None, 1_700_000_000_000)
                .build();
            base += 2 + (i as i64 % 3);
            log.extend_from_slice(&batch);
            built += 1;
        }
    }
    log.extend_from_slice(data);

    // On tmpfs when there is one: recovery fsyncs what it cuts, which a disk makes slow.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let part = dir.path().join("f-0");
    std::fs::create_dir_all(&part).expect("partition dir");
    std::fs::write(part.join("00000000000000000000.log"), &log).expect("write log");
    if let Some(i) = index {
        std::fs::write(part.join("00000000000000000000.index"), i).expect("write index");
    }
    if let Some(t) = time_index {
        std::fs::write(part.join("00000000000000000000.timeindex"), t).expect("write timeindex");
    }
    let config = LogConfig {
        segment_bytes: 1 << 20,
        segment_index_bytes: 4096,
        preallocate_chunk_bytes: 4096,
        ..LogConfig::default()
    };
    let log_handle =
        Log::open(&part, TopicPartition::new("f", 0), config).expect("recovery opens any bytes");

    let expected = valid_prefix(&log);
    assert!(expected.len() >= built, "a built batch is not valid");
    let mut served = Vec::new();
    let mut at = log_handle.offsets().log_start;
    loop {
        let data = log_handle
            .read(&ReadOptions::from(at))
            .expect("read")
            .records;
        if data.is_empty() {
            break;
        }
        let mut it = BatchIter::new(&data);
        for (_, h) in it.by_ref() {
            served.push((h.base_offset, h.size()));
            assert!(h.next_offset() > at.0, "reading did not advance");
            at = Offset(h.next_offset());
        }
        assert!(it.stop().1.is_none(), "served an invalid batch");
    }
    assert_eq!(
        served, expected,
        "recovery kept other than the valid prefix"
    );
    let end = expected
        .last()
        .map_or(0, |(base, _)| valid_end(&log, *base));
    assert_eq!(log_handle.offsets().log_end, Offset(end));
});

/// The next offset after the valid batch at `base`.
fn valid_end(log: &[u8], base: i64) -> i64 {
    BatchIter::new(log)
        .find(|(_, h)| h.base_offset == base)
        .map_or(0, |(_, h)| h.next_offset())
}
