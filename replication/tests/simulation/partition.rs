//! One hosted partition on one broker: its log and its replica state, mirroring
//! `Partition` and `Replica` in broker/src/replica_manager.rs function by function (each
//! says which). The pure rules are the real ones from `sluice_replication`.

use sluice_replication::image::{self, NO_LEADER};
use sluice_replication::isr::{self, IsrTracker, LeaderLog};
use sluice_replication::pending_isr::{self, AfterAnswer, AlterIsrAnswer, PendingIsr};
use sluice_storage::{LeaderEpoch, Offset};

use crate::config::Mutations;
use crate::log::{Record, SimLog};

/// Kafka error codes the data path answers with.
pub mod codes {
    /// OFFSET_OUT_OF_RANGE
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    /// NOT_LEADER_OR_FOLLOWER
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    /// REQUEST_TIMED_OUT
    pub const REQUEST_TIMED_OUT: i16 = 7;
    /// NOT_ENOUGH_REPLICAS
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    /// FENCED_LEADER_EPOCH
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    /// UNKNOWN_LEADER_EPOCH
    pub const UNKNOWN_LEADER_EPOCH: i16 = 76;
    /// UNKNOWN_TOPIC_OR_PARTITION
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
}

/// `replica_manager::Replica`: this node's part in the partition, as its image last said.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The leader, or -1.
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The partition epoch.
    pub partition_epoch: i32,
    /// Assigned replicas.
    pub replicas: Vec<i32>,
    /// The committed ISR as the image says.
    pub isr: Vec<i32>,
    /// While leading: followers' progress.
    pub followers: Option<IsrTracker>,
    /// While leading: the log end when it became leader.
    pub epoch_start: Option<i64>,
    /// An ISR change sent to the controller, outcome unknown.
    pub pending_isr: Option<PendingIsr>,
    next_isr_change: u64,
    /// A follower that has not truncated to its new leader yet.
    pub needs_truncation: bool,
}

/// What a follower's fetch says (`replica_manager::FollowerFetch`).
#[derive(Debug, Clone, Copy)]
pub struct FollowerFetch {
    /// The follower.
    pub replica: i32,
    /// Its broker epoch, -1 if none.
    pub broker_epoch: i64,
    /// Its log end.
    pub fetch_offset: i64,
    /// Its log start.
    pub log_start_offset: i64,
    /// The epoch it follows at, -1 if none.
    pub current_leader_epoch: i32,
}

/// One hosted partition (`replica_manager::Partition`).
#[derive(Debug, Clone)]
pub struct Partition {
    /// The log (outlives the process: see `SimLog::crash`).
    pub log: SimLog,
    /// Volatile replica state, rebuilt from the image by a new process.
    pub r: Replica,
}

/// `replica_manager::check_epoch`.
pub fn check_epoch(client: i32, current: i32) -> Result<(), i16> {
    if client < 0 || client == current {
        Ok(())
    } else if client < current {
        Err(codes::FENCED_LEADER_EPOCH)
    } else {
        Err(codes::UNKNOWN_LEADER_EPOCH)
    }
}

impl Partition {
    /// `ReplicaManager::host`: a log opened by this process, replica state not yet known.
    pub fn host(mut log: SimLog) -> Partition {
        log.reopen();
        Partition {
            log,
            r: Replica {
                leader: NO_LEADER,
                leader_epoch: -1,
                partition_epoch: -1,
                replicas: Vec::new(),
                isr: Vec::new(),
                followers: None,
                epoch_start: None,
                pending_isr: None,
                next_isr_change: 0,
                needs_truncation: false,
            },
        }
    }

    /// `Partition::leader_epoch_for`.
    pub fn leader_epoch_for(&self, node: i32, client_epoch: i32) -> Result<i32, i16> {
        check_epoch(client_epoch, self.r.leader_epoch)?;
        if self.r.leader != node {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        }
        Ok(self.r.leader_epoch)
    }

