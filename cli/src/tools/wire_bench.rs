//! `sluice bench wire`: a native, pipelined produce load generator for any Kafka broker.
//!
//! It speaks the protocol directly (kafka-protocol) and sends one pre-built record batch per
//! partition per request, so the client costs almost nothing and the broker is what is
//! measured. Prints progress every second and a final line of MiB/s, records/s, request latency
//! percentiles (send to response), and client and (with `--broker-pid`) broker CPU seconds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_storage::record::BatchBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `sluice bench produce` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// Broker to connect to.
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        default_value = "localhost:9092",
        env = "SLUICE_BOOTSTRAP_SERVER"
    )]
    pub bootstrap: String,
    /// Topic (created with `--partitions` if missing).
    #[arg(long, default_value = "sluice-bench")]
    pub topic: String,
    /// Partitions to spread over.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Bytes of records per batch (Kafka's `batch.size`).
    #[arg(long, default_value_t = 131_072)]
    pub batch_size: usize,
    /// 0, 1 or -1 (all).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub acks: i16,
    /// Connections (producers), each owning a share of the partitions.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    pub in_flight: usize,
    /// Target records per second over all producers (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Run time.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Broker process id, to report its CPU time.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

struct Conn {
    s: TcpStream,
    corr: i32,
}

fn frame<R: Encodable>(api: ApiKey, version: i16, corr: i32, req: &R) -> anyhow::Result<BytesMut> {
    let mut b = BytesMut::new();
    b.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("sluice-bench")))
        .encode(&mut b, api.request_header_version(version))?;
    req.encode(&mut b, version)?;
    let n = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    Ok(b)
}

async fn read_frame(s: &mut (impl AsyncReadExt + Unpin)) -> anyhow::Result<Bytes> {
    let n = s
        .read_i32()
        .await
        .context("connection closed by the broker")?;
    let mut buf = vec![0u8; n.max(0) as usize];
    s.read_exact(&mut buf).await?;
    Ok(buf.into())
}

impl Conn {
    async fn connect(addr: &str) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        s.set_nodelay(true)?;
        Ok(Conn { s, corr: 0 })
    }

    async fn call<R: Encodable, S: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &R,
    ) -> anyhow::Result<S> {
        self.corr += 1;
        self.s
            .write_all(&frame(api, version, self.corr, req)?)
            .await?;
        let mut resp = read_frame(&mut self.s).await?;
        ResponseHeader::decode(&mut resp, api.response_header_version(version))?;
        S::decode(&mut resp, version)
    }
}

fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Runs the produce benchmark and prints its results.
pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    if args.partitions < 1 || args.producers < 1 || args.in_flight < 1 || args.record_size == 0 {
        bail!("--partitions, --producers, --in-flight and --record-size must be at least 1");
    }
    let mut admin = Conn::connect(&args.bootstrap).await?;
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(args.topic.clone())))
            .with_num_partitions(args.partitions)
            .with_replication_factor(-1)]);
    let r: CreateTopicsResponse = admin.call(ApiKey::CreateTopics, 5, &create).await?;
    if let Some(t) = r.topics.first() {
        // 36 = TOPIC_ALREADY_EXISTS: benchmarking an existing topic is fine.
        if t.error_code != 0 && t.error_code != 36 {
            bail!(
                "creating topic {}: error {} {:?}",
                args.topic,
                t.error_code,
                t.error_message
            );
        }
    }
    let records_per_batch = (args.batch_size / args.record_size).max(1);
    let value = vec![0x5au8; args.record_size];
    let mut builder = BatchBuilder::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    for _ in 0..records_per_batch {
        builder = builder.record(None, Some(&value), now);
    }
    let batch = Bytes::from(builder.build());
    let records = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let client0 = cpu_seconds("self");
    let broker0 = args.broker_pid.and_then(|p| cpu_seconds(&p.to_string()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.producers {
        let parts: Vec<i32> = (0..args.partitions)
            .filter(|i| *i as usize % args.producers == p)
            .collect();
        if parts.is_empty() {
            continue;
        }
        let (args, batch, records, bytes) = (
            args.clone(),
            batch.clone(),
            Arc::clone(&records),
            Arc::clone(&bytes),
        );
        tasks.push(tokio::spawn(async move {
            run_producer(
                args,
                parts,
                batch,
                records_per_batch,
                records,
                bytes,
                deadline,
            )
            .await
        }));
    }
    let progress = {
        let (records, bytes) = (Arc::clone(&records), Arc::clone(&bytes));
        tokio::spawn(async move {
            let mut last = (0, 0);
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = (
                    records.load(Ordering::Relaxed),
                    bytes.load(Ordering::Relaxed),
                );
                eprintln!(
                    "  {:>10} records/s {:>8.1} MiB/s",
                    now.0 - last.0,
                    (now.1 - last.1) as f64 / 1048576.0
                );
                last = now;
            }
        })
    };
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    progress.abort();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let n = records.load(Ordering::Relaxed);
    let b = bytes.load(Ordering::Relaxed);
    let client = cpu_seconds("self").zip(client0).map(|(a, b)| a - b);
    let broker = args
        .broker_pid
        .and_then(|p| cpu_seconds(&p.to_string()))
        .zip(broker0)
        .map(|(a, b)| a - b);
    println!(
        "produce: {n} records in {elapsed:.1} s = {:.0} records/s, {:.1} MiB/s; request latency ms p50 {:.2} p99 {:.2} p99.9 {:.2}; client CPU {}; broker CPU {}",
        n as f64 / elapsed,
        b as f64 / elapsed / 1048576.0,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        client.map_or("n/a".into(), |c| format!("{c:.1} s")),
        broker.map_or("n/a".into(), |c| format!("{c:.1} s")),
    );
    Ok(())
}

