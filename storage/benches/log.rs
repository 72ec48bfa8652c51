//! Storage benchmarks: append (no flush, in the steady state and into a new log; flush per
//! batch) against plain `write(2)` baselines of the same shape measured in the same run, warm
//! sequential reads, and random offset lookups.
//!
//! Run: `cargo bench -p sluice-storage --bench log`. Figures go in the README.

use std::fs::File;
use std::io::Write;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice_storage::record::BatchBuilder;
use sluice_storage::{AppendOptions, Log, LogConfig, Offset, ReadOptions, TopicPartition};

/// 16 KiB batches of 1 KiB records, as the issue specifies.
const RECORD: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;
/// Bytes appended per measured iteration: enough to cross segment rolls and page-cache growth.
const BATCHES_PER_ITER: usize = 1024;

fn batch() -> Vec<u8> {
    let value = vec![0xabu8; RECORD];
    let mut b = BatchBuilder::new();
    for i in 0..RECORDS_PER_BATCH {
        b = b.record(None, Some(&value), 1_700_000_000_000 + i as i64);
    }
    b.build()
}

fn config(flush_every_batch: bool) -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES as u32,
        flush_messages: if flush_every_batch { 1 } else { i64::MAX },
        ..LogConfig::default()
    }
}

/// Segment (and baseline file) size of the benchmarks.
const SEGMENT_BYTES: usize = 256 << 20;

/// Appends `BATCHES_PER_ITER` copies of `b` to a fresh log per iteration (setup not timed): a
/// new partition's first 16 MiB.
fn log_append_new_log(bench: &mut criterion::Bencher<'_>, b: &[u8], flush: bool) {
    bench.iter_batched(
        || {
            let dir = tempfile::tempdir().expect("tmp");
            let log = Log::open(
                &dir.path().join("b-0"),
                TopicPartition::new("b", 0),
                config(flush),
            )
            .expect("open");
            (dir, log)
        },
        |(dir, log)| {
            for _ in 0..BATCHES_PER_ITER {
                log.append(b, &AppendOptions::default()).expect("append");
            }
            (dir, log)
        },
        BatchSize::PerIteration,
    )
}

/// Appends `BATCHES_PER_ITER` copies of `b` per iteration to one log kept across iterations, as
/// a partition under sustained load: segments roll at 256 MiB, and between iterations (not
/// timed) housekeeping flushes the rolled ones and retention keeps two, as the broker's
/// housekeeping does beside the appends.
fn log_append_steady(bench: &mut criterion::Bencher<'_>, b: &[u8]) {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(
        &dir.path().join("b-0"),
        TopicPartition::new("b", 0),
        LogConfig {
            retention_bytes: 2 * SEGMENT_BYTES as i64,
            ..config(false)
        },
    )
    .expect("open");
    bench.iter_batched(
        || log.housekeeping(i64::MAX / 2).expect("housekeeping"),
        |_| {
            for _ in 0..BATCHES_PER_ITER {
                log.append(b, &AppendOptions::default()).expect("append");
            }
        },
        BatchSize::PerIteration,
    );
    log.close().expect("close");
}

/// `write(2)` of the same bytes to a fresh file per iteration.
fn write2_new_file(bench: &mut criterion::Bencher<'_>, b: &[u8], sync: bool) {
    bench.iter_batched(
        || {
            let dir = tempfile::tempdir().expect("tmp");
            let f = File::create(dir.path().join("baseline")).expect("create");
            (dir, f)
        },
        |(dir, mut f)| {
            for _ in 0..BATCHES_PER_ITER {
                f.write_all(b).expect("write");
                if sync {
                    f.sync_data().expect("fdatasync");
                }
            }
            (dir, f)
        },
        BatchSize::PerIteration,
    )
}

