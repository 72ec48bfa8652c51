//! What the active controller decides: the records it proposes in answer to requests and to
//! broker liveness. Pure functions of the current [`MetadataImage`], so every rule (placement,
//! clean election, ISR changes, fencing) is tested without a network or a quorum.
//!
//! Split along Kafka's controller classes: `cluster_control` (brokers), `replication_control`
//! (topics, partitions, ISRs), `election` (leaders), `reassignment`, `acl_control` (ACLs); [`repair`] is what the
//! active controller finishes on its own at every check.

use uuid::Uuid;

use crate::image::{MetadataImage, Partition};
use crate::record::{MetadataRecord, PartitionChange};

mod acl_control;
mod cluster_control;
mod election;
mod error;
mod reassignment;
mod replication_control;

pub use acl_control::{create_acls, delete_acls};
use cluster_control::move_away;
pub use cluster_control::{
    begin_shutdown, fence_broker, fenced_with_duties, finish_shutdown, leads_nothing,
    register_broker, registered, unfence_broker, Registration,
};
pub use election::{
    elect_offline_where_allowed, elect_preferred, elect_unclean, rebalance_leaders,
    unclean_candidate,
};
pub use error::ControllerError;
pub use reassignment::{alter_reassignment, complete_reassignments};
pub use replication_control::{
    alter_isr, check_isr_epochs, create_partitions, create_topic, TopicShape,
};

fn shutting_down(image: &MetadataImage, id: i32) -> bool {
    image.brokers.get(&id).is_some_and(|b| b.shutting_down)
}

/// A change of partition `p` (index `partition` of `topic`), decided at its current
/// partition epoch.
fn change(
    topic: Uuid,
    partition: usize,
    p: &Partition,
    leader: Option<i32>,
    isr: Option<Vec<i32>>,
) -> MetadataRecord {
    MetadataRecord::ChangePartition(PartitionChange {
        topic,
        partition: partition as i32,
        leader,
        isr,
        partition_epoch: Some(p.partition_epoch),
        ..PartitionChange::default()
    })
}

/// What the active controller does on its own, at every check: finish fences (fenced brokers
/// still leading or in ISRs), complete reassignments whose target replicas are in sync, and
/// elect leaders for offline partitions with a live in-sync replica or whose topic allows
/// unclean election (Kafka's periodic unclean election, so turning the setting on or a
/// replica returning is enough).
/// One batch of records per concern; each is decided over the image the previous left.
pub fn repair(image: &MetadataImage) -> Vec<Vec<MetadataRecord>> {
    let mut out = Vec::new();
    let mut after = image.clone();
    let mut push = |records: Vec<MetadataRecord>, after: &mut MetadataImage| {
        if !records.is_empty() {
            let batch = MetadataRecord::Batch(records.clone());
            match after.apply(&batch) {
                Ok(()) => out.push(records),
                // Decided over this very image, so it should always apply: say so if not.
                Err(e) => tracing::warn!(error = %e, "a repair does not fit the image; skipped"),
            }
        }
    };
    for id in fenced_with_duties(&after) {
        let records = move_away(&after, id);
        push(records, &mut after);
    }
    let records = complete_reassignments(&after);
    push(records, &mut after);
    let records = elect_offline_where_allowed(&after);
    push(records, &mut after);
    out
}
