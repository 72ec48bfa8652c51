//! `sluice consume`: print records, one per line by default, like
//! `kafka-console-consumer.sh`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sluice_client::{Admin, Consumer, ConsumerConfig, Offset, OffsetReset, TopicPartition};

use super::format::{write_json, RecordFormat};
use super::{key_value, parse_time, unescape, Connect, Out};

/// `sluice consume` arguments.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    connect: Connect,
    /// Topic to read.
    #[arg(value_name = "TOPIC")]
    topic: String,
    /// Join this consumer group: partitions are shared with its other members and offsets
    /// are committed. Without it, every partition is read and nothing is committed.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Start at the earliest record (with --group: when the group has no committed offset).
    #[arg(long, conflicts_with_all = ["offset", "timestamp"])]
    from_beginning: bool,
    /// Start at this offset, or earliest / latest (needs --partition unless earliest/latest).
    #[arg(
        long,
        short = 'o',
        allow_hyphen_values = true,
        conflicts_with = "timestamp"
    )]
    offset: Option<String>,
    /// Start at the first record at or after this time (ms since the epoch or RFC 3339).
    #[arg(long, value_name = "TIME")]
    timestamp: Option<String>,
    /// Read only this partition.
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Exit after this many records.
    #[arg(long, short = 'n')]
    max_messages: Option<u64>,
    /// Exit when no record arrived for this long (default: wait forever).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print the key before the value (print.key=true).
    #[arg(long)]
    print_key: bool,
    /// Print the offset (print.offset=true).
    #[arg(long)]
    print_offset: bool,
    /// Print the partition (print.partition=true).
    #[arg(long)]
    print_partition: bool,
    /// Print the timestamp and its type (print.timestamp=true).
    #[arg(long)]
    print_timestamp: bool,
    /// Print the headers (print.headers=true).
    #[arg(long)]
    print_headers: bool,
    /// Between printed fields (key.separator; default tab).
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<String>,
    /// Formatter settings as kafka-console-consumer.sh takes them: print.key, print.offset,
    /// print.partition, print.timestamp, print.headers, print.value, key.separator,
    /// line.separator, headers.separator, headers.key.separator, null.literal.
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = key_value)]
    properties: Vec<(String, String)>,
    /// One JSON object per record (topic, partition, offset, timestamp, key, value, headers).
    #[arg(long)]
    json: bool,
}

/// Runs `sluice consume` until --max-messages, --timeout-ms, Ctrl-C or a closed stdout.
pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut format = RecordFormat::default();
    for (k, v) in &args.properties {
        format.set(k, v)?;
    }
    format.print_key |= args.print_key;
    format.print_offset |= args.print_offset;
    format.print_partition |= args.print_partition;
    format.print_timestamp |= args.print_timestamp;
    format.print_headers |= args.print_headers;
    if let Some(sep) = &args.key_separator {
        format.key_separator = unescape(sep);
    }
    let start = start_offset(&args)?;
    let client = args.connect.client("sluice-consume");
    let mut consumer = Consumer::new(ConsumerConfig {
        client: client.clone(),
        group_id: args.group.clone(),
        auto_offset_reset: if args.from_beginning {
            OffsetReset::Earliest
        } else {
            OffsetReset::Latest
        },
        // With --max-messages, only what was printed may be committed, so commit by hand.
        enable_auto_commit: args.group.is_some() && args.max_messages.is_none(),
        ..ConsumerConfig::default()
    })?;
    match (&args.group, start) {
        (Some(_), None) if args.partition.is_none() => {
            consumer.subscribe(vec![args.topic.clone()])?;
        }
        (Some(_), _) => bail!(
            "--group shares partitions among members and starts from committed offsets; \
             --partition, --offset and --timestamp cannot be used with it \
             (use `sluice group reset-offsets` to move a group)"
        ),
        (None, start) => {
            let partitions: Vec<TopicPartition> = match args.partition {
                Some(p) => vec![(args.topic.clone(), p)],
                None => {
                    Admin::new(client)?
                        .partitions_of(std::slice::from_ref(&args.topic))
                        .await?
                }
            };
            let start = start.unwrap_or(if args.from_beginning {
                Offset::Beginning
            } else {
                Offset::End
            });
            consumer.assign(partitions.clone());
            for tp in partitions {
                consumer.seek(tp, start);
            }
        }
    }

    let mut out = Out::default();
    let mut line = Vec::with_capacity(1 << 16);
    let mut printed = 0u64;
    let mut consumed: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut last_record = Instant::now();
    let idle = args.timeout_ms.map(Duration::from_millis);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    'read: loop {
        if args.max_messages.is_some_and(|m| printed >= m) {
            break;
        }
        if idle.is_some_and(|t| last_record.elapsed() >= t) {
            break;
        }
        let records = tokio::select! {
            r = consumer.poll(Duration::from_millis(200)) => r?,
            _ = &mut ctrl_c => break,
        };
        if !records.is_empty() {
            last_record = Instant::now();
        }
        line.clear();
        for r in &records {
            if args.max_messages.is_some_and(|m| printed >= m) {
                break;
            }
            if args.json {
                write_json(r, &mut line);
            } else {
                format.write(r, &mut line);
            }
            printed += 1;
            if args.max_messages.is_some() {
                consumed.insert((r.topic.to_string(), r.partition), r.offset + 1);
            }
        }
        if !out.write(&line)? || !out.flush()? {
            break 'read;
        }
    }
    if args.group.is_some() {
        // With --max-messages, commit what was printed, not what was fetched beyond it;
        // otherwise auto-commit runs on close.
        if args.max_messages.is_some() && !consumed.is_empty() {
            consumer
                .commit_offsets(&consumed)
                .await
                .context("committing the group's offsets")?;
        }
        consumer.close().await?;
    }
    eprintln!("Processed a total of {printed} messages");
    Ok(())
}

fn start_offset(args: &ConsumeArgs) -> anyhow::Result<Option<Offset>> {
    if let Some(t) = &args.timestamp {
        return Ok(Some(Offset::Timestamp(parse_time(t)?)));
    }
    let Some(o) = &args.offset else {
        return Ok(None);
    };
    Ok(Some(match o.as_str() {
        "earliest" | "beginning" => Offset::Beginning,
        "latest" | "end" => Offset::End,
        n => {
            let n: i64 = n.parse().ok().filter(|n| *n >= 0).with_context(|| {
                format!("--offset {n:?}: expected earliest, latest or an offset")
            })?;
            if args.partition.is_none() {
                bail!("--offset {n} needs --partition: offsets differ between partitions");
            }
            Offset::At(n)
        }
    }))
}
