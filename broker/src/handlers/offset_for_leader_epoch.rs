//! OffsetForLeaderEpoch (KIP-101/279/320): where a leader epoch ended in the leader's log.
//! Followers truncate to it after a leadership change; consumers use it to detect that the
//! log they read was truncated under them.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use sluice_storage::{LeaderEpoch, TopicPartition};

use super::registry::{Operation, Resource};
use super::Context;
use crate::error::BrokerError;
use crate::error_map;

pub(super) fn handle(
    ctx: &Context,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    // A follower asks as a broker (CLUSTER_ACTION), a consumer needs DESCRIBE on the topic.
    let follower_allowed =
        req.replica_id.0 >= 0 && ctx.cluster_authorized(Operation::ClusterAction);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let allowed = if req.replica_id.0 >= 0 {
                follower_allowed
            } else {
                ctx.authorized(Resource::Topic, t.topic.as_str(), Operation::Describe)
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition::new(t.topic.as_str(), p.partition);
                    let r = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if !allowed {
                        let e = BrokerError::TopicAuthorizationFailed;
                        return r.with_error_code(error_map::code(&e));
                    }
                    match ctx.rm.leader_partition(&tp, p.current_leader_epoch) {
                        Ok((part, _)) => {
                            match part.log.end_offset_for_epoch(LeaderEpoch(p.leader_epoch)) {
                                Some((epoch, end)) => {
                                    r.with_leader_epoch(epoch.0).with_end_offset(end.0)
                                }
                                None => r,
                            }
                        }
                        Err(e) => r.with_error_code(error_map::code(&e)),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
