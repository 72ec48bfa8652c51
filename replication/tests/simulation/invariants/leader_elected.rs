//! Invariant 4: once faults heal (every broker running, every link up), every partition
//! gets a leader, acting as such, within `leader_bound_ms`, and has one at the end.

use std::collections::BTreeMap;

use super::{acting_leader, partitions, Violation};
use crate::world::World;

/// When each partition first had an acting leader after healing.
#[derive(Debug, Default)]
pub struct LeaderElected {
    led_since_heal: BTreeMap<i32, i64>,
    checked: bool,
}

impl LeaderElected {
    /// Notes leaders after healing; fails at the bound for a partition that had none.
    pub fn on_step(&mut self, w: &World) -> Result<(), Violation> {
        if !w.healed {
            return Ok(());
        }
        for i in partitions(w) {
            if acting_leader(w, i).is_some() {
                self.led_since_heal.entry(i).or_insert(w.now);
            }
        }
        if !self.checked && w.now >= w.cfg.fault_phase_ms + w.cfg.leader_bound_ms {
            self.checked = true;
            let parts = partitions(w);
            if parts.is_empty() {
                return Err(Violation::new(
                    "leader_elected",
                    w.now,
                    "the topic was never created".into(),
                ));
            }
            for i in parts {
                if !self.led_since_heal.contains_key(&i) {
                    return Err(Violation::new(
                        "leader_elected",
                        w.now,
                        format!(
                            "partition {i} has had no acting leader for {} ms after faults healed: {}",
                            w.cfg.leader_bound_ms,
                            describe(w, i)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every partition has an acting leader at the end.
    pub fn at_end(&self, w: &World) -> Result<(), Violation> {
        for i in partitions(w) {
            if acting_leader(w, i).is_none() {
                return Err(Violation::new(
                    "leader_elected",
                    w.now,
                    format!(
                        "partition {i} ends without an acting leader: {}",
                        describe(w, i)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The controller's and the brokers' view of partition `i`.
pub fn describe(w: &World, i: i32) -> String {
    let image = &w.controller.image;
    let p = image
        .topic_by_name(crate::controller::TOPIC)
        .and_then(|t| t.partitions.get(i as usize));
    let mut s = format!("controller: {p:?}; brokers:");
    for b in &w.brokers {
        let reg = image.brokers.get(&b.id).map(|r| (r.epoch, r.fenced));
        s.push_str(&format!(
            " [{} alive={} epoch={:?} registered={:?} life={:?}",
            b.id, b.alive, b.broker_epoch, reg, b.life
        ));
        if let Some(p) = b.parts.get(&i) {
            s.push_str(&format!(
                " leader={} epoch={} isr={:?} end={} hw={} truncating={}",
                p.r.leader,
                p.r.leader_epoch,
                p.r.isr,
                p.log.log_end(),
                p.log.high_watermark(),
                p.r.needs_truncation
            ));
        }
        s.push(']');
    }
    s
}
