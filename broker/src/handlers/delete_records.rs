//! DeleteRecords: move each partition's log start offset up (-1 = to the high watermark).

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use sluice_storage::{Offset, TopicPartition};

use super::Context;
use crate::error::BrokerError;
use crate::error_map;

pub(super) fn handle(ctx: &Context, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                    let result = ctx.rm.leader_partition(&tp, -1).and_then(|(part, _)| {
                        let target = if p.offset == -1 {
                            part.log.offsets().high_watermark
                        } else {
                            Offset(p.offset)
                        };
                        part.log
                            .delete_records_before(target)
                            .map_err(BrokerError::from)
                    });
                    match result {
                        Ok(start) => r.with_low_watermark(start.0),
                        Err(e) => r.with_error_code(error_map::code(&e)),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
