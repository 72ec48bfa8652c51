//! Invariant 1: no acknowledged acks=all write is lost. After faults heal and the cluster
//! settles, every record a leader acknowledged is in the partition leader's log at the
//! offset it was acknowledged with. Off for runs that allow unclean election.

use super::{acting_leader, Violation};
use crate::world::World;

/// Checks every acknowledged record against the final leaders' logs.
pub fn at_end(w: &World) -> Result<(), Violation> {
    if w.cfg.unclean {
        return Ok(());
    }
    for ack in &w.history.acks {
        let Some(leader) = acting_leader(w, ack.partition) else {
            // leader_elected reports a partition without a leader.
            continue;
        };
        let log = &w.broker(leader).parts[&ack.partition].log;
        let found = log.get(ack.offset);
        if found.is_none_or(|r| r.payload != ack.payload) {
            return Err(Violation::new(
                "acked_writes",
                w.now,
                format!(
                    "partition {} offset {}: payload {} acknowledged at {} ms, but leader {} has {:?}",
                    ack.partition, ack.offset, ack.payload, ack.at_ms, leader, found
                ),
            ));
        }
    }
    Ok(())
}
