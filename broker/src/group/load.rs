//! Taking on and giving up `__consumer_offsets` partitions, as Kafka's `CoordinatorRuntime`
//! does (`scheduleLoadOperation`, `scheduleUnloadOperation`; issue 22 item 7).
//!
//! After each metadata image the reconciler calls [`GroupCoordinator::follow_leadership`]:
//! - a partition this node newly leads gets a [`Load`], which the caller runs on a blocking
//!   thread of its own, so neither requests nor the reconciler wait on a replay; requests for
//!   its groups meanwhile answer COORDINATOR_LOAD_IN_PROGRESS;
//! - a partition already loaded is kept when only its leader epoch moved and the log holds
//!   nothing the shard has not seen (no other leader wrote in between): its live members and
//!   waiting requests stay;
//! - a load that fails (a record that does not decode, a read error) marks the partition
//!   failed, answering NOT_COORDINATOR as Kafka's FAILED state does, until a new leader epoch
//!   loads it again; a load that stops without an outcome (its thread panicked) counts as
//!   failed;
//! - a partition no longer led here (leadership moved, the replica left this node, the topic
//!   went) is unloaded: its groups are no longer listed, its timers stop, and its waiting
//!   requests are answered NOT_COORDINATOR.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use sluice_storage::record::{records_section, RecordIter};
use sluice_storage::{LeaderEpoch, Offset, ReadOptions, TopicPartition};

use super::coordinator::GroupCoordinator;
use super::records::OffsetsRecord;
use super::shard::{GroupShard, Now};
use super::{GroupConfig, OFFSETS_TOPIC};
use crate::error::BrokerError;
use crate::replica_manager::Partition;

/// Where one offsets partition led here stands, at the leader epoch it was taken on with.
pub(super) enum Slot {
    /// Being replayed by the load numbered `token`.
    Loading { epoch: i32, token: u64 },
    /// Taking requests.
    Active {
        epoch: i32,
        shard: Arc<Mutex<GroupShard>>,
    },
    /// The load failed: NOT_COORDINATOR until a newer epoch loads it again.
    Failed { epoch: i32 },
}

/// Numbers loads, so the end of one overtaken by a newer decision is told apart.
static NEXT_LOAD: AtomicU64 = AtomicU64::new(1);

/// A partition to replay, off the request path ([`Load::run`]). Dropped without running, it
/// marks the partition failed rather than leave it loading for good.
pub struct Load {
    coordinator: Arc<GroupCoordinator>,
    part: Arc<Partition>,
    epoch: i32,
    token: Option<u64>,
}

impl Load {
    /// The offsets partition this load replays.
    pub fn partition(&self) -> i32 {
        self.part.tp.partition
    }

    /// Replays the partition into a fresh shard, which then takes requests unless leadership
    /// moved on meanwhile.
    pub fn run(mut self) {
        let result = replay(&self.part, self.coordinator.config());
        if let Err(BrokerError::Storage(e)) = &result {
            self.coordinator.rm.storage_error(e);
        }
        self.finish(result);
        self.forget_deleted_topics();
    }

    /// Topics deleted while the partition was not loaded here, or while it loaded (the
    /// reconciler does not wait for loads): their offsets are tombstoned now, as Kafka runs
    /// the deletion it queued for a loading partition once the load ends.
    fn forget_deleted_topics(&self) {
        let p = self.part.tp.partition;
        let shard = match self.coordinator.shards.read().get(&p) {
            Some(Slot::Active { epoch, shard }) if *epoch == self.epoch => Arc::clone(shard),
            _ => return,
        };
        let rm = &self.coordinator.rm;
        let mut s = shard.lock();
        let records = s.delete_topics(&|topic| rm.topic(topic).is_none());
        if !records.is_empty() {
            tracing::info!(
                partition = p,
                records = records.len(),
                "removing the offsets of topics deleted before the load"
            );
            self.coordinator.append_unawaited(&mut s, records);
        }
    }

