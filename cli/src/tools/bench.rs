//! `sluice bench produce|consume|e2e`: load tests through `sluice-client`, as an application
//! would drive any Kafka-compatible broker. Shows a progress bar and ends with a table of
//! MB/s, records/s and latency percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Subcommand;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_client::admin::NewTopic;
use sluice_client::{
    Admin, Compression, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord,
    TopicPartition,
};
use tokio::sync::mpsc;

use super::{parse_acks, table, Connect};

/// `sluice bench ...`
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Produce records as fast as possible (or at --throughput) with the Sluice producer.
    Produce(ProduceArgs),
    /// Read a topic from the beginning as fast as possible with the Sluice consumer.
    Consume(ConsumeArgs),
    /// Produce at a steady rate and measure the time until each record is consumed.
    E2e(E2eArgs),
    /// Produce pre-built batches over raw connections: measures the broker, not a client.
    Wire(super::wire_bench::ProduceArgs),
}

/// The topic a benchmark uses.
#[derive(clap::Args, Debug, Clone)]
pub struct TopicArgs {
    /// Topic (created with --partitions if missing).
    #[arg(long, default_value = "sluice-bench")]
    pub topic: String,
    /// Partitions of a topic created here.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replicas of a topic created here.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,
}

/// Producer settings, named as Kafka's producer configs are.
#[derive(clap::Args, Debug, Clone)]
pub struct ProducerArgs {
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// 0, 1 or all (-1).
    #[arg(long, default_value = "all", value_parser = parse_acks, allow_hyphen_values = true)]
    pub acks: i16,
    /// linger.ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// batch.size in bytes.
    #[arg(long, default_value_t = 16_384)]
    pub batch_size: usize,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression_type: Compression,
}

/// `sluice bench produce` arguments.
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub connect: Connect,
    #[command(flatten)]
    pub topic: TopicArgs,
    #[command(flatten)]
    pub producer: ProducerArgs,
    /// Records to send.
    #[arg(long, default_value_t = 1_000_000)]
    pub num_records: u64,
    /// Records per second to aim for; -1 for as fast as possible.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub throughput: i64,
}

/// `sluice bench consume` arguments.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// Topic to read from the beginning.
    #[arg(long, default_value = "sluice-bench")]
    pub topic: String,
    /// Records to read (default: everything up to the end offsets at the start).
    #[arg(long)]
    pub num_records: Option<u64>,
    /// Give up when no record arrived for this long.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// `sluice bench e2e` arguments.
#[derive(clap::Args, Debug)]
pub struct E2eArgs {
    #[command(flatten)]
    pub connect: Connect,
    #[command(flatten)]
    pub topic: TopicArgs,
    #[command(flatten)]
    pub producer: ProducerArgs,
    /// Records to send.
    #[arg(long, default_value_t = 100_000)]
    pub num_records: u64,
    /// Records per second.
    #[arg(long, default_value_t = 10_000)]
    pub throughput: u64,
}

/// Runs a `sluice bench` command.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Produce(args) => {
            let report = produce(args, progress_bar).await?;
            print!("{}", report.table());
        }
        BenchCommand::Consume(args) => {
            let report = consume(args, progress_bar).await?;
            print!("{}", report.table());
        }
        BenchCommand::E2e(args) => {
            let report = e2e(args, progress_bar).await?;
            print!("{}", report.table());
        }
        BenchCommand::Wire(args) => super::wire_bench::produce(args).await?,
    }
    Ok(())
}

