//! Invariant 3: no read above the high watermark.
//! - Every record a consumer read from a leader (which serves only below its high
//!   watermark) is committed: it matches the committed log at its offset, then or by the
//!   end of the run.
//! - At every step, a leader's high watermark does not exceed what its in-sync replicas
//!   hold: each member of its maximal ISR (and of the controller's ISR at the same leader
//!   epoch) that has run without a restart since that epoch began, lost nothing in a
//!   crash it has not caught up from since, and follows no newer epoch, has a log reaching
//!   the high watermark, with the leader's record just below it.
//!
//! Off for runs that allow unclean election.

use super::committed_prefix::CommittedPrefix;
use super::{acting_leader, Violation};
use crate::controller::TOPIC;
use crate::log::Record;
use crate::world::World;

/// Reads not yet matched against the committed log.
#[derive(Debug, Default)]
pub struct HighWatermark {
    pending: Vec<(i32, Record)>,
}

impl HighWatermark {
    /// Checks this step's reads and every leader's high watermark.
    pub fn on_step(
        &mut self,
        w: &World,
        committed: &CommittedPrefix,
        consumed: Vec<(i32, Vec<Record>)>,
    ) -> Result<(), Violation> {
        if w.cfg.unclean {
            return Ok(());
        }
        for (i, records) in consumed {
            self.pending.extend(records.into_iter().map(|r| (i, r)));
        }
        let mut still = Vec::new();
        for (i, r) in std::mem::take(&mut self.pending) {
            match committed.get(i, r.offset) {
                Some(c) if *c == r => {}
                Some(c) => {
                    return Err(Violation::new(
                        "high_watermark",
                        w.now,
                        format!(
                        "a consumer read {r:?} from partition {i}, but {c:?} is committed there"
                    ),
                    ))
                }
                None => still.push((i, r)),
            }
        }
        self.pending = still;
        self.leaders_within_isr(w)
    }

    fn leaders_within_isr(&self, w: &World) -> Result<(), Violation> {
        let image = &w.controller.image;
        for l in &w.brokers {
            if !l.alive {
                continue;
            }
            for (i, p) in &l.parts {
                if p.r.leader != l.id || p.r.followers.is_none() {
                    continue;
                }
                let hw = p.log.high_watermark();
                if hw == 0 {
                    continue;
                }
                let epoch = p.r.leader_epoch;
                let mut members = p.maximal_isr();
                if let Some(c) = image
                    .topic_by_name(TOPIC)
                    .and_then(|t| t.partitions.get(*i as usize))
                    .filter(|c| c.leader == l.id && c.leader_epoch.0 == epoch)
                {
                    members.extend(c.isr.iter().copied());
                }
                let began = w.epoch_started.get(&(*i, epoch)).copied().unwrap_or(0);
                for m in members {
                    if m == l.id {
                        continue;
                    }
                    let f = w.broker(m);
                    // A replica that lost unflushed records in a crash stays in the ISR
                    // until its lease runs out: the ISR cannot know, and the crash guard
                    // keeps another member holding them (`World::lossy_crash_allowed`).
                    if !f.alive
                        || w.dirty.contains_key(&m)
                        || w.last_down.get(&m).is_some_and(|t| *t >= began)
                    {
                        continue;
                    }
                    let Some(fp) = f.parts.get(i) else { continue };
                    if fp.r.leader_epoch > epoch {
                        continue;
                    }
                    let theirs = fp.log.get(hw - 1);
                    if fp.log.log_end() < hw || theirs != p.log.get(hw - 1) {
                        return Err(Violation::new(
                            "high_watermark",
                            w.now,
                            format!(
                                "leader {} of partition {i} at epoch {epoch} has high watermark {hw}, but in-sync replica {m} ends at {} with {:?} below it (leader has {:?})",
                                l.id,
                                fp.log.log_end(),
                                theirs,
                                p.log.get(hw - 1)
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads still unmatched must be in the final leader's log.
    pub fn at_end(&self, w: &World) -> Result<(), Violation> {
        if w.cfg.unclean {
            return Ok(());
        }
        for (i, r) in &self.pending {
            let Some(leader) = acting_leader(w, *i) else {
                continue;
            };
            let found = w.broker(leader).parts[i].log.get(r.offset);
            if found != Some(r) {
                return Err(Violation::new(
                    "high_watermark",
                    w.now,
                    format!("a consumer read {r:?} from partition {i}, but the final leader {leader} has {found:?}"),
                ));
            }
        }
        Ok(())
    }
}
