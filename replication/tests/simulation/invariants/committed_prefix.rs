//! Invariant 2: every replica's committed prefix (its log below its high watermark) agrees
//! with what was committed before. At each step each running replica's newly committed
//! records are compared with (or extend) the partition's committed log; at the end the
//! leader's log must hold the whole committed log. Off for runs that allow unclean
//! election.

use std::collections::BTreeMap;

use super::{acting_leader, partitions, Violation};
use crate::log::Record;
use crate::world::World;

/// The committed log of each partition and how far each replica was verified.
#[derive(Debug, Default)]
pub struct CommittedPrefix {
    /// Partition → records at offsets 0.. known committed.
    pub committed: BTreeMap<i32, Vec<Record>>,
    /// (broker, partition) → (incarnation, truncation count, verified up to).
    verified: BTreeMap<(i32, i32), (u64, u64, i64)>,
}

impl CommittedPrefix {
    /// The committed record at `offset` of partition `i`, if known.
    pub fn get(&self, i: i32, offset: i64) -> Option<&Record> {
        self.committed
            .get(&i)
            .and_then(|c| c.get(usize::try_from(offset).ok()?))
    }

    /// Verifies what each replica committed since the last step.
    pub fn on_step(&mut self, w: &World) -> Result<(), Violation> {
        if w.cfg.unclean {
            return Ok(());
        }
        for b in &w.brokers {
            if !b.alive {
                continue;
            }
            for (i, p) in &b.parts {
                let key = (b.id, *i);
                let stamp = (b.incarnation, p.log.truncations);
                let from = match self.verified.get(&key) {
                    Some((inc, tr, upto)) if (*inc, *tr) == stamp => *upto,
                    _ => p.log.log_start(),
                };
                let hw = p.log.high_watermark();
                let committed = self.committed.entry(*i).or_default();
                let mut upto = from;
                for off in from.max(p.log.log_start())..hw {
                    let Some(r) = p.log.get(off) else { break };
                    match committed.get(off as usize) {
                        Some(c) if c == r => {}
                        Some(c) => {
                            return Err(Violation::new(
                                "committed_prefix",
                                w.now,
                                format!(
                                    "broker {} partition {i} holds {r:?} below its high watermark {hw}, but {c:?} was committed there",
                                    b.id
                                ),
                            ))
                        }
                        None if committed.len() as i64 == off => committed.push(*r),
                        None => break,
                    }
                    upto = off + 1;
                }
                self.verified.insert(key, (stamp.0, stamp.1, upto));
            }
        }
        Ok(())
    }

    /// The final leaders' logs hold every committed record.
    pub fn at_end(&self, w: &World) -> Result<(), Violation> {
        if w.cfg.unclean {
            return Ok(());
        }
        for i in partitions(w) {
            let Some(leader) = acting_leader(w, i) else {
                continue;
            };
            let log = &w.broker(leader).parts[&i].log;
            for c in self.committed.get(&i).into_iter().flatten() {
                if log.get(c.offset) != Some(c) {
                    return Err(Violation::new(
                        "committed_prefix",
                        w.now,
                        format!(
                            "partition {i}: {c:?} was committed, but the final leader {leader} has {:?}",
                            log.get(c.offset)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
