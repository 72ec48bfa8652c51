//! Crash recovery at every byte, corruption, and a model-based property test of `Log`.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::tests::{open, read_all, small_config};
use crate::batch::test_support::values;
use crate::segment::file_name;
use crate::types::Offset;
use crate::{AppendOptions, LogConfig};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// Writes `n` batches without closing (an unclean stop) and returns the partition dir and the
/// byte position where each batch of the last segment ends.
fn crashed_log(dir: &Path, n: usize, config: LogConfig) -> (PathBuf, Vec<u64>, Offset) {
    let log = open(dir, config);
    let mut ends = Vec::new();
    let mut pos = 0u64;
    let mut base = Offset(0);
    for i in 0..n {
        let b = values(1 + i % 3, 40, i as i64);
        let before = log.segment_count();
        let info = log.append(&b, &AppendOptions::default()).expect("append");
        if log.segment_count() != before {
            ends.clear();
            pos = 0;
            base = info.first_offset;
        }
        pos += b.len() as u64;
        ends.push(pos);
    }
    drop(log);
    (dir.join("t-0"), ends, base)
}

/// The log written as by default (mapped writes into preallocated space) or with a flush
/// policy (`pwrite`, the file grows with the data; flushes do not matter to a cut file).
fn configs() -> [LogConfig; 2] {
    [
        small_config(),
        LogConfig {
            flush_ms: 3_600_000,
            ..small_config()
        },
    ]
}

#[test]
fn a_cut_at_any_byte_of_the_last_batches_leaves_exactly_the_whole_batch_prefix() {
    for config in configs() {
        cut_at_every_byte(config);
    }
}

fn cut_at_every_byte(config: LogConfig) {
    let mode = crate::segment::WriteMode::for_flush_policy(config.flush_messages, config.flush_ms);
    let tmp = tempfile::tempdir().expect("tmp");
    let (part, ends, base) = crashed_log(tmp.path(), 12, config.clone());
    let full = read_all(&open(tmp.path(), config.clone()), Offset(0));
    let last_segment_batches = ends.len();
    let first_in_last = full.len() - last_segment_batches;
    let from = 0;
    let end = *ends.last().expect("batches");
    for cut in from..=end + 3 {
        let case = tempfile::tempdir().expect("tmp");
        let dir = case.path().join("t-0");
        copy_dir(&part, &dir);
        let log_file = dir.join(file_name(base, "log"));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log_file)
            .expect("open")
            .set_len(cut)
            .expect("cut");
        let survivors = ends.iter().filter(|e| **e <= cut).count();
        let log = open(case.path(), config.clone());
        let got = read_all(&log, Offset(0));
        assert_eq!(
            got,
            full[..first_in_last + survivors].to_vec(),
            "cut at byte {cut} ({mode:?})"
        );
        let expected_end = got.last().map_or(0, |(b, n)| b + *n as i64);
        assert_eq!(
            log.offsets().log_end,
            Offset(expected_end),
            "cut at byte {cut} ({mode:?})"
        );
        // The recovered log takes new appends right after the prefix.
        log.append(&values(1, 3, 0), &AppendOptions::default())
            .expect("append after recovery");
    }
}

#[test]
fn a_flipped_byte_in_the_last_segment_truncates_at_the_damaged_batch() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (part, ends, base) = crashed_log(tmp.path(), 10, small_config());
    let full = read_all(&open(tmp.path(), small_config()), Offset(0));
    let first_in_last = full.len() - ends.len();
    let mut start = 0u64;
    for (i, end) in ends.iter().enumerate() {
        for at in (start..*end).step_by(7) {
            let rel = at - start;
            // baseOffset and partitionLeaderEpoch are not covered by the CRC (Kafka's format).
            if rel < 8 || (12..16).contains(&rel) {
                continue;
            }
            let case = tempfile::tempdir().expect("tmp");
            let dir = case.path().join("t-0");
            copy_dir(&part, &dir);
            let log_file = dir.join(file_name(base, "log"));
            let mut bytes = std::fs::read(&log_file).expect("read");
            bytes[at as usize] ^= 0x5a;
            std::fs::write(&log_file, &bytes).expect("write");
            let got = read_all(&open(case.path(), small_config()), Offset(0));
            assert_eq!(
                got,
                full[..first_in_last + i].to_vec(),
                "flip at byte {at} of batch {i}"
            );
        }
        start = *end;
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        size: usize,
    },
    Truncate(u8),
    DeleteRecords(u8),
    /// Reopens with or without a flush policy, switching write modes mid-segment.
    Reopen {
        clean: bool,
        flush_policy: bool,
    },
    /// A reader keeps the view of a read (a fetch response on a slow socket) from here on.
    HoldView(u8),
    /// Retention by size (the byte limit in KiB), in a housekeeping pass that also unlinks
    /// deleted segments' files and shrinks truncated ones.
    Retention(u8),
}