async fn run_producer(
    args: ProduceArgs,
    parts: Vec<i32>,
    batch: Bytes,
    per_batch: usize,
    records: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    deadline: Instant,
) -> anyhow::Result<Vec<f64>> {
    let conn = Conn::connect(&args.bootstrap).await?;
    let (mut rd, mut wr) = conn.s.into_split();
    let request = ProduceRequest::default()
        .with_acks(args.acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(args.topic.clone())))
            .with_partition_data(
                parts
                    .iter()
                    .map(|p| {
                        PartitionProduceData::default()
                            .with_index(*p)
                            .with_records(Some(batch.clone()))
                    })
                    .collect(),
            )]);
    let per_request = (per_batch * parts.len()) as u64;
    let request_bytes = (batch.len() * parts.len()) as u64;
    let interval = (args.rate > 0).then(|| {
        Duration::from_secs_f64(per_request as f64 * args.producers as f64 / args.rate as f64)
    });
    let mut pending: VecDeque<Instant> = VecDeque::new();
    let mut latencies = Vec::new();
    let mut corr = 0;
    let mut next = Instant::now();
    loop {
        let now = Instant::now();
        let may_send = now < deadline
            && pending.len() < args.in_flight
            && interval.is_none_or(|_| now >= next);
        if may_send {
            corr += 1;
            wr.write_all(&frame(ApiKey::Produce, 9, corr, &request)?)
                .await?;
            if let Some(i) = interval {
                next += i;
            }
            if args.acks == 0 {
                records.fetch_add(per_request, Ordering::Relaxed);
                bytes.fetch_add(request_bytes, Ordering::Relaxed);
            } else {
                pending.push_back(now);
            }
            continue;
        }
        if let Some(sent) = pending.pop_front() {
            let mut resp = read_frame(&mut rd).await?;
            ResponseHeader::decode(&mut resp, ApiKey::Produce.response_header_version(9))?;
            let r = ProduceResponse::decode(&mut resp, 9)?;
            let failed = r
                .responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .find(|p| p.error_code != 0);
            if let Some(p) = failed {
                bail!(
                    "partition {} refused the batch: error {} {:?}",
                    p.index,
                    p.error_code,
                    p.error_message
                );
            }
            if resp.has_remaining() {
                bail!("trailing bytes in a produce response");
            }
            latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            records.fetch_add(per_request, Ordering::Relaxed);
            bytes.fetch_add(request_bytes, Ordering::Relaxed);
        } else if Instant::now() >= deadline {
            return Ok(latencies);
        } else if interval.is_some() {
            tokio::time::sleep_until(tokio::time::Instant::from_std(next.min(deadline))).await;
        }
    }
}
