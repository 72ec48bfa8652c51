//! The checker over a run's history and state, one invariant per file:
//! - [`acked_writes`]: no acknowledged acks=all write is lost;
//! - [`committed_prefix`]: every replica's log below its high watermark agrees with what
//!   was committed, and the final leader's log extends it;
//! - [`high_watermark`]: no read above the high watermark, and a leader's high watermark
//!   never exceeds what its in-sync replicas hold;
//! - [`leader_elected`]: after faults heal, every partition gets a leader within a bound;
//! - [`followers_catch_up`]: after faults heal, every replica reaches its leader's end
//!   within a bound.
//!
//! Checks run at every step (`on_step`) and at the end (`at_end`); the first violation
//! ends the run.

pub mod acked_writes;
pub mod committed_prefix;
pub mod followers_catch_up;
pub mod high_watermark;
pub mod leader_elected;

use crate::controller::TOPIC;
use crate::world::World;

/// An invariant that failed.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Which (the file's name).
    pub invariant: &'static str,
    /// When.
    pub at_ms: i64,
    /// What was seen.
    pub detail: String,
}

impl Violation {
    /// A violation of `invariant` at `at_ms`.
    pub fn new(invariant: &'static str, at_ms: i64, detail: String) -> Violation {
        Violation {
            invariant,
            at_ms,
            detail,
        }
    }
}

/// The leader acting for partition `i`: the controller's leader, running, and leading at
/// the committed leader epoch by its own replica state.
pub fn acting_leader(w: &World, i: i32) -> Option<i32> {
    let t = w.controller.image.topic_by_name(TOPIC)?;
    let p = t.partitions.get(i as usize)?;
    if p.leader < 1 {
        return None;
    }
    let b = w.broker(p.leader);
    let part = b.parts.get(&i)?;
    (b.alive
        && part.r.leader == p.leader
        && part.r.leader_epoch == p.leader_epoch.0
        && part.r.followers.is_some())
    .then_some(p.leader)
}

/// Partitions of the topic, once created.
pub fn partitions(w: &World) -> Vec<i32> {
    w.controller
        .image
        .topic_by_name(TOPIC)
        .map_or(Vec::new(), |t| (0..t.partitions.len() as i32).collect())
}

/// Every invariant's state.
#[derive(Debug, Default)]
pub struct Checker {
    committed: committed_prefix::CommittedPrefix,
    reads: high_watermark::HighWatermark,
    leaders: leader_elected::LeaderElected,
    catch_up: followers_catch_up::FollowersCatchUp,
}

impl Checker {
    /// Checks after a step.
    pub fn on_step(&mut self, w: &mut World) -> Result<(), Violation> {
        self.committed.on_step(w)?;
        let consumed = std::mem::take(&mut w.consumed);
        self.reads.on_step(w, &self.committed, consumed)?;
        self.leaders.on_step(w)?;
        self.catch_up.on_step(w)?;
        Ok(())
    }

    /// Checks at the end of the run.
    pub fn at_end(&mut self, w: &World) -> Result<(), Violation> {
        self.leaders.at_end(w)?;
        self.catch_up.at_end(w)?;
        self.committed.at_end(w)?;
        self.reads.at_end(w)?;
        acked_writes::at_end(w)
    }
}