    fn finish(&mut self, result: Result<GroupShard, BrokerError>) {
        if let Some(token) = self.token.take() {
            self.coordinator
                .finish_load(self.part.tp.partition, token, self.epoch, result);
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.finish(Err(BrokerError::Metadata(
            "the load stopped before its end".into(),
        )));
    }
}

impl GroupCoordinator {
    /// Matches the loaded partitions to those this node leads now: unloads the others and
    /// returns the loads to run (each on a thread of its own).
    pub fn follow_leadership(self: &Arc<Self>) -> Vec<Load> {
        let node = self.rm.node_id();
        let led: Vec<(Arc<Partition>, i32)> = self
            .rm
            .topic(OFFSETS_TOPIC)
            .map(|t| {
                t.partitions
                    .iter()
                    .flatten()
                    .filter_map(|p| {
                        let r = p.replica();
                        (r.leader == node).then(|| (Arc::clone(p), r.leader_epoch.0))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let gone: Vec<i32> = self
            .shards
            .read()
            .keys()
            .filter(|p| !led.iter().any(|(l, _)| l.tp.partition == **p))
            .copied()
            .collect();
        for p in gone {
            self.unload_partition(p);
        }
        led.into_iter()
            .filter_map(|(part, epoch)| self.elected(part, epoch))
            .collect()
    }

    /// This node leads `part` at `epoch`: a load to run, unless the partition is loaded (or
    /// loading, or failed) at this epoch already, or loaded and unchanged since. A shard's lock
    /// is never taken under the map's: what the map held is looked at again after it, and the
    /// decision made afresh if a load ended meanwhile.
    fn elected(self: &Arc<Self>, part: Arc<Partition>, epoch: i32) -> Option<Load> {
        let p = part.tp.partition;
        loop {
            let loaded = match self.shards.read().get(&p) {
                Some(Slot::Loading { epoch: e, .. } | Slot::Failed { epoch: e }) if *e >= epoch => {
                    return None
                }
                Some(Slot::Active { epoch: e, .. }) if *e >= epoch => return None,
                Some(Slot::Active { epoch: e, shard }) => Some((*e, Arc::clone(shard))),
                Some(Slot::Loading { .. } | Slot::Failed { .. }) | None => None,
            };
            let unchanged = loaded.as_ref().is_some_and(|(e, shard)| {
                let seen = shard.lock().log_end;
                // No other leader wrote since this shard's last append: the log ends where
                // the shard's view does, and its last record is of the shard's epoch or
                // older (not one of another leader's that replaced it).
                part.log.offsets().log_end.0 == seen
                    && (seen == 0
                        || part
                            .log
                            .epoch_of(Offset(seen - 1))
                            .is_some_and(|last| last <= LeaderEpoch(*e)))
            });
            let mut shards = self.shards.write();
            let same = match (shards.get(&p), &loaded) {
                (Some(Slot::Active { shard, .. }), Some((_, seen))) => Arc::ptr_eq(shard, seen),
                (Some(Slot::Active { .. }), None) | (None, Some(_)) => false,
                (Some(Slot::Loading { .. } | Slot::Failed { .. }), Some(_)) => false,
                (Some(Slot::Loading { epoch: e, .. } | Slot::Failed { epoch: e }), None) => {
                    *e < epoch
                }
                (None, None) => true,
            };
            if !same {
                continue;
            }
            if unchanged {
                if let Some(Slot::Active { epoch: e, .. }) = shards.get_mut(&p) {
                    *e = epoch;
                }
                tracing::info!(partition = p, epoch, "consumer groups already loaded");
                return None;
            }
            let token = NEXT_LOAD.fetch_add(1, Ordering::Relaxed);
            let replaced = shards.insert(p, Slot::Loading { epoch, token });
            drop(shards);
            if let Some(Slot::Active { shard, .. }) = replaced {
                // Written to by another leader since: replayed again from the log.
                shard.lock().unload();
            }
            tracing::info!(partition = p, epoch, "loading consumer groups");
            return Some(Load {
                coordinator: Arc::clone(self),
                part,
                epoch,
                token: Some(token),
            });
        }
    }

    /// A load ended: its shard takes requests, or the partition is marked failed, if no
    /// newer decision overtook the load.
    pub(super) fn finish_load(
        &self,
        p: i32,
        token: u64,
        epoch: i32,
        result: Result<GroupShard, BrokerError>,
    ) {
        let mut shards = self.shards.write();
        if !matches!(shards.get(&p), Some(Slot::Loading { token: t, .. }) if *t == token) {
            tracing::info!(
                partition = p,
                epoch,
                "a load overtaken by a leadership change"
            );
            return;
        }
        match result {
            Ok(shard) => {
                tracing::info!(
                    partition = p,
                    epoch,
                    groups = shard.groups.len(),
                    "took on consumer groups"
                );
                let shard = Arc::new(Mutex::new(shard));
                shards.insert(p, Slot::Active { epoch, shard });
            }
            Err(e) => {
                tracing::error!(partition = p, epoch, error = %e, "loading consumer groups failed; NOT_COORDINATOR until a new leader epoch");
                shards.insert(p, Slot::Failed { epoch });
            }
        }
    }

    /// Gives up the groups of offsets partition `p` (another broker leads it now): waiting
    /// requests are answered NOT_COORDINATOR and members find the new coordinator.
    pub fn unload_partition(&self, p: i32) {
        let slot = self.shards.write().remove(&p);
        if let Some(Slot::Active { shard, .. }) = slot {
            let mut s = shard.lock();
            let groups = s.groups.len();
            s.unload();
            tracing::info!(partition = p, groups, "gave up consumer groups");
        }
    }
}

/// Replays offsets partition `part` from its log start to its end into a fresh shard.
fn replay(part: &Partition, config: &GroupConfig) -> Result<GroupShard, BrokerError> {
    let tp: &TopicPartition = &part.tp;
    let fail = |e: String| BrokerError::Metadata(format!("{tp}: {e}"));
    let mut shard = GroupShard::new(tp.partition, config.clone());
    let now = Now::current();
    let mut at = part.log.offsets().log_start;
    let end = part.log.offsets().log_end;
    let (mut loaded, mut skipped) = (0usize, 0usize);
    while at < end {
        let data = part.log.read(&ReadOptions {
            from: at,
            max_bytes: 8 << 20,
            max_offset: None,
            min_one_batch: true,
        })?;
        if data.records.is_empty() {
            break;
        }
        for (pos, h) in sluice_storage::batch::BatchIter::new(&data.records) {
            at = Offset(h.next_offset());
            if h.is_control() {
                continue;
            }
            let (_, body) = records_section(&data.records[pos..pos + h.size()], 64 << 20)
                .map_err(|e| fail(e.to_string()))?;
            for r in RecordIter::new(&body, h.record_count.max(0) as usize) {
                let r = r.map_err(|e| fail(e.to_string()))?;
                let Some(key) = r.key else {
                    return Err(fail(format!("a record without a key at {}", h.base_offset)));
                };
                match OffsetsRecord::decode_loaded(key, r.value).map_err(fail)? {
                    Some(record) => {
                        loaded += 1;
                        shard.replay(record, now);
                    }
                    None => skipped += 1,
                }
            }
        }
    }
    if skipped > 0 {
        tracing::warn!(partition = %tp, skipped, "skipped records of types Sluice does not read");
    }
    shard.log_end = end.0;
    tracing::debug!(partition = %tp, records = loaded, "replayed");
    Ok(shard)
}
