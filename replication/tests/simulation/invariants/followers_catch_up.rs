//! Invariant 5: no follower stuck. Within `catch_up_bound_ms` of faults healing (producers
//! have stopped), every replica's log reaches its leader's end and the leader's high
//! watermark reaches it too; so it stays to the end.

use super::leader_elected::describe;
use super::{acting_leader, partitions, Violation};
use crate::world::World;

/// Whether the bound was checked.
#[derive(Debug, Default)]
pub struct FollowersCatchUp {
    checked: bool,
}

impl FollowersCatchUp {
    /// Checks once, at the bound.
    pub fn on_step(&mut self, w: &World) -> Result<(), Violation> {
        if self.checked || w.now < w.cfg.fault_phase_ms + w.cfg.catch_up_bound_ms {
            return Ok(());
        }
        self.checked = true;
        check(w)
    }

    /// Checks again at the end.
    pub fn at_end(&self, w: &World) -> Result<(), Violation> {
        check(w)
    }
}

fn check(w: &World) -> Result<(), Violation> {
    for i in partitions(w) {
        let Some(leader) = acting_leader(w, i) else {
            continue;
        };
        let lp = &w.broker(leader).parts[&i];
        let end = lp.log.log_end();
        let stuck = if lp.log.high_watermark() < end {
            Some(format!("leader {leader}'s high watermark"))
        } else {
            w.brokers
                .iter()
                .filter(|b| b.id != leader)
                .find(|b| b.parts.get(&i).is_some_and(|p| p.log.log_end() != end))
                .map(|b| format!("replica {}", b.id))
        };
        if let Some(who) = stuck {
            return Err(Violation::new(
                "followers_catch_up",
                w.now,
                format!(
                    "partition {i}: {who} has not reached the leader's end {end} {} ms after faults healed: {}",
                    w.now - w.cfg.fault_phase_ms,
                    describe(w, i)
                ),
            ));
        }
    }
    Ok(())
}
