//! `sluice topic`: what `kafka-topics.sh` (and `kafka-configs.sh` for topics) does.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::Subcommand;
use sluice_client::admin::{ConfigSource, NewTopic, Resource};
use sluice_client::Admin;

use super::{key_value, Connect, TopicArg};

/// `sluice topic ...`
#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        #[command(flatten)]
        connect: Connect,
        #[command(flatten)]
        topic: TopicArg,
        /// Partitions (default: the broker's num.partitions).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replicas per partition (default: the broker's default.replication.factor).
        #[arg(long)]
        replication_factor: Option<i16>,
        /// The replicas of each partition, as kafka-topics.sh takes them: partitions
        /// separated by commas, brokers by colons, the first broker preferred as leader
        /// (e.g. 1:2,2:3,3:1). Replaces --partitions and --replication-factor.
        #[arg(long, value_parser = replica_assignment,
              conflicts_with_all = ["partitions", "replication_factor"])]
        replica_assignment: Option<ReplicaAssignment>,
        /// A topic config, e.g. --config retention.ms=3600000 (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<(String, String)>,
        /// Succeed if the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topic names.
    List {
        #[command(flatten)]
        connect: Connect,
        /// Leave out internal topics such as __consumer_offsets.
        #[arg(long)]
        exclude_internal: bool,
    },
    /// Show partitions, leaders, replicas and the configs set on topics (all when none named).
    Describe {
        #[command(flatten)]
        connect: Connect,
        /// Topics to describe.
        #[arg(value_name = "TOPIC")]
        topics: Vec<String>,
        /// A topic to describe (as kafka-topics.sh spells it; repeatable).
        #[arg(long = "topic", value_name = "TOPIC")]
        topic_flags: Vec<String>,
    },
    /// Delete topics.
    Delete {
        #[command(flatten)]
        connect: Connect,
        /// Topics to delete.
        #[arg(value_name = "TOPIC")]
        topics: Vec<String>,
        /// A topic to delete (as kafka-topics.sh spells it; repeatable).
        #[arg(long = "topic", value_name = "TOPIC")]
        topic_flags: Vec<String>,
        /// Succeed if a topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// Add partitions, or set or remove topic configs.
    Alter {
        #[command(flatten)]
        connect: Connect,
        #[command(flatten)]
        topic: TopicArg,
        /// The new, larger partition count.
        #[arg(long)]
        partitions: Option<i32>,
        /// With --partitions, the replicas of every partition (as for create); those of the
        /// partitions that exist already are left as they are, as kafka-topics.sh does.
        #[arg(long, value_parser = replica_assignment, requires = "partitions")]
        replica_assignment: Option<ReplicaAssignment>,
        /// Set a config, e.g. --config retention.ms=600000 (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<(String, String)>,
        /// Remove a config so the broker default applies (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
}

/// Runs a `sluice topic` command.
pub async fn run(command: TopicCommand) -> anyhow::Result<()> {
    match command {
        TopicCommand::Create {
            connect,
            topic,
            partitions,
            replication_factor,
            replica_assignment,
            configs,
            if_not_exists,
        } => {
            let admin = Admin::new(connect.client("sluice-topic"))?;
            let new = NewTopic {
                name: topic.name().to_string(),
                partitions: partitions.unwrap_or(-1),
                replication_factor: replication_factor.unwrap_or(-1),
                configs,
                replica_assignment: replica_assignment.map_or_else(Vec::new, |a| a.0),
            };
            match admin.create_topics(&[new]).await {
                Ok(()) => println!("Created topic {}.", topic.name()),
                // TOPIC_ALREADY_EXISTS
                Err(e) if if_not_exists && e.kafka().is_some_and(|k| k.code() == 36) => {}
                Err(e) => return Err(e.into()),
            }
        }
        TopicCommand::List {
            connect,
            exclude_internal,
        } => {
            let admin = Admin::new(connect.client("sluice-topic"))?;
            let mut topics = admin.list_topics().await?;
            topics.retain(|t| !(exclude_internal && t.internal));
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            for t in topics {
                println!("{}", t.name);
            }
        }
        TopicCommand::Describe {
            connect,
            mut topics,
            topic_flags,
        } => {
            topics.extend(topic_flags);
            let admin = Admin::new(connect.client("sluice-topic"))?;
            describe(&admin, topics).await?;
        }
        TopicCommand::Delete {
            connect,
            mut topics,
            topic_flags,
            if_exists,
        } => {
            topics.extend(topic_flags);
            if topics.is_empty() {
                bail!("name the topics to delete");
            }
            let admin = Admin::new(connect.client("sluice-topic"))?;
            for t in &topics {
                match admin.delete_topics(std::slice::from_ref(t)).await {
                    Ok(()) => println!("Deleted topic {t}."),
                    // UNKNOWN_TOPIC_OR_PARTITION
                    Err(e) if if_exists && e.kafka().is_some_and(|k| k.code() == 3) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        TopicCommand::Alter {
            connect,
            topic,
            partitions,
            replica_assignment,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                bail!("nothing to alter: give --partitions, --config or --delete-config");
            }
            let admin = Admin::new(connect.client("sluice-topic"))?;
            let name = topic.name();
            if let Some(p) = partitions {
                let new_partitions = match &replica_assignment {
                    None => None,
                    Some(ReplicaAssignment(all)) => {
                        let have = admin.describe_topics(&[name.to_string()]).await?[0]
                            .partitions
                            .len();
                        if all.len() != p as usize {
                            bail!(
                                "--replica-assignment lists {} partitions, --partitions asks for {p}",
                                all.len()
                            );
                        }
                        Some(all[have.min(all.len())..].to_vec())
                    }
                };
                admin
                    .create_partitions_assigned(name, p, new_partitions.as_deref())
                    .await?;
                println!("Topic {name} now has {p} partitions.");
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                let mut changes: Vec<(String, Option<String>)> =
                    configs.into_iter().map(|(k, v)| (k, Some(v))).collect();
                changes.extend(delete_configs.into_iter().map(|k| (k, None)));
                admin
                    .alter_configs(&Resource::Topic(name.to_string()), &changes)
                    .await?;
                println!("Updated the configs of topic {name}.");
            }
        }
    }
    Ok(())
}

async fn describe(admin: &Admin, names: Vec<String>) -> anyhow::Result<()> {
    let mut topics = if names.is_empty() {
        admin.list_topics().await?
    } else {
        admin.describe_topics(&names).await?
    };
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in topics {
        let configs = admin
            .describe_configs(&Resource::Topic(t.name.clone()))
            .await
            .with_context(|| format!("reading the configs of topic {}", t.name))?;
        let set: BTreeMap<String, String> = configs
            .into_iter()
            .filter(|c| c.source == ConfigSource::Topic)
            .map(|c| (c.name, c.value.unwrap_or_else(|| "null".into())))
            .collect();
        let configs: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let rf = t.partitions.first().map_or(0, |p| p.replicas.len());
        println!(
            "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
            t.name,
            t.id,
            t.partitions.len(),
            rf,
            configs.join(",")
        );
        for p in &t.partitions {
            println!(
                "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                t.name,
                p.partition,
                if p.leader < 0 {
                    "none".to_string()
                } else {
                    p.leader.to_string()
                },
                join(&p.replicas),
                join(&p.isr)
            );
        }
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// The replicas of each partition, by partition index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAssignment(pub Vec<Vec<i32>>);

/// Parses a replica assignment as kafka-topics.sh takes it: `1:2,2:3` is partition 0 on
/// brokers 1 and 2, partition 1 on brokers 2 and 3.
fn replica_assignment(s: &str) -> Result<ReplicaAssignment, String> {
    s.split(',')
        .enumerate()
        .map(|(partition, brokers)| {
            brokers
                .split(':')
                .map(|b| {
                    b.trim().parse::<i32>().map_err(|_| {
                        format!("partition {partition}: {b:?} is not a broker id (expected e.g. 1:2,2:3)")
                    })
                })
                .collect()
        })
        .collect::<Result<_, _>>()
        .map(ReplicaAssignment)
}

#[cfg(test)]
mod tests {
    use super::replica_assignment;

    #[test]
    fn replica_assignments_parse_as_kafka_topics_takes_them() {
        assert_eq!(
            replica_assignment("1:2,2:3,3").unwrap().0,
            vec![vec![1, 2], vec![2, 3], vec![3]]
        );
        assert!(replica_assignment("1:x")
            .unwrap_err()
            .contains("\"x\" is not a broker id"));
        assert!(replica_assignment("1,,2").is_err(), "an empty partition");
    }
}