fn config_with(flush_policy: bool) -> LogConfig {
    LogConfig {
        // Deleted segments' files go at the next housekeeping, while views of them live on.
        file_delete_delay_ms: 0,
        ..configs()[usize::from(flush_policy)].clone()
    }
}

/// A log whose budget keeps a single sealed segment mapped: reads unmap and remap segments
/// all the time, so views outlive the mapping generation they were made from.
fn open_churning(dir: &Path, config: LogConfig) -> crate::Log {
    crate::Log::open_with_budget(
        &dir.join("t-0"),
        crate::TopicPartition::new("t", 0),
        config,
        crate::MapBudget::new(1),
    )
    .expect("open")
}

/// The `.log` files of `log`'s directory that are not one of its segments.
fn stray_log_files(log: &crate::Log) -> Vec<String> {
    let live: Vec<String> = log
        .segments
        .read()
        .keys()
        .map(|b| file_name(Offset(*b), "log"))
        .collect();
    log_files(log.dir())
        .into_iter()
        .filter(|n| !live.contains(n))
        .collect()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..5, 1usize..400).prop_map(|(records, size)| Op::Append { records, size }),
        1 => any::<u8>().prop_map(Op::Truncate),
        1 => any::<u8>().prop_map(Op::DeleteRecords),
        1 => (any::<bool>(), any::<bool>())
            .prop_map(|(clean, flush_policy)| Op::Reopen { clean, flush_policy }),
        2 => any::<u8>().prop_map(Op::HoldView),
        1 => any::<u8>().prop_map(Op::Retention),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any sequence of appends, truncations, DeleteRecords, retention, rolls (small segments)
    /// and clean or unclean reopens reads back exactly like a list of batches, while readers
    /// hold views across all of it: every view keeps reading what it read (a file shrunk under
    /// one would kill the test with SIGBUS), and no `.log` file exists but the log's segments.
    #[test]
    fn log_matches_a_list_of_batches(
        flush_policy in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut log = open_churning(tmp.path(), config_with(flush_policy));
        let mut model: Vec<(i64, i32)> = Vec::new();
        let mut log_start = 0i64;
        let mut log_end = 0i64;
        let mut views: Vec<(bytes::Bytes, Vec<u8>)> = Vec::new();
        let mut now = 0i64;
        for op in ops {
            match op {
                Op::Append { records, size } => {
                    let info = log.append(&values(records, size, 0), &AppendOptions::default()).expect("append");
                    prop_assert_eq!(info.first_offset.0, log_end);
                    model.push((log_end, records as i32));
                    log_end += records as i64;
                }
                Op::Truncate(x) => {
                    // Truncation points are batch boundaries, as leader-epoch truncation yields.
                    if model.is_empty() { continue; }
                    let i = x as usize % model.len();
                    let to = model[i].0;
                    if to < log_start { continue; }
                    log.truncate_to(Offset(to)).expect("truncate");
                    model.truncate(i);
                    log_end = to;
                }
                Op::DeleteRecords(x) => {
                    if log_end <= log_start { continue; }
                    let to = log_start + (x as i64 % (log_end - log_start + 1));
                    log.delete_records_before(Offset(to)).expect("delete records");
                    log_start = log_start.max(to);
                }
                Op::Reopen { clean, flush_policy } => {
                    if clean { log.close().expect("close"); }
                    views.clear(); // a stop ends its readers too
                    drop(log);
                    log = open_churning(tmp.path(), config_with(flush_policy));
                }
                Op::HoldView(x) => {
                    let from = log_start.max(log_end.saturating_sub(1 + x as i64 % 64));
                    if from >= log_end { continue; }
                    let view = log.read(&crate::ReadOptions::from(Offset(from))).expect("read").records;
                    let copy = view.to_vec();
                    views.push((view, copy));
                    if views.len() > 8 { views.remove(0); }
                }
                Op::Retention(kib) => {
                    let config = log.config();
                    log.update_config(LogConfig { retention_bytes: i64::from(kib % 16) * 1024, ..config.clone() });
                    now += 1;
                    log.housekeeping(now).expect("housekeeping");
                    log.update_config(config);
                    let start = log.offsets().log_start.0;
                    prop_assert!(start >= log_start);
                    log_start = start;
                }
            }
            for (view, copy) in &views {
                prop_assert_eq!(&view[..], &copy[..]);
            }
            prop_assert_eq!(stray_log_files(&log), Vec::<String>::new());
            let visible: Vec<(i64, i32)> = model.iter().copied().filter(|(b, n)| b + *n as i64 > log_start).collect();
            let first = visible.first().map_or(log_end, |b| b.0.max(log_start));
            prop_assert_eq!(log.offsets().log_end.0, log_end);
            prop_assert_eq!(log.offsets().log_start.0, log_start);
            prop_assert_eq!(read_all(&log, Offset(first)), visible);
        }
    }
}

/// The `.log` files in a partition directory, by base offset.
fn log_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

