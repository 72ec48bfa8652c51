//! One hosted partition: its log and this node's replica state in it, the leader's side
//! (follower progress, the high watermark, ISR changes, ListOffsets) and the follower's
//! (truncation before fetching, appends checked against the leader epoch) under one lock.

use std::sync::Arc;

use parking_lot::Mutex;
use sluice_replication::image::{self, NO_LEADER};
use sluice_replication::isr::{self, IsrTracker, LeaderLog};
use sluice_replication::pending_isr::{self, AfterAnswer, AlterIsrAnswer, PendingIsr};
use sluice_storage::{LeaderEpoch, Log, Offset, StorageError, TopicPartition};
use tokio::sync::Notify;

use crate::error::BrokerError;

/// This node's part in one partition, as the metadata image last said.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The leader's node id, or -1.
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: LeaderEpoch,
    /// Bumped by the controller on every change of the partition.
    pub partition_epoch: i32,
    /// Assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas, as committed.
    pub isr: Vec<i32>,
    /// During a reassignment: replicas joining, not counted in the replication factor.
    pub adding: Vec<i32>,
    /// While this node leads: its followers' progress.
    pub followers: Option<IsrTracker>,
    /// While this node leads: its log end when it became leader, where its epoch starts.
    pub epoch_start: Option<Offset>,
    /// An ISR change sent to the controller whose outcome is not known yet.
    pub pending_isr: Option<PendingIsr>,
    /// Numbers ISR changes, so an answer to an older one is told apart.
    pub(super) next_isr_change: u64,
    /// A follower that has not yet truncated its log to the new leader's.
    pub needs_truncation: bool,
}

/// What a follower's fetch says about it (Fetch v15+ for the broker epoch, KIP-903).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    /// The follower's broker id.
    pub replica: i32,
    /// The broker epoch it registered with, -1 if the fetch carried none.
    pub broker_epoch: i64,
    /// Where it fetches from: its log end.
    pub fetch_offset: Offset,
    /// Its log start.
    pub log_start_offset: Offset,
    /// The leader epoch it believes current (KIP-320), -1 if none.
    pub current_leader_epoch: i32,
}

/// One hosted partition.
#[derive(Debug)]
pub struct Partition {
    /// Topic and index.
    pub tp: TopicPartition,
    /// Its log.
    pub log: Arc<Log>,
    /// Woken after every append and high-watermark advance: long-polling fetches and
    /// acks=all produces wait on it.
    pub appended: Notify,
    pub(super) replica: Mutex<Replica>,
}

impl Partition {
    /// A copy of the replica state.
    pub fn replica(&self) -> Replica {
        self.replica.lock().clone()
    }