/// Makes the progress display for `total` records (hidden when stderr is not a terminal).
pub fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} records ({per_sec}) {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// What a benchmark measured.
#[derive(Debug)]
pub struct Report {
    /// What was measured: "produce", "consume" or "end-to-end".
    pub what: &'static str,
    /// Records.
    pub records: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latency: Histogram<u64>,
    /// What the latency is of.
    pub latency_of: &'static str,
}

impl Report {
    /// Records per second.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    /// Megabytes (10^6 bytes, as Kafka's perf tools count) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    /// The final table.
    pub fn table(&self) -> String {
        let ms = |q: f64| format!("{:.2}", self.latency.value_at_quantile(q) as f64 / 1000.0);
        let row = vec![
            self.what.to_string(),
            self.records.to_string(),
            format!("{:.1}", self.elapsed.as_secs_f64()),
            format!("{:.1}", self.mb_per_sec()),
            format!("{:.0}", self.records_per_sec()),
            ms(0.5),
            ms(0.99),
            ms(0.999),
            format!("{:.2}", self.latency.max() as f64 / 1000.0),
        ];
        let mut out = table(
            &[
                "BENCH",
                "RECORDS",
                "SECONDS",
                "MB/s",
                "RECORDS/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
            ],
            &[row],
        );
        out.push_str(&format!("latency: {}\n", self.latency_of));
        out
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

async fn ensure_topic(connect: &Connect, t: &TopicArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect.client("sluice-bench"))?;
    let new = NewTopic {
        name: t.topic.clone(),
        partitions: t.partitions,
        replication_factor: t.replication_factor,
        configs: Vec::new(),
        replica_assignment: Vec::new(),
    };
    match admin.create_topics(&[new]).await {
        Ok(()) => Ok(()),
        Err(e) if e.kafka().is_some_and(|k| k.code() == 36) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating topic {}", t.topic)),
    }
}

async fn producer(connect: &Connect, p: &ProducerArgs) -> anyhow::Result<Producer> {
    Ok(Producer::new(ProducerConfig {
        client: connect.client("sluice-bench"),
        acks: p.acks,
        linger: Duration::from_millis(p.linger_ms),
        batch_size: p.batch_size,
        compression: p.compression_type,
        enable_idempotence: p.acks == -1,
        ..ProducerConfig::default()
    })
    .await?)
}

/// Random bytes, so that compression has realistic work rather than zeros.
fn payload(size: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Sleeps so that `sent` records take at least `sent / rate` seconds since `start`.
async fn pace(start: Instant, sent: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
    let now = Instant::now();
    if due > now + Duration::from_millis(1) {
        tokio::time::sleep(due - now).await;
    }
}

/// `sluice bench produce`; `bar` makes the progress display for the record count.
pub async fn produce(
    args: ProduceArgs,
    bar: impl Fn(u64) -> ProgressBar,
) -> anyhow::Result<Report> {
    if args.producer.record_size == 0 || args.num_records == 0 {
        bail!("--record-size and --num-records must be at least 1");
    }
    ensure_topic(&args.connect, &args.topic).await?;
    let producer = producer(&args.connect, &args.producer).await?;
    let value = payload(args.producer.record_size);
    let bar = bar(args.num_records);
    // Deliveries are awaited in send order on another task, timing each record from its send.
    // In chunks: a channel send per record would cost as much as the send itself.
    type Chunk = Vec<(Instant, sluice_client::DeliveryFuture)>;
    const CHUNK: usize = 1024;
    let (tx, mut rx) = mpsc::channel::<Chunk>(64);
    let acked = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&acked);
    let waiter = tokio::spawn(async move {
        let mut latency = histogram();
        let mut failed = 0u64;
        let mut first = None;
        while let Some(chunk) = rx.recv().await {
            for (sent, delivery) in chunk {
                match delivery.await {
                    Ok(_) => {
                        latency.saturating_record(sent.elapsed().as_micros() as u64);
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed += 1;
                        first.get_or_insert(e);
                    }
                }
            }
        }
        (latency, failed, first)
    });
    let start = Instant::now();
    let rate = u64::try_from(args.throughput).unwrap_or(0);
    let mut chunk: Chunk = Vec::with_capacity(CHUNK);
    for i in 0..args.num_records {
        pace(start, i, rate).await;
        let record = ProducerRecord {
            topic: args.topic.topic.clone(),
            partition: None,
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
            timestamp: None,
        };
        let sent = Instant::now();
        chunk.push((sent, producer.send(record).await?));
        // Held back at most 1 ms, so a record's latency is timed at most that late.
        if chunk.len() == CHUNK || sent.duration_since(chunk[0].0) >= Duration::from_millis(1) {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if tx.send(full).await.is_err() {
                break;
            }
            bar.set_position(acked.load(Ordering::Relaxed));
        }
    }
    if !chunk.is_empty() {
        // Fails only if the waiter is gone, and then its result says why.
        let _ = tx.send(chunk).await;
    }
    drop(tx);
    let ticker = tokio::spawn({
        let bar = bar.clone();
        let acked = Arc::clone(&acked);
        async move {
            loop {
                bar.set_position(acked.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    producer.flush().await;
    let (latency, failed, first) = waiter.await.context("delivery waiter")?;
    let elapsed = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    if let Some(e) = first {
        bail!(
            "{failed} of {} records failed; the first: {e}",
            args.num_records
        );
    }
    Ok(Report {
        what: "produce",
        records: args.num_records,
        bytes: args.num_records * args.producer.record_size as u64,
        elapsed,
        latency,
        latency_of: "send() to acknowledgement, per record",
    })
}

/// `sluice bench consume`: reads every partition of the topic from the beginning.
pub async fn consume(
    args: ConsumeArgs,
    bar: impl Fn(u64) -> ProgressBar,
) -> anyhow::Result<Report> {
    let admin = Admin::new(args.connect.client("sluice-bench"))?;
    let partitions = admin
        .partitions_of(std::slice::from_ref(&args.topic))
        .await?;
    let ends = admin
        .list_offsets(&partitions, sluice_client::offsets::LATEST)
        .await?;
    let starts = admin
        .list_offsets(&partitions, sluice_client::offsets::EARLIEST)
        .await?;
    let available: i64 = partitions
        .iter()
        .map(|tp| ends.get(tp).unwrap_or(&0) - starts.get(tp).unwrap_or(&0))
        .sum();
    let want = args.num_records.unwrap_or(available.max(0) as u64);
    if want == 0 {
        bail!(
            "topic {} is empty: produce to it first (sluice bench produce)",
            args.topic
        );
    }
    let mut consumer = Consumer::new(ConsumerConfig {
        client: args.connect.client("sluice-bench"),
        fetch_max_bytes: 64 << 20,
        max_partition_fetch_bytes: 8 << 20,
        ..ConsumerConfig::default()
    })?;
    consumer.assign(partitions.clone());
    for tp in partitions {
        consumer.seek(tp, Offset::Beginning);
    }
    let bar = bar(want);
    let mut latency = histogram();
    let (mut records, mut bytes) = (0u64, 0u64);
    let idle = Duration::from_millis(args.timeout_ms);
    let start = Instant::now();
    let mut last = Instant::now();
    while records < want {
        let asked = Instant::now();
        let got = consumer.poll(Duration::from_millis(500)).await?;
        if got.is_empty() {
            if last.elapsed() > idle {
                bail!(
                    "no records for {} ms after {records} of {want}",
                    args.timeout_ms
                );
            }
            continue;
        }
        latency.saturating_record(asked.elapsed().as_micros() as u64);
        last = Instant::now();
        for r in &got {
            bytes += (r.key.as_ref().map_or(0, |k| k.len())
                + r.value.as_ref().map_or(0, |v| v.len())) as u64;
        }
        records += got.len() as u64;
        bar.set_position(records.min(want));
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    Ok(Report {
        what: "consume",
        records,
        bytes,
        elapsed,
        latency,
        latency_of: "poll() call to records returned",
    })
}

/// `sluice bench e2e`: every record carries its send time; a consumer reading the topic
/// records how long each took to arrive.
pub async fn e2e(args: E2eArgs, bar: impl Fn(u64) -> ProgressBar) -> anyhow::Result<Report> {
    if args.producer.record_size < 8 || args.num_records == 0 || args.throughput == 0 {
        bail!("--record-size must be at least 8, --num-records and --throughput at least 1");
    }
    ensure_topic(&args.connect, &args.topic).await?;
    let admin = Admin::new(args.connect.client("sluice-bench"))?;
    let partitions: Vec<TopicPartition> = admin
        .partitions_of(std::slice::from_ref(&args.topic.topic))
        .await?;
    let mut consumer = Consumer::new(ConsumerConfig {
        client: args.connect.client("sluice-bench"),
        fetch_max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    })?;
    consumer.assign(partitions.clone());
    for tp in &partitions {
        consumer.seek(tp.clone(), Offset::End);
    }
    // Resolve the end offsets before producing, so no record is missed or counted twice.
    consumer.poll(Duration::from_millis(10)).await?;

    let origin = Instant::now();
    let num = args.num_records;
    let reader = tokio::spawn(async move {
        let mut latency = histogram();
        let mut seen = 0u64;
        let mut last = Instant::now();
        while seen < num {
            let got = consumer.poll(Duration::from_millis(200)).await?;
            if got.is_empty() && last.elapsed() > Duration::from_secs(30) {
                bail!("no records for 30 s after {seen} of {num}");
            }
            let now = origin.elapsed().as_micros() as u64;
            for r in &got {
                let v = r.value.as_deref().unwrap_or_default();
                let Some(sent) = v
                    .get(..8)
                    .map(|b| u64::from_be_bytes(b.try_into().expect("8")))
                else {
                    continue;
                };
                latency.saturating_record(now.saturating_sub(sent).max(1));
                seen += 1;
                last = Instant::now();
            }
        }
        consumer.close().await?;
        Ok::<_, anyhow::Error>((latency, seen))
    });

    let producer = producer(&args.connect, &args.producer).await?;
    let filler = payload(args.producer.record_size);
    let bar = bar(num);
    let start = Instant::now();
    let mut deliveries = Vec::with_capacity(1024);
    for i in 0..num {
        pace(start, i, args.throughput).await;
        let mut value = filler.to_vec();
        value[..8].copy_from_slice(&(origin.elapsed().as_micros() as u64).to_be_bytes());
        deliveries.push(
            producer
                .send(ProducerRecord::new(&args.topic.topic, value))
                .await?,
        );
        if deliveries.len() == 1024 {
            for d in deliveries.drain(..) {
                d.await?;
            }
        }
        bar.set_position(i + 1);
    }
    for d in deliveries {
        d.await?;
    }
    producer.close().await;
    let (latency, seen) = reader.await.context("consumer task")??;
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    Ok(Report {
        what: "end-to-end",
        records: seen,
        bytes: seen * args.producer.record_size as u64,
        elapsed,
        latency,
        latency_of: "send() to the record returned by the consumer's poll()",
    })
}