#[test]
fn zeros_where_a_sealed_segment_had_batches_cut_it_and_delete_every_later_segment() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (part, _, _) = crashed_log(tmp.path(), 90, small_config());
    let full = read_all(&open(tmp.path(), small_config()), Offset(0));
    assert!(log_files(&part).len() > 2, "{:?}", log_files(&part));
    // The pages holding the first segment's last batch never reached the disk (its length
    // did): zeros where the batch was.
    let first = part.join(file_name(Offset(0), "log"));
    let mut bytes = std::fs::read(&first).expect("read");
    let batches: Vec<_> = crate::batch::BatchIter::new(&bytes).collect();
    let (last_at, _) = *batches.last().expect("batches");
    bytes[last_at..].fill(0);
    std::fs::write(&first, &bytes).expect("write");

    let log = open(tmp.path(), small_config());
    let kept = batches.len() - 1;
    assert_eq!(
        read_all(&log, Offset(0)),
        full[..kept].to_vec(),
        "exactly the prefix before the zeros, with no hole after it"
    );
    let (b, n) = full[kept - 1];
    assert_eq!(log.offsets().log_end, Offset(b + n as i64));
    assert_eq!(log_files(&part), vec![file_name(Offset(0), "log")]);
    log.append(&values(1, 3, 0), &AppendOptions::default())
        .expect("append after recovery");
}

#[test]
fn records_appended_after_a_truncation_survive_a_crash_before_the_cut_file_shrank() {
    let tmp = tempfile::tempdir().expect("tmp");
    let log = open(tmp.path(), small_config());
    for i in 0..6 {
        log.append(&values(1, 40, i), &AppendOptions::default())
            .expect("append");
    }
    // A reader's view keeps the truncated (active, preallocated) segment from shrinking.
    let view = log
        .read(&crate::ReadOptions::from(Offset(0)))
        .expect("read")
        .records;
    log.truncate_to(Offset(3)).expect("truncate");
    for i in 0..4 {
        log.append(&values(2, 40, i), &AppendOptions::default())
            .expect("append");
    }
    let expected = read_all(&log, Offset(0));
    drop(log); // a crash: the cut file still holds its dropped batches
    drop(view);
    let log = open(tmp.path(), small_config());
    assert_eq!(read_all(&log, Offset(0)), expected);
    assert_eq!(log.offsets().log_end, Offset(11));
}

#[test]
fn views_held_across_compaction_and_truncation_keep_reading_and_leave_no_stray_file() {
    use crate::config::CleanupPolicy;
    use crate::record::BatchBuilder;
    let tmp = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 1000,
        file_delete_delay_ms: 0,
        ..small_config()
    };
    let log = open_churning(tmp.path(), config.clone());
    for i in 0..200i64 {
        let key = format!("k{}", i % 7).into_bytes();
        let value = (i % 11 != 0).then(|| vec![b'v'; 100 + i as usize % 50]);
        let b = BatchBuilder::new()
            .record(Some(&key), value.as_deref(), 5_000 + i)
            .build();
        log.append(&b, &AppendOptions::default()).expect("append");
    }
    // A reader holds a view of every segment, each from its own mapping generation.
    let bases: Vec<i64> = log.segments.read().keys().copied().collect();
    let views: Vec<(bytes::Bytes, Vec<u8>)> = bases
        .iter()
        .map(|b| {
            let v = log
                .read(&crate::ReadOptions::from(Offset(*b)))
                .expect("read")
                .records;
            let copy = v.to_vec();
            (v, copy)
        })
        .collect();
    let unchanged = |views: &[(bytes::Bytes, Vec<u8>)]| {
        for (v, copy) in views {
            assert_eq!(&v[..], &copy[..]);
        }
    };

    assert!(log.housekeeping(6_000).expect("hk").records_compacted > 0);
    unchanged(&views);
    assert_eq!(stray_log_files(&log), Vec::<String>::new());

    // A follower truncation into the compacted segments, with the views still held.
    let batches = read_all(&log, Offset(0));
    let cut = Offset(batches[batches.len() / 3].0);
    log.truncate_to(cut).expect("truncate");
    log.housekeeping(7_000).expect("hk");
    unchanged(&views);
    assert_eq!(stray_log_files(&log), Vec::<String>::new());
    let expected = read_all(&log, Offset(0));
    assert_eq!(expected, batches[..batches.len() / 3].to_vec());

    drop(views);
    drop(log); // a crash
    let log = open_churning(tmp.path(), config);
    // Compaction emptied the first segments, so the log now starts at the first one left.
    let start = log.offsets().log_start;
    assert_eq!(read_all(&log, start), expected, "the valid prefix kept");
    assert_eq!(log.offsets().log_end, cut);
    assert_eq!(stray_log_files(&log), Vec::<String>::new());
    assert!(std::fs::read_dir(log.dir()).expect("read_dir").all(|e| !e
        .expect("entry")
        .file_name()
        .to_string_lossy()
        .ends_with(".deleted")));
}
