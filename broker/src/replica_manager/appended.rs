//! An append made as leader, and waiting until the ISR has it (acks=all).

use std::sync::Arc;
use std::time::Duration;

use sluice_replication::isr::{acks_all, AcksAll};
use sluice_storage::{AppendInfo, LeaderEpoch};

use super::Partition;
use crate::error::BrokerError;

/// Records appended as leader, to wait on until the ISR has them (acks=all).
pub struct Appended {
    pub(super) node: i32,
    /// The partition.
    pub partition: Arc<Partition>,
    /// The leader epoch they were appended at.
    pub leader_epoch: LeaderEpoch,
    /// The topic's `min.insync.replicas`.
    pub min_insync: usize,
    /// What the append did.
    pub info: AppendInfo,
}

impl Appended {
    /// Waits until the records are replicated to the ISR: the high watermark passes them.
    /// Fails if leadership moves, the ISR shrinks below `min.insync.replicas`, or `timeout`
    /// passes.
    pub async fn replicated(&self, timeout: Duration) -> Result<(), BrokerError> {
        let (partition, node, leader_epoch) = (&self.partition, self.node, self.leader_epoch);
        let (last, min_insync) = (self.info.last_offset, self.min_insync);
        let deadline = tokio::time::Instant::now() + timeout;
        let settled = crate::delayed::wait_on(std::slice::from_ref(partition), deadline, || {
            let r = partition.replica.lock();
            if r.leader != node || r.leader_epoch != leader_epoch {
                return Some(Err(BrokerError::NotLeaderOrFollower));
            }
            let hw = partition.log.offsets().high_watermark;
            match acks_all(last, hw, r.isr.len(), min_insync) {
                AcksAll::Done => Some(Ok(())),
                AcksAll::NotEnoughReplicas => Some(Err(BrokerError::NotEnoughReplicasAfterAppend)),
                AcksAll::Waiting => None,
            }
        })
        .await;
        settled.unwrap_or(Err(BrokerError::ReplicationTimedOut))
    }
}
