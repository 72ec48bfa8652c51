//! `sluice produce`: one record per line of stdin (or a file), like
//! `kafka-console-producer.sh`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use sluice_client::{Compression, Header, Producer, ProducerConfig, ProducerRecord};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use super::format::LineFormat;
use super::{key_value, parse_acks, unescape, Connect};

/// `sluice produce` arguments.
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    connect: Connect,
    /// Topic to write to.
    #[arg(value_name = "TOPIC")]
    topic: String,
    /// Read records from this file instead of stdin.
    #[arg(long, short = 'f', value_name = "PATH")]
    file: Option<PathBuf>,
    /// Split each line into a key and a value at the first SEP (the same as --property
    /// parse.key=true --property key.separator=SEP).
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record, e.g. --header source=batch-7 (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = key_value)]
    headers: Vec<(String, String)>,
    /// Line reader settings as kafka-console-producer.sh takes them: parse.key,
    /// key.separator, parse.headers, headers.delimiter, headers.separator,
    /// headers.key.separator, null.marker, ignore.error.
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = key_value)]
    properties: Vec<(String, String)>,
    /// Write every record to this partition instead of by key.
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(
        long = "compression-codec",
        visible_alias = "compression-type",
        short = 'z',
        default_value = "none"
    )]
    compression: Compression,
    /// 0, 1 or all (-1).
    #[arg(
        long,
        visible_alias = "request-required-acks",
        default_value = "all",
        value_parser = parse_acks,
        allow_hyphen_values = true
    )]
    acks: i16,
    /// How long to wait for more records before sending a batch.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Largest batch per partition, in bytes.
    #[arg(long, default_value_t = 16_384)]
    batch_size: usize,
}

/// Runs `sluice produce`; fails if any record could not be delivered.
pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let mut format = LineFormat::default();
    for (k, v) in &args.properties {
        format.set(k, v)?;
    }
    if let Some(sep) = &args.key_separator {
        format.set("parse.key", "true")?;
        format.set("key.separator", sep)?;
    }
    let fixed_headers: Vec<Header> = args
        .headers
        .iter()
        .map(|(k, v)| Header::new(k.clone(), unescape(v).into_bytes()))
        .collect();
    let producer = Producer::new(ProducerConfig {
        client: args.connect.client("sluice-produce"),
        acks: args.acks,
        linger: Duration::from_millis(args.linger_ms),
        batch_size: args.batch_size,
        compression: args.compression,
        enable_idempotence: args.acks == -1,
        ..ProducerConfig::default()
    })
    .await?;
    let input: Box<dyn AsyncRead + Unpin + Send> = match &args.file {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdin()),
    };

    // Deliveries are awaited in order on another task, so reading never waits for acks.
    // They travel in chunks: a channel send per record would cost as much as the send itself.
    type Chunk = Vec<(u64, sluice_client::DeliveryFuture)>;
    let (tx, mut rx) = mpsc::channel::<Chunk>(64);
    let checker = tokio::spawn(async move {
        let mut failed = 0u64;
        let mut first_error = None;
        while let Some(chunk) = rx.recv().await {
            for (line, delivery) in chunk {
                if let Err(e) = delivery.await {
                    failed += 1;
                    eprintln!("line {line}: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        (failed, first_error)
    });
    const CHUNK: usize = 1024;
    let mut chunk: Chunk = Vec::with_capacity(CHUNK);

    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut bad_lines = 0u64;
    let mut stopped: Option<anyhow::Error> = None;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .await
            .context("reading input")?;
        if n == 0 {
            break;
        }
        line_no += 1;
        // As Java's readLine: the line ending is not part of the record.
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        let parsed = match format.parse(&buf) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("line {line_no}: {e}; not sent");
                bad_lines += 1;
                continue;
            }
        };
        let mut record = ProducerRecord {
            topic: args.topic.clone(),
            partition: args.partition,
            key: parsed.key,
            value: parsed.value,
            headers: parsed.headers,
            timestamp: None,
        };
        record.headers.extend(fixed_headers.iter().cloned());
        let delivery = match producer.send(record).await {
            Ok(d) => d,
            // This record alone is at fault (too large, no such partition): skip it.
            Err(e @ sluice_client::Error::Invalid(_)) => {
                eprintln!("line {line_no}: {e}; not sent");
                bad_lines += 1;
                continue;
            }
            // The topic or the cluster is at fault: stop reading, but still deliver what
            // was accepted before, so that the lines sent are exactly those before this one.
            Err(e) => {
                stopped = Some(anyhow::Error::new(e).context(format!(
                    "line {line_no}: sending to topic {}; lines before it were sent",
                    args.topic
                )));
                break;
            }
        };
        chunk.push((line_no, delivery));
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if tx.send(full).await.is_err() {
                break;
            }
        }
    }
    if !chunk.is_empty() {
        // Fails only if the checker is gone, and then its result says why.
        let _ = tx.send(chunk).await;
    }
    drop(tx);
    producer.close().await;
    let (failed, first_error) = checker.await.context("delivery checker")?;
    if let Some(e) = stopped {
        return Err(e);
    }
    if let Some(e) = first_error {
        bail!("{failed} record(s) were not delivered; the first failure: {e}");
    }
    if bad_lines > 0 {
        bail!("{bad_lines} line(s) could not be parsed or sent, and were skipped");
    }
    Ok(())
}
