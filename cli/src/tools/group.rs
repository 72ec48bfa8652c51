//! `sluice group`: what `kafka-consumer-groups.sh` does.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use clap::Subcommand;
use sluice_client::offsets::{EARLIEST, LATEST};
use sluice_client::{Admin, TopicPartition};

use super::{parse_time, table, Connect, GroupArg};

/// `sluice group ...`
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups and their states.
    List {
        #[command(flatten)]
        connect: Connect,
    },
    /// Show a group's members, committed offsets, log end offsets and lag per partition.
    Describe {
        #[command(flatten)]
        connect: Connect,
        #[command(flatten)]
        group: GroupArg,
    },
    /// Move a group's committed offsets (the group must have no active members).
    ResetOffsets(ResetArgs),
    /// Delete groups and their committed offsets (they must have no active members).
    Delete {
        #[command(flatten)]
        connect: Connect,
        #[command(flatten)]
        group: GroupArg,
    },
}

/// `sluice group reset-offsets` arguments.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(
    ["to_earliest", "to_latest", "to_offset", "shift_by", "to_datetime", "to_current"]
)))]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["topics", "all_topics"])))]
pub struct ResetArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(flatten)]
    group: GroupArg,
    /// TOPIC or TOPIC:P,P,... to reset (repeatable).
    #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]")]
    topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// To the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end offset.
    #[arg(long)]
    to_latest: bool,
    /// To this offset (kept within the log).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// Forward or back by this many records from the committed offset.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// To the first record at or after this time (ms since the epoch or RFC 3339).
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
    /// To the committed offset (useful to add partitions without a commit).
    #[arg(long)]
    to_current: bool,
    /// Apply the new offsets. Without it, only show them (a dry run).
    #[arg(long, conflicts_with = "dry_run")]
    execute: bool,
    /// Only show the new offsets (the default).
    #[arg(long)]
    dry_run: bool,
}

/// Runs a `sluice group` command.
pub async fn run(command: GroupCommand) -> anyhow::Result<()> {
    match command {
        GroupCommand::List { connect } => {
            let admin = Admin::new(connect.client("sluice-group"))?;
            let mut groups = admin.list_groups().await?;
            groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            let rows: Vec<Vec<String>> = groups
                .into_iter()
                .map(|g| vec![g.group_id, g.state, g.protocol_type])
                .collect();
            print!("{}", table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows));
        }
        GroupCommand::Describe { connect, group } => {
            let admin = Admin::new(connect.client("sluice-group"))?;
            describe(&admin, group.id()).await?;
        }
        GroupCommand::ResetOffsets(args) => reset(args).await?,
        GroupCommand::Delete { connect, group } => {
            let admin = Admin::new(connect.client("sluice-group"))?;
            admin.delete_groups(&[group.id().to_string()]).await?;
            println!("Deleted consumer group '{}'.", group.id());
        }
    }
    Ok(())
}

/// Log end offsets of `partitions`, leaving out topics that no longer exist.
async fn end_offsets(
    admin: &Admin,
    partitions: &BTreeSet<TopicPartition>,
) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let topics: BTreeSet<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
    let mut live = Vec::new();
    for t in topics {
        match admin.describe_topics(std::slice::from_ref(&t)).await {
            Ok(_) => live.extend(partitions.iter().filter(|(x, _)| *x == t).cloned()),
            Err(e) if e.kafka().is_some_and(|k| k.code() == 3) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(admin.list_offsets(&live, LATEST).await?)
}

async fn describe(admin: &Admin, group: &str) -> anyhow::Result<()> {
    let description = admin.describe_group(group).await?;
    let committed = admin.group_offsets(group).await?;
    if description.state == "Dead" && committed.is_empty() {
        bail!("consumer group '{group}' does not exist");
    }
    let mut owner: BTreeMap<TopicPartition, (&str, &str, &str)> = BTreeMap::new();
    for m in &description.members {
        for tp in &m.assignment {
            owner.insert(tp.clone(), (&m.member_id, &m.host, &m.client_id));
        }
    }
    let partitions: BTreeSet<TopicPartition> =
        committed.keys().chain(owner.keys()).cloned().collect();
    let ends = end_offsets(admin, &partitions).await?;
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|tp| {
            let current = committed.get(tp).map(|c| c.offset);
            let end = ends.get(tp).copied();
            let lag = match (current, end) {
                (Some(c), Some(e)) => (e - c).max(0).to_string(),
                _ => "-".into(),
            };
            let (member, host, client) = owner.get(tp).copied().unwrap_or(("-", "-", "-"));
            vec![
                group.to_string(),
                tp.0.clone(),
                tp.1.to_string(),
                current.map_or("-".into(), |c| c.to_string()),
                end.map_or("-".into(), |e| e.to_string()),
                lag,
                member.to_string(),
                host.to_string(),
                client.to_string(),
            ]
        })
        .collect();
    println!(
        "Consumer group '{group}': state {}, {} member(s){}",
        description.state,
        description.members.len(),
        if description.protocol.is_empty() {
            String::new()
        } else {
            format!(", assignor {}", description.protocol)
        }
    );
    println!();
    print!(
        "{}",
        table(
            &[
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID"
            ],
            &rows
        )
    );
    Ok(())
}

