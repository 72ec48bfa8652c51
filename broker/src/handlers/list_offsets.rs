//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, KIP-734) and by timestamp: the
//! first record whose timestamp is at or after the target.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use sluice_storage::TopicPartition;

use super::Context;
use crate::error::BrokerError;
use crate::error_map;

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
) -> Result<(i64, i64, i32), BrokerError> {
    let (partition, _) = ctx.rm.leader_partition(tp, client_epoch)?;
    let log = partition.log.clone();
    let o = log.offsets();
    let (ts, offset) = match ts {
        LATEST => (
            -1,
            if read_committed {
                o.last_stable.0
            } else {
                o.high_watermark.0
            },
        ),
        EARLIEST => (-1, o.log_start.0),
        MAX_TIMESTAMP => log
            .max_timestamp()?
            .map_or((-1, -1), |t| (t.timestamp, t.offset.0)),
        ts if ts >= 0 => log
            .offset_for_timestamp(ts)?
            .map_or((-1, -1), |t| (t.timestamp, t.offset.0)),
        _ => {
            return Err(BrokerError::InvalidRequest(format!(
                "unsupported timestamp {ts}"
            )))
        }
    };
    // The epoch of the record found, as Kafka answers it: consumers validate their position
    // against it after a leader change (KIP-320).
    let epoch = if offset >= 0 {
        log.epoch_of(sluice_storage::Offset(offset))
            .map_or(-1, |e| e.0)
    } else {
        -1
    };
    Ok((ts, offset, epoch))
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
                        Ok((ts, offset, epoch)) => r
                            .with_timestamp(ts)
                            .with_offset(offset)
                            .with_leader_epoch(if ctx.version >= 4 { epoch } else { -1 }),
                        Err(BrokerError::InvalidRequest(_)) => r
                            .with_error_code(ResponseError::UnsupportedVersion.code())
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