/// `write(2)` of the same bytes in the steady state's shape: one file written across
/// iterations, a new one every 256 MiB; between iterations (not timed) the previous file is
/// fdatasync'd and older ones are deleted.
fn write2_steady(bench: &mut criterion::Bencher<'_>, b: &[u8]) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = |n: usize| dir.path().join(format!("{n:020}.baseline"));
    // The setup and the routine both need the file count: criterion holds both closures.
    let files = std::cell::Cell::new(0usize);
    let mut file = File::create(path(0)).expect("create");
    let mut written = 0usize;
    let mut synced = 0usize;
    bench.iter_batched(
        || {
            let n = files.get();
            if n > synced {
                File::open(path(n - 1))
                    .and_then(|f| f.sync_data())
                    .expect("fdatasync");
                synced = n;
                if n >= 3 {
                    std::fs::remove_file(path(n - 3)).expect("delete");
                }
            }
        },
        |_| {
            for _ in 0..BATCHES_PER_ITER {
                if written + b.len() > SEGMENT_BYTES {
                    files.set(files.get() + 1);
                    file = File::create(path(files.get())).expect("create");
                    written = 0;
                }
                file.write_all(b).expect("write");
                written += b.len();
            }
        },
        BatchSize::PerIteration,
    );
}

/// Writes back what earlier benchmarks left dirty, so their writeback does not land in the
/// next one's measurement.
fn settle() {
    let synced = std::process::Command::new("sync").status();
    assert!(
        synced.as_ref().is_ok_and(|s| s.success()),
        "sync failed: {synced:?}"
    );
}

fn append(c: &mut Criterion) {
    let b = batch();
    let bytes = (b.len() * BATCHES_PER_ITER) as u64;
    let mut g = c.benchmark_group("append_16k_batches");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(20);
    // Long enough that the steady state crosses many segment rolls.
    g.measurement_time(std::time::Duration::from_secs(10));
    g.bench_function("log_no_flush_steady", |bench| {
        settle();
        log_append_steady(bench, &b)
    });
    g.bench_function("write2_baseline_steady", |bench| {
        settle();
        write2_steady(bench, &b)
    });
    g.bench_function("log_no_flush_new_log", |bench| {
        settle();
        log_append_new_log(bench, &b, false)
    });
    g.bench_function("write2_baseline_new_file", |bench| {
        settle();
        write2_new_file(bench, &b, false)
    });
    g.bench_function("log_flush_every_batch", |bench| {
        settle();
        log_append_new_log(bench, &b, true)
    });
    g.bench_function("write2_fdatasync_baseline", |bench| {
        settle();
        write2_new_file(bench, &b, true)
    });
    g.finish();
}

/// The no-flush append again, reported in records per second.
fn append_records(c: &mut Criterion) {
    let b = batch();
    let mut g = c.benchmark_group("append_16k_batches_records");
    g.throughput(Throughput::Elements(
        (RECORDS_PER_BATCH * BATCHES_PER_ITER) as u64,
    ));
    g.sample_size(10);
    g.bench_function("log_no_flush_steady", |bench| {
        settle();
        log_append_steady(bench, &b)
    });
    g.finish();
}

fn reads(c: &mut Criterion) {
    let b = batch();
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(
        &dir.path().join("r-0"),
        TopicPartition::new("r", 0),
        config(false),
    )
    .expect("open");
    let batches = 4096; // 64 MiB, warm in the page cache
    for _ in 0..batches {
        log.append(&b, &AppendOptions::default()).expect("append");
    }
    let end = log.offsets().log_end;
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Bytes((b.len() * batches) as u64));
    g.sample_size(20);
    // Each fetch is copied out once, as a socket write copies it into the kernel.
    let mut socket = vec![0u8; 2 << 20];
    g.bench_function("sequential_1MiB_fetches", |bench| {
        bench.iter(|| {
            let mut at = Offset(0);
            let mut copied = 0usize;
            while at < end {
                let data = log
                    .read(&ReadOptions {
                        from: at,
                        max_bytes: 1 << 20,
                        max_offset: None,
                        min_one_batch: true,
                    })
                    .expect("read");
                let n = data.records.len();
                socket[..n].copy_from_slice(&data.records);
                copied += std::hint::black_box(&socket[..n]).len();
                at = at.plus((n / b.len() * RECORDS_PER_BATCH) as i64);
            }
            copied
        })
    });
    g.finish();
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(1));
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    g.bench_function("random_read_offset", |bench| {
        bench.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = Offset((x % end.0 as u64) as i64);
            log.read(&ReadOptions {
                from: at,
                max_bytes: 1,
                max_offset: None,
                min_one_batch: true,
            })
            .expect("read")
            .records
            .len()
        })
    });
    g.finish();
    drop(log);
    drop(dir);
}

criterion_group!(benches, append, append_records, reads);
criterion_main!(benches);
