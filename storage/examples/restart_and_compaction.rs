//! What a restart reads and what compaction costs, on a log of a chosen size.
//!
//! `restart`: builds a log of `--gib` GiB (16 KiB batches, 1 GiB segments), stops it cleanly,
//! and times with cold caches (the page cache dropped before each step, root only) the
//! baseline — reading every `.log` file once — then an open after the clean stop, then an
//! open after a crash (a process that appended 64 MiB past the last checkpoint and died).
//!
//! `compaction`: builds a compacted log of `--gib` GiB (1 KiB values over `--keys` keys), then
//! appends 16 KiB batches every millisecond to the same log for 20 s as the baseline and again
//! while a compaction pass cleans the whole log, reporting append latency percentiles of both
//! phases and the peak anonymous memory (`RssAnon`, sampled every 5 ms) of each.
//!
//! Run: `bench/storage_restart_compaction.sh` (builds this example in release and runs both).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_storage::record::BatchBuilder;
use sluice_storage::{AppendOptions, CleanupPolicy, Log, LogConfig, TopicPartition};

const MIB: u64 = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| std::env::temp_dir().join("sluice-bench"), PathBuf::from);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    match args.get(1).map(String::as_str) {
        Some("restart") => restart(&dir, arg("--gib", 4)),
        Some("compaction") => compaction(&dir, arg("--gib", 10), arg("--keys", 1_000_000)),
        _ => {
            eprintln!(
                "usage: restart_and_compaction restart|compaction [--gib N] [--keys N] [--dir D]"
            );
            std::process::exit(2);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(&dir.join("b-0"), TopicPartition::new("b", 0), config).expect("open")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Drops the page cache; false when this process may not.
fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn batch(keys: Option<(u64, u64)>, records: usize, value: usize) -> Vec<u8> {
    let v = vec![0x5au8; value];
    let mut b = BatchBuilder::new();
    for i in 0..records {
        let key = keys.map(|(first, n)| format!("key-{:012}", (first + i as u64) % n));
        b = b.record(key.as_deref().map(str::as_bytes), Some(&v), now_ms());
    }
    b.build()
}

fn fill(log: &Log, bytes: u64, mut next_batch: impl FnMut(u64) -> Vec<u8>) {
    let started = Instant::now();
    let opts = AppendOptions::default();
    let (mut written, mut i) = (0u64, 0u64);
    while written < bytes {
        let b = next_batch(i);
        log.append(&b, &opts).expect("append");
        written += b.len() as u64;
        i += 1;
    }
    log.flush().expect("flush");
    println!(
        "built {:.1} GiB in {:.1} s",
        written as f64 / (1u64 << 30) as f64,
        started.elapsed().as_secs_f64()
    );
}

fn restart(dir: &Path, gib: u64) {
    let config = LogConfig {
        retention_ms: -1,
        ..LogConfig::default()
    };
    let log = open(dir, config.clone());
    let b = batch(None, 16, 1000);
    fill(&log, gib << 30, |_| b.clone());
    log.close().expect("close");
    drop(log);

    let cold = drop_caches();
    let started = Instant::now();
    let mut read = 0u64;
    for entry in std::fs::read_dir(dir.join("b-0")).expect("dir").flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            let mut f = std::fs::File::open(entry.path()).expect("open");
            read += std::io::copy(&mut f, &mut std::io::sink()).expect("read");
        }
    }
    let baseline = started.elapsed();
    println!(
        "baseline: read every .log once ({:.1} GiB){}: {:.3} s",
        read as f64 / (1u64 << 30) as f64,
        if cold { ", cold" } else { ", WARM (no root)" },
        baseline.as_secs_f64()
    );

    drop_caches();
    let started = Instant::now();
    let log = open(dir, config.clone());
    let clean = started.elapsed();
    let stats = log.load_stats();
    println!(
        "open after a clean stop: {:.3} s ({:.4}x the baseline), {} bytes read, {} batches replayed",
        clean.as_secs_f64(),
        clean.as_secs_f64() / baseline.as_secs_f64(),
        stats.bytes_scanned,
        stats.batches_replayed
    );

    // A crash: 64 MiB appended past the last checkpoint, then the process dies.
    fill(&log, 64 * MIB, |_| b.clone());
    drop(log);
    drop_caches();
    let started = Instant::now();
    let log = open(dir, config);
    let crashed = started.elapsed();
    let stats = log.load_stats();
    println!(
        "open after a crash: {:.3} s ({:.4}x the baseline), {} MiB read, {} batches replayed",
        crashed.as_secs_f64(),
        crashed.as_secs_f64() / baseline.as_secs_f64(),
        stats.bytes_scanned / MIB,
        stats.batches_replayed
    );
    log.close().expect("close");
}

/// Peak `RssAnon` (KiB) seen by a sampler thread while it runs.
struct AnonPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn rss_anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

impl AnonPeak {
    fn start() -> AnonPeak {
        let peak = Arc::new(AtomicU64::new(rss_anon_kib()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&peak), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_anon_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        AnonPeak {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("sampler");
        }
        self.peak.load(Ordering::Relaxed) / 1024
    }
}

/// Appends a 16 KiB batch every millisecond while `running`; returns each append's latency.
fn produce_while(log: &Log, running: impl Fn() -> bool) -> Vec<Duration> {
    let b = batch(Some((0, 1 << 40)), 16, 1000);
    let opts = AppendOptions::default();
    let mut latencies = Vec::new();
    let mut next = Instant::now();
    while running() {
        let started = Instant::now();
        log.append(&b, &opts).expect("append");
        latencies.push(started.elapsed());
        next += Duration::from_millis(1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn report(phase: &str, latencies: &[Duration], peak_mib: u64) {
    println!(
        "{phase}: {} appends, p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us; peak RssAnon {peak_mib} MiB",
        latencies.len(),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        percentile(latencies, 0.999),
        percentile(latencies, 1.0),
    );
}

fn compaction(dir: &Path, gib: u64, keys: u64) {
    let config = LogConfig {
        retention_ms: -1,
        ..LogConfig::default()
    };
    let log = Arc::new(open(dir, config.clone()));
    fill(&log, gib << 30, |i| batch(Some((i * 16, keys)), 16, 1000));
    // Compacted only now, so that nothing cleans before the baseline phase.
    log.update_config(LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..config
    });

    // The fill's writeback would otherwise stall the baseline phase alone.
    let _ = std::process::Command::new("sync").status();
    let peak = AnonPeak::start();
    let until = Instant::now() + Duration::from_secs(20);
    let baseline = produce_while(&log, || Instant::now() < until);
    report("baseline (no compaction)", &baseline, peak.finish());

    let peak = AnonPeak::start();
    let done = Arc::new(AtomicBool::new(false));
    let cleaner = {
        let (log, done) = (Arc::clone(&log), Arc::clone(&done));
        std::thread::spawn(move || {
            let started = Instant::now();
            let report = log.housekeeping(now_ms()).expect("compaction");
            done.store(true, Ordering::Release);
            (report.records_compacted, started.elapsed())
        })
    };
    let during = produce_while(&log, || !done.load(Ordering::Acquire));
    let (removed, took) = cleaner.join().expect("cleaner");
    report("during compaction", &during, peak.finish());
    println!(
        "compaction: {removed} records removed in {:.1} s; log now {:.2} GiB",
        took.as_secs_f64(),
        log.size_bytes() as f64 / (1u64 << 30) as f64
    );
}
