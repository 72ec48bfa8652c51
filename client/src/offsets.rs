//! Offset look-ups shared by the consumer and the admin client: ListOffsets against partition
//! leaders, and committed group offsets (OffsetFetch / OffsetCommit) at the coordinator.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    BrokerId, GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::assignor::TopicPartition;
use crate::cluster::Cluster;
use crate::error::{Error, Result};

/// ListOffsets timestamp for the earliest offset.
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp for the latest offset (the high watermark).
pub const LATEST: i64 = -1;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// The offset of each partition for `timestamp` (a time in ms, [`EARLIEST`] or [`LATEST`]);
/// -1 when no record has a timestamp that late. Asks each partition's leader, with retries.
pub async fn list_offsets(
    cluster: &Cluster,
    partitions: &[TopicPartition],
    timestamp: i64,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let mut out = BTreeMap::new();
    let mut by_leader: HashMap<i32, Vec<TopicPartition>> = HashMap::new();
    for (topic, p) in partitions {
        let info = cluster.topic(topic, false).await?;
        let leader = info
            .partitions
            .iter()
            .find(|x| x.partition == *p)
            .ok_or_else(|| {
                Error::from_code(3, || format!("topic {topic} has no partition {p}"))
                    .expect("non-zero")
            })?
            .leader;
        by_leader
            .entry(leader)
            .or_default()
            .push((topic.clone(), *p));
    }
    for (leader, tps) in by_leader {
        let found = cluster
            .retry("ListOffsets", || async {
                let conn = cluster.broker(leader).await?;
                let mut topics: Vec<ListOffsetsTopic> = Vec::new();
                for (t, p) in &tps {
                    let part = ListOffsetsPartition::default()
                        .with_partition_index(*p)
                        .with_current_leader_epoch(-1)
                        .with_timestamp(timestamp);
                    match topics.iter_mut().find(|x| x.name.0.as_str() == t) {
                        Some(x) => x.partitions.push(part),
                        None => topics.push(
                            ListOffsetsTopic::default()
                                .with_name(name(t))
                                .with_partitions(vec![part]),
                        ),
                    }
                }
                let r = conn
                    .call(
                        &ListOffsetsRequest::default()
                            .with_replica_id(BrokerId(-1))
                            .with_topics(topics),
                    )
                    .await?;
                let mut found = Vec::new();
                for t in &r.topics {
                    for p in &t.partitions {
                        let topic = t.name.0.to_string();
                        if let Some(e) = Error::from_code(p.error_code, || {
                            format!(
                                "listing offsets of {topic}-{} on broker {}",
                                p.partition_index,
                                conn.addr()
                            )
                        }) {
                            if e.is_retriable() {
                                cluster.invalidate(&topic);
                            }
                            return Err(e);
                        }
                        found.push(((topic, p.partition_index), p.offset));
                    }
                }
                Ok(found)
            })
            .await?;
        out.extend(found);
    }
    Ok(out)
}

/// A committed offset and its metadata string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The next offset the group will read.
    pub offset: i64,
    /// Metadata stored with the commit.
    pub metadata: Option<String>,
}

/// Offsets committed by `group`, for `partitions` (`None`: every partition it committed).
/// Partitions without a commit are left out.
pub async fn committed(
    cluster: &Cluster,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, Committed>> {
    let topics = partitions.map(|tps| {
        let mut topics: Vec<OffsetFetchRequestTopic> = Vec::new();
        for (t, p) in tps {
            match topics.iter_mut().find(|x| x.name.0.as_str() == t) {
                Some(x) => x.partition_indexes.push(*p),
                None => topics.push(
                    OffsetFetchRequestTopic::default()
                        .with_name(name(t))
                        .with_partition_indexes(vec![*p]),
                ),
            }
        }
        topics
    });
    cluster
        .retry(&format!("OffsetFetch for group {group}"), || async {
            let conn = cluster.coordinator(group).await?;
            let r = conn
                .call(
                    &OffsetFetchRequest::default()
                        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                        .with_topics(topics.clone()),
                )
                .await?;
            coordinator_check(cluster, group, r.error_code, "fetching offsets of")?;
            let mut out = BTreeMap::new();
            for t in &r.topics {
                for p in &t.partitions {
                    coordinator_check(cluster, group, p.error_code, "fetching offsets of")?;
                    if p.committed_offset >= 0 {
                        out.insert(
                            (t.name.0.to_string(), p.partition_index),
                            Committed {
                                offset: p.committed_offset,
                                metadata: p.metadata.as_ref().map(|m| m.to_string()),
                            },
                        );
                    }
                }
            }
            Ok(out)
        })
        .await
}

/// Who commits: a group member (generation and member id), or an admin acting on an empty
/// group (generation -1, empty member id).
#[derive(Debug, Clone, Default)]
pub struct CommitIdentity {
    /// Generation id, -1 outside the group protocol.
    pub generation: i32,
    /// Member id, empty outside the group protocol.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
}

/// Commits `offsets` for `group`.
pub async fn commit(
    cluster: &Cluster,
    group: &str,
    who: &CommitIdentity,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for ((t, p), o) in offsets {
        let part = OffsetCommitRequestPartition::default()
            .with_partition_index(*p)
            .with_committed_offset(*o)
            .with_committed_leader_epoch(-1);
        match topics.iter_mut().find(|x| x.name.0.as_str() == t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(name(t))
                    .with_partitions(vec![part]),
            ),
        }
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(who.generation)
        .with_member_id(StrBytes::from_string(who.member_id.clone()))
        .with_group_instance_id(who.group_instance_id.clone().map(StrBytes::from_string))
        .with_retention_time_ms(-1)
        .with_topics(topics);
    cluster
        .retry(&format!("OffsetCommit for group {group}"), || async {
            let conn = cluster.coordinator(group).await?;
            let r = conn.call(&request).await?;
            for t in &r.topics {
                for p in &t.partitions {
                    coordinator_check(cluster, group, p.error_code, "committing offsets of")?;
                }
            }
            Ok(())
        })
        .await
}

/// Turns a group error code into an error, forgetting the coordinator when it moved.
pub(crate) fn coordinator_check(
    cluster: &Cluster,
    group: &str,
    code: i16,
    doing: &str,
) -> Result<()> {
    // COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: look the coordinator up again.
    if code == 15 || code == 16 {
        cluster.invalidate_coordinator(group);
    }
    crate::error::check(code, || format!("{doing} group {group}"))
}
