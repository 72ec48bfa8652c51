//! One consumer group's state under the classic rebalance protocol (KIP-62, KIP-345, KIP-394).
//!
//! Pure state plus the reply channels of requests waiting on it (JoinGroup until the rebalance
//! completes, SyncGroup until the leader assigns). A failed send on such a channel only means
//! the requester's connection closed, so those results are deliberately dropped. Time is passed in, never read, so the
//! coordinator's timers are driven by `GroupCoordinator::tick`.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Kafka's group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assigned and running.
    Stable,
}

impl GroupState {
    /// Kafka's name for the state (ListGroups, DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    /// Error code (0 = none).
    pub error: i16,
    /// Generation joined.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// The joining member's id.
    pub member_id: String,
    /// For the leader only: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub(super) fn error(e: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: e.code(),
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinResult::default()
        }
    }
}

/// The answer to a SyncGroup: error code and the member's assignment.
pub type SyncResult = (i16, Bytes);

/// A group member.
#[derive(Debug)]
pub struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout_ms: i32,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) last_seen: Instant,
    pub(super) join_waiter: Option<oneshot::Sender<JoinResult>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    pub(super) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A consumer group.
#[derive(Debug)]
pub struct Group {
    pub(super) id: String,
    pub(super) state: GroupState,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) generation: i32,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined (KIP-394).
    pub(super) pending: HashSet<String>,
    pub(super) rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits out its whole deadline (KIP-134).
    pub(super) initial_delay: bool,
}

impl Group {
    pub(super) fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            pending: HashSet::new(),
            rebalance_deadline: None,
            initial_delay: false,
        }
    }

    /// Moves to PreparingRebalance: members must rejoin before `deadline`; syncs in progress
    /// are told to rejoin.
    pub(super) fn prepare_rebalance(&mut self, deadline: Instant) {
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send((ResponseError::RebalanceInProgress.code(), Bytes::new()));
            }
        }
        if self.state != GroupState::PreparingRebalance {
            self.state = GroupState::PreparingRebalance;
            self.rebalance_deadline = Some(deadline);
        }
    }

    /// True when every member has a JoinGroup waiting.
    pub(super) fn all_joined(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// The first protocol, in the leader's order of preference, that every member supports.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        first.protocols.iter().map(|(n, _)| n.clone()).find(|n| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        })
    }

    /// Ends the join phase: members that did not rejoin are dropped, the generation advances,
    /// and every waiting JoinGroup is answered. Returns true if the group changed generation.
    pub(super) fn complete_join(&mut self) -> bool {
        self.members.retain(|_, m| m.join_waiter.is_some());
        self.rebalance_deadline = None;
        self.initial_delay = false;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return true;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect();
        self.state = GroupState::CompletingRebalance;
        let now = Instant::now();
        for m in self.members.values_mut() {
            m.last_seen = now;
            m.assignment = Bytes::new();
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult {
                    error: 0,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
        true
    }

    /// Removes a member; the group rebalances if others remain, or empties.
    pub(super) fn remove_member(&mut self, id: &str, now: Instant) {
        if let Some(m) = self.members.remove(id) {
            if let Some(w) = m.join_waiter {
                let _ = w.send(JoinResult::error(ResponseError::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter {
                let _ = w.send((ResponseError::UnknownMemberId.code(), Bytes::new()));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        match self.state {
            GroupState::Empty => {}
            _ if self.members.is_empty() => {
                self.generation += 1;
                self.state = GroupState::Empty;
                self.protocol = None;
                self.rebalance_deadline = None;
            }
            GroupState::PreparingRebalance => {}
            GroupState::CompletingRebalance | GroupState::Stable => {
                let timeout = self
                    .members
                    .values()
                    .map(|m| m.rebalance_timeout_ms)
                    .max()
                    .unwrap_or(0);
                self.prepare_rebalance(
                    now + std::time::Duration::from_millis(timeout.max(0) as u64),
                );
            }
        }
    }
}