    /// The leader epoch if `node` leads, checking a client's epoch (KIP-320) when it sent one.
    pub fn leader_epoch_for(
        &self,
        node: i32,
        client_epoch: i32,
    ) -> Result<LeaderEpoch, BrokerError> {
        let r = self.replica.lock();
        check_epoch(client_epoch, r.leader_epoch)?;
        if r.leader != node {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        Ok(r.leader_epoch)
    }

    /// Records a follower's fetch (its log end and log start) and advances the high
    /// watermark if it can. `registered_epoch` is the follower's broker epoch in the metadata
    /// image: a fetch from an older incarnation, or one naming no incarnation, is refused as
    /// not from a follower.
    pub fn on_follower_fetch(
        &self,
        node: i32,
        fetch: &FollowerFetch,
        registered_epoch: Option<i64>,
        now_ms: i64,
    ) -> Result<(), BrokerError> {
        let mut r = self.replica.lock();
        check_epoch(fetch.current_leader_epoch, r.leader_epoch)?;
        if r.leader != node {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        // Kafka's `followerReplicaOrThrow`: only an assigned replica fetches as a follower.
        if !r.replicas.contains(&fetch.replica) || fetch.replica == node {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        if !isr::follower_fetch_accepted(fetch.broker_epoch, registered_epoch) {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        let end = self.log.offsets().log_end;
        // An offset past this log's end is a follower that has not truncated yet: its records
        // there are not ours, so they count for nothing (the read answers OFFSET_OUT_OF_RANGE).
        let mut log_start_moved = false;
        if let Some(t) = r.followers.as_mut() {
            if fetch.fetch_offset <= end {
                t.on_fetch(fetch.replica, fetch.fetch_offset, end, now_ms);
            }
            log_start_moved = t.log_start_offset(fetch.replica) != fetch.log_start_offset;
            t.on_log_start(fetch.replica, fetch.log_start_offset);
            t.on_broker_epoch(fetch.replica, fetch.broker_epoch);
        }
        self.advance_high_watermark(&r);
        if log_start_moved {
            // DeleteRecords waits for the low watermark.
            self.appended.notify_waiters();
        }
        Ok(())
    }

    /// As leader: the lowest log start offset over this log and the replicas `alive` says
    /// count (DeleteRecords is done when it reaches the requested offset). `None` elsewhere.
    pub fn low_watermark(&self, node: i32, alive: impl Fn(i32) -> bool) -> Option<Offset> {
        let r = self.replica.lock();
        if r.leader != node {
            return None;
        }
        let start = self.log.offsets().log_start;
        Some(
            r.followers
                .as_ref()
                .map_or(start, |t| t.low_watermark(start, alive)),
        )
    }

    /// As leader: the high watermark is the lowest log end over the ISR, counting replicas
    /// being added (Kafka's "maximal ISR"), and never moves back.
    pub(super) fn advance_high_watermark(&self, r: &Replica) {
        let Some(t) = &r.followers else { return };
        let mut isr = r.isr.clone();
        if let Some(p) = &r.pending_isr {
            isr.extend(p.isr.iter().filter(|x| !r.isr.contains(x)));
        }
        let o = self.log.offsets();
        // None: an ISR follower has not fetched from this leader yet, so nothing more is
        // known to be on it.
        let Some(hw) = t.high_watermark(&isr, o.log_end) else {
            return;
        };
        if hw > o.high_watermark {
            self.log.set_high_watermark(hw);
            self.appended.notify_waiters();
        }
    }

    /// As leader: the ISR change to propose to the controller, if the ISR should change and
    /// no change is pending; marks it pending. Only replicas `eligible` says may join are
    /// added: it is given the replica and the broker epoch its fetches carried (Kafka leaves
    /// fenced, shutting-down and re-registered brokers out, KIP-841 and KIP-903).
    pub fn isr_change_to_propose(
        &self,
        now_ms: i64,
        eligible: impl Fn(i32, Option<i64>) -> bool,
    ) -> Option<PendingIsr> {
        let mut r = self.replica.lock();
        if r.pending_isr.is_some() {
            return None;
        }
        let o = self.log.offsets();
        let leader = LeaderLog {
            log_end: o.log_end,
            high_watermark: o.high_watermark,
            epoch_start: r.epoch_start?,
        };
        let isr = r
            .followers
            .as_ref()?
            .proposed_isr(&r.isr, &leader, now_ms, eligible)?;
        r.next_isr_change += 1;
        let change = PendingIsr {
            id: r.next_isr_change,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            isr,
        };
        r.pending_isr = Some(change.clone());
        Some(change)
    }

    /// Takes the answer to ISR change `id`; says whether to send it again
    /// ([`pending_isr::after_answer`]). The change stays pending unless the answer proves
    /// the controller did not make it.
    pub fn isr_change_answered(&self, id: u64, answer: AlterIsrAnswer) -> AfterAnswer {
        let mut r = self.replica.lock();
        let after = pending_isr::after_answer(r.pending_isr.as_ref(), id, answer);
        if after == AfterAnswer::Revert {
            r.pending_isr = None;
            // The replicas it would have added no longer count for the high watermark.
        }
        after
    }

    /// ListOffsets as Kafka's `Partition.fetchOffsetForTimestamp` answers it for a client, if
    /// `node` leads (checking the client's epoch, KIP-320).
    pub fn offset_for(
        &self,
        node: i32,
        client_epoch: i32,
        query: OffsetQuery,
        read_committed: bool,
    ) -> Result<FoundOffset, BrokerError> {
        let (epoch_start, current_epoch) = {
            let r = self.replica.lock();
            check_epoch(client_epoch, r.leader_epoch)?;
            if r.leader != node {
                return Err(BrokerError::NotLeaderOrFollower);
            }
            (r.epoch_start, r.leader_epoch)
        };
        let log = &self.log;
        let o = log.offsets();
        // A client reads up to here; nothing at or past it is answered.
        let last_fetchable = if read_committed {
            o.last_stable
        } else {
            o.high_watermark
        };
        // A new leader's high watermark below the start of its epoch: what it ends up
        // committing is not known yet, so neither is the end (Kafka's OFFSET_NOT_AVAILABLE).
        let lagging = epoch_start.is_some_and(|start| start > o.high_watermark);
        let found = match query {
            OffsetQuery::Latest if lagging => return Err(BrokerError::OffsetNotAvailable),
            OffsetQuery::Latest => Some((-1, last_fetchable)),
            OffsetQuery::Earliest => Some((-1, o.log_start)),
            OffsetQuery::MaxTimestamp => log.max_timestamp()?.map(|t| (t.timestamp, t.offset)),
            OffsetQuery::Timestamp(ts) => log
                .offset_for_timestamp(ts)?
                .map(|t| (t.timestamp, t.offset)),
        };
        let (timestamp, offset) = match found {
            Some(found) if matches!(query, OffsetQuery::Earliest | OffsetQuery::Latest) => found,
            Some((ts, offset)) if offset < last_fetchable => (ts, offset),
            _ if lagging => return Err(BrokerError::OffsetNotAvailable),
            _ => (-1, Offset(-1)),
        };
        // The epoch of the record found, as Kafka answers it: consumers validate their
        // position against it after a leader change (KIP-320). The latest offset is no
        // record yet: Kafka answers it with the leader's current epoch.
        let leader_epoch = if matches!(query, OffsetQuery::Latest) {
            current_epoch
        } else if offset.0 >= 0 {
            log.epoch_of(offset).unwrap_or(LeaderEpoch(-1))
        } else {
            LeaderEpoch(-1)
        };
        Ok(FoundOffset {
            timestamp,
            offset,
            leader_epoch,
        })
    }

    /// Whether this node leads the partition with fewer in-sync replicas than replicas
    /// (`sluice_under_replicated_partitions`).
    pub fn is_under_replicated(&self, node: i32) -> bool {
        let r = self.replica.lock();
        // Kafka's replication factor: a reassignment's joining replicas do not count.
        let replication_factor = r.replicas.len().saturating_sub(r.adding.len());
        r.leader == node && r.isr.len() < replication_factor
    }

    /// As follower at `leader_epoch`: truncate again before fetching (the leader refused our
    /// offset). An answer to a fetch of an older epoch changes nothing: the new epoch's own
    /// truncation has already decided where this log stands.
    pub fn mark_needs_truncation(&self, leader_epoch: LeaderEpoch) {
        let mut r = self.replica.lock();
        if r.leader_epoch == leader_epoch && r.followers.is_none() {
            r.needs_truncation = true;
        }
    }

    /// As follower: the truncation done, fetching may start.
    pub fn truncated(&self, leader_epoch: LeaderEpoch) {
        let mut r = self.replica.lock();
        if r.leader_epoch == leader_epoch {
            r.needs_truncation = false;
        }
    }

    /// As follower still truncating at `leader_epoch`: truncates the log to `offset` (which
    /// trims the epoch cache even when no record goes) and, when `done`, lets fetching
    /// start. Returns false, changing nothing, if the partition has moved on: an answer to
    /// an older epoch's OffsetForLeaderEpoch must not cut records fetched since. The replica
    /// state stays locked throughout, so no leader change interleaves.
    pub fn truncate_as_follower(
        &self,
        leader_epoch: LeaderEpoch,
        offset: Offset,
        done: bool,
    ) -> Result<bool, StorageError> {
        let mut r = self.replica.lock();
        if r.leader_epoch != leader_epoch || !r.needs_truncation || r.followers.is_some() {
            return Ok(false);
        }
        self.log.truncate_to(offset)?;
        if done {
            r.needs_truncation = false;
        }
        Ok(true)
    }

    /// As follower at `leader_epoch`: empties the log and restarts it at `offset`, the
    /// leader's log start beyond this log's end. False, changing nothing, if the partition
    /// has moved on since the fetch that found it.
    pub fn restart_as_follower(
        &self,
        leader_epoch: LeaderEpoch,
        offset: Offset,
    ) -> Result<bool, StorageError> {
        let r = self.replica.lock();
        if r.leader_epoch != leader_epoch || r.needs_truncation || r.followers.is_some() {
            return Ok(false);
        }
        self.log.truncate_fully_and_start_at(offset)?;
        Ok(true)
    }

    /// Takes the image's view of the partition.
    pub(super) fn update(&self, node: i32, p: &image::Partition, lag_max_ms: i64, now_ms: i64) {
        let mut r = self.replica.lock();
        let changed = r.leader != p.leader || r.leader_epoch != p.leader_epoch;
        if r.pending_isr
            .as_ref()
            .is_some_and(|c| pending_isr::settled_by_image(c, p.leader_epoch, p.partition_epoch))
        {
            r.pending_isr = None;
        }
        let replicas_changed = r.replicas != p.replicas;
        let partition_changed = r.partition_epoch != p.partition_epoch;
        r.replicas = p.replicas.clone();
        r.isr = p.isr.clone();
        r.adding = p.adding.clone();
        r.partition_epoch = p.partition_epoch;
        if !changed {
            if r.leader == node {
                if replicas_changed {
                    if let Some(t) = r.followers.as_mut() {
                        t.set_replicas(&p.replicas, now_ms);
                    }
                }
                self.advance_high_watermark(&r);
            }
            if partition_changed {
                // A new ISR: acks=all may now be done or short of min.insync.replicas, and
                // DeleteRecords may no longer wait for a replica that left.
                self.appended.notify_waiters();
            }
            return;
        }
        r.leader = p.leader;
        r.leader_epoch = p.leader_epoch;
        r.pending_isr = None;
        if p.leader == node {
            r.followers = Some(IsrTracker::new(node, &p.replicas, lag_max_ms, now_ms));
            r.needs_truncation = false;
            // Followers asking where an older epoch ended are told: here.
            if let Err(e) = self.log.assign_epoch(p.leader_epoch) {
                tracing::error!(partition = %self.tp, error = %e, "cannot record the new leader epoch");
            }
            r.epoch_start = Some(self.log.offsets().log_end);
            self.advance_high_watermark(&r);
        } else {
            r.followers = None;
            r.epoch_start = None;
            r.needs_truncation = p.leader != NO_LEADER;
        }
        // Waiters re-check their leadership.
        self.appended.notify_waiters();
    }
}

/// What a ListOffsets lookup asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The log start (-2).
    Earliest,
    /// The end a consumer may read to (-1).
    Latest,
    /// The record with the largest timestamp (-3, KIP-734).
    MaxTimestamp,
    /// The first record whose timestamp is at or after this one.
    Timestamp(i64),
}

/// A ListOffsets answer; -1 where there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundOffset {
    /// The record's timestamp.
    pub timestamp: i64,
    /// Its offset.
    pub offset: Offset,
    /// The leader epoch it was written at (-1 if unknown).
    pub leader_epoch: LeaderEpoch,
}

/// KIP-320: a client's epoch (-1 for none) against this replica's.
fn check_epoch(client: i32, current: LeaderEpoch) -> Result<(), BrokerError> {
    let current = current.0;
    if client < 0 || client == current {
        Ok(())
    } else if client < current {
        Err(BrokerError::FencedLeaderEpoch {
            got: client,
            current,
        })
    } else {
        Err(BrokerError::UnknownLeaderEpoch {
            got: client,
            current,
        })
    }
}