    /// `Partition::on_follower_fetch`.
    pub fn on_follower_fetch(
        &mut self,
        node: i32,
        fetch: &FollowerFetch,
        registered_epoch: Option<i64>,
        now_ms: i64,
        m: &Mutations,
    ) -> Result<(), i16> {
        check_epoch(fetch.current_leader_epoch, self.r.leader_epoch)?;
        if self.r.leader != node {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        }
        if !self.r.replicas.contains(&fetch.replica) || fetch.replica == node {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        }
        if !isr::follower_fetch_accepted(fetch.broker_epoch, registered_epoch) {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        }
        let end = self.log.log_end();
        if let Some(t) = self.r.followers.as_mut() {
            if fetch.fetch_offset <= end {
                t.on_fetch(
                    fetch.replica,
                    Offset(fetch.fetch_offset),
                    Offset(end),
                    now_ms,
                );
            }
            t.on_log_start(fetch.replica, Offset(fetch.log_start_offset));
            t.on_broker_epoch(fetch.replica, fetch.broker_epoch);
        }
        self.advance_high_watermark(m);
        Ok(())
    }

    /// The ISR the high watermark counts: the committed one plus replicas a pending change
    /// adds (Kafka's maximal ISR), as `advance_high_watermark` builds it.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.r.isr.clone();
        if let Some(p) = &self.r.pending_isr {
            isr.extend(p.isr.iter().filter(|x| !self.r.isr.contains(x)));
        }
        isr
    }

    /// `Partition::advance_high_watermark`: the lowest log end over the maximal ISR, never
    /// moving back.
    pub fn advance_high_watermark(&mut self, m: &Mutations) {
        let Some(t) = &self.r.followers else { return };
        let isr = self.maximal_isr();
        let end = self.log.log_end();
        let hw = if m.unknown_follower_counts_as_caught_up {
            // The old bug: an ISR follower not heard from counts as having everything.
            Some(
                isr.iter()
                    .filter(|r| **r != self.r.leader)
                    .map(|r| t.log_end_offset(*r).map_or(end, |o| o.0))
                    .fold(end, i64::min),
            )
        } else {
            t.high_watermark(&isr, Offset(end)).map(|o| o.0)
        };
        let Some(hw) = hw else { return };
        if hw > self.log.high_watermark() {
            self.log.set_high_watermark(hw);
        }
    }

    /// `Partition::isr_change_to_propose`.
    pub fn isr_change_to_propose(
        &mut self,
        now_ms: i64,
        eligible: impl Fn(i32, Option<i64>) -> bool,
    ) -> Option<PendingIsr> {
        if self.r.pending_isr.is_some() {
            return None;
        }
        let leader = LeaderLog {
            log_end: Offset(self.log.log_end()),
            high_watermark: Offset(self.log.high_watermark()),
            epoch_start: Offset(self.r.epoch_start?),
        };
        let isr =
            self.r
                .followers
                .as_ref()?
                .proposed_isr(&self.r.isr, &leader, now_ms, eligible)?;
        self.r.next_isr_change += 1;
        let change = PendingIsr {
            id: self.r.next_isr_change,
            leader_epoch: LeaderEpoch(self.r.leader_epoch),
            partition_epoch: self.r.partition_epoch,
            isr,
        };
        self.r.pending_isr = Some(change.clone());
        Some(change)
    }

    /// `Partition::isr_change_answered`.
    pub fn isr_change_answered(
        &mut self,
        id: u64,
        answer: AlterIsrAnswer,
        m: &Mutations,
    ) -> AfterAnswer {
        let mut after = pending_isr::after_answer(self.r.pending_isr.as_ref(), id, answer);
        if m.forget_pending_isr_on_timeout && after == AfterAnswer::Retry {
            after = AfterAnswer::Revert;
        }
        if after == AfterAnswer::Revert {
            self.r.pending_isr = None;
        }
        after
    }

    /// `Partition::mark_needs_truncation`.
    pub fn mark_needs_truncation(&mut self, leader_epoch: i32) {
        if self.r.leader_epoch == leader_epoch && self.r.followers.is_none() {
            self.r.needs_truncation = true;
        }
    }

    /// `Partition::truncate_as_follower`.
    pub fn truncate_as_follower(&mut self, leader_epoch: i32, offset: i64, done: bool) -> bool {
        if self.r.leader_epoch != leader_epoch
            || !self.r.needs_truncation
            || self.r.followers.is_some()
        {
            return false;
        }
        self.log.truncate_to(offset);
        if done {
            self.r.needs_truncation = false;
        }
        true
    }

    /// `Partition::restart_as_follower`.
    pub fn restart_as_follower(&mut self, leader_epoch: i32, offset: i64) -> bool {
        if self.r.leader_epoch != leader_epoch
            || self.r.needs_truncation
            || self.r.followers.is_some()
        {
            return false;
        }
        self.log.truncate_fully_and_start_at(offset);
        true
    }

    /// `ReplicaManager::append_replicated`.
    pub fn append_replicated(
        &mut self,
        fetched_at_epoch: i32,
        records: &[Record],
        leader_high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<bool, String> {
        if self.r.leader_epoch != fetched_at_epoch
            || self.r.needs_truncation
            || self.r.followers.is_some()
        {
            return Ok(false);
        }
        self.log.append_replicated(records)?;
        let end = self.log.log_end();
        self.log.set_high_watermark(leader_high_watermark.min(end));
        // DeleteRecords / retention on the leader: not simulated, the log start stays.
        let _ = leader_log_start;
        Ok(true)
    }

    /// `ReplicaManager::append` for an acks=all produce: the leader checks
    /// `min.insync.replicas` against the committed ISR first, appends at its epoch, and
    /// advances the high watermark. Returns the epoch and the last offset.
    pub fn append_as_leader(
        &mut self,
        node: i32,
        payloads: &[u64],
        min_insync: usize,
        m: &Mutations,
    ) -> Result<(i32, i64), i16> {
        let epoch = self.leader_epoch_for(node, -1)?;
        if self.r.isr.len() < min_insync {
            return Err(codes::NOT_ENOUGH_REPLICAS);
        }
        let (_, last) = self.log.append_as_leader(epoch, payloads);
        self.advance_high_watermark(m);
        Ok((epoch, last))
    }

    /// `Partition::update`: takes the image's view of the partition; returns whether
    /// leadership changed.
    pub fn update(
        &mut self,
        node: i32,
        p: &image::Partition,
        lag_max_ms: i64,
        now_ms: i64,
        m: &Mutations,
    ) -> bool {
        let r = &mut self.r;
        let changed = r.leader != p.leader || r.leader_epoch != p.leader_epoch.0;
        if r.pending_isr
            .as_ref()
            .is_some_and(|c| pending_isr::settled_by_image(c, p.leader_epoch, p.partition_epoch))
        {
            r.pending_isr = None;
        }
        let replicas_changed = r.replicas != p.replicas;
        r.replicas = p.replicas.clone();
        r.isr = p.isr.clone();
        r.partition_epoch = p.partition_epoch;
        if !changed {
            if r.leader == node {
                if replicas_changed {
                    if let Some(t) = r.followers.as_mut() {
                        t.set_replicas(&p.replicas, now_ms);
                    }
                }
                self.advance_high_watermark(m);
            }
            return false;
        }
        r.leader = p.leader;
        r.leader_epoch = p.leader_epoch.0;
        r.pending_isr = None;
        if p.leader == node {
            r.followers = Some(IsrTracker::new(node, &p.replicas, lag_max_ms, now_ms));
            r.needs_truncation = false;
            self.log.assign_epoch(p.leader_epoch.0);
            self.r.epoch_start = Some(self.log.log_end());
            self.advance_high_watermark(m);
        } else {
            r.followers = None;
            r.epoch_start = None;
            r.needs_truncation = p.leader != NO_LEADER && !m.skip_truncation;
        }
        true
    }
}
