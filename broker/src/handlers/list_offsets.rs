//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, KIP-734) and by timestamp: the
//! first record whose timestamp is at or after the target. Only committed records are
//! answered (below the high watermark, or the last stable offset for READ_COMMITTED); the
//! rules are `Partition::offset_for`'s.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use sluice_storage::TopicPartition;

use super::registry::{Operation, Resource};
use super::Context;
use crate::error::BrokerError;
use crate::error_map;
use crate::replica_manager::{FoundOffset, OffsetQuery};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const READ_COMMITTED: i8 = 1;

fn lookup(
    ctx: &Context,
    tp: &TopicPartition,
    client_epoch: i32,
    ts: i64,
    read_committed: bool,
) -> Result<FoundOffset, BrokerError> {
    // Before existence: an unauthorized client learns nothing of the topic.
    if !ctx.authorized(Resource::Topic, &tp.topic, Operation::Describe) {
        return Err(BrokerError::TopicAuthorizationFailed);
    }
    let query = match ts {
        LATEST => OffsetQuery::Latest,
        EARLIEST => OffsetQuery::Earliest,
        MAX_TIMESTAMP => OffsetQuery::MaxTimestamp,
        ts if ts >= 0 => OffsetQuery::Timestamp(ts),
        _ => {
            return Err(BrokerError::UnsupportedVersion(format!(
                "unsupported timestamp {ts}"
            )))
        }
    };
    let found =
        ctx.rm
            .partition(tp)?
            .offset_for(ctx.rm.node_id(), client_epoch, query, read_committed);
    if let Err(BrokerError::Storage(e)) = &found {
        ctx.rm.storage_error(e);
    }
    found
}

pub(super) fn handle(ctx: &Context, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let read_committed = req.isolation_level == READ_COMMITTED;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                    let r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match lookup(
                        ctx,
                        &tp,
                        p.current_leader_epoch,
                        p.timestamp,
                        read_committed,
                    ) {
                        // leader_epoch exists from v4 on; setting it earlier fails encoding.
                        Ok(found) => r
                            .with_timestamp(found.timestamp)
                            .with_offset(found.offset.0)
                            .with_leader_epoch(if ctx.version >= 4 {
                                found.leader_epoch.0
                            } else {
                                -1
                            }),
                        // OFFSET_NOT_AVAILABLE exists from v5; older clients retry on
                        // LEADER_NOT_AVAILABLE, as Kafka answers them.
                        Err(BrokerError::OffsetNotAvailable) if ctx.version < 5 => r
                            .with_error_code(error_map::code(&BrokerError::LeaderNotAvailable))
                            .with_timestamp(-1)
                            .with_offset(-1),
                        Err(e) => r
                            .with_error_code(error_map::code(&e))
                            .with_timestamp(-1)
                            .with_offset(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