async fn reset(args: ResetArgs) -> anyhow::Result<()> {
    let admin = Admin::new(args.connect.client("sluice-group"))?;
    let group = args.group.id();
    let committed = admin.group_offsets(group).await?;
    let partitions: BTreeSet<TopicPartition> = if args.all_topics {
        committed.keys().cloned().collect()
    } else {
        let mut out = BTreeSet::new();
        for spec in &args.topics {
            out.extend(topic_partitions(&admin, spec).await?);
        }
        out
    };
    if partitions.is_empty() {
        bail!("group '{group}' has no committed offsets to reset; name topics with --topic");
    }
    let list: Vec<TopicPartition> = partitions.iter().cloned().collect();
    let earliest = admin.list_offsets(&list, EARLIEST).await?;
    let latest = admin.list_offsets(&list, LATEST).await?;
    let at_time = match &args.to_datetime {
        Some(t) => Some(admin.list_offsets(&list, parse_time(t)?).await?),
        None => None,
    };
    let mut plan = BTreeMap::new();
    for tp in &list {
        let (Some(&lo), Some(&hi)) = (earliest.get(tp), latest.get(tp)) else {
            bail!("no offsets known for {}:{}", tp.0, tp.1);
        };
        let current = committed.get(tp).map(|c| c.offset);
        let wanted = if args.to_earliest {
            lo
        } else if args.to_latest {
            hi
        } else if let Some(o) = args.to_offset {
            o
        } else if let Some(n) = args.shift_by {
            current.with_context(|| {
                format!(
                    "--shift-by needs a committed offset; {}:{} has none",
                    tp.0, tp.1
                )
            })? + n
        } else if let Some(found) = &at_time {
            // No record that late: the end, as Kafka's tool does.
            found.get(tp).copied().filter(|o| *o >= 0).unwrap_or(hi)
        } else {
            current.with_context(|| format!("{}:{} has no committed offset", tp.0, tp.1))?
        };
        plan.insert(tp.clone(), wanted.clamp(lo, hi));
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|((t, p), o)| vec![group.to_string(), t.clone(), p.to_string(), o.to_string()])
        .collect();
    print!(
        "{}",
        table(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], &rows)
    );
    if args.execute {
        admin
            .set_group_offsets(group, &plan)
            .await
            .with_context(|| {
                format!("resetting the offsets of group '{group}' (stop its consumers first)")
            })?;
    } else {
        eprintln!("Dry run: nothing changed. Add --execute to apply.");
    }
    Ok(())
}

/// `TOPIC` (every partition) or `TOPIC:0,2`.
async fn topic_partitions(admin: &Admin, spec: &str) -> anyhow::Result<Vec<TopicPartition>> {
    match spec.split_once(':') {
        None => Ok(admin.partitions_of(&[spec.to_string()]).await?),
        Some((topic, list)) => list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<i32>()
                    .map(|p| (topic.to_string(), p))
                    .with_context(|| format!("--topic {spec}: {p:?} is not a partition number"))
            })
            .collect(),
    }
}
