//! One consumer group's state under the classic rebalance protocol (KIP-62, KIP-345, KIP-394).
//!
//! Pure state plus the reply channels of requests waiting on it (JoinGroup until the rebalance
//! completes, SyncGroup until the leader assigns). A failed send on such a channel only means
//! the requester's connection closed, so those results are deliberately dropped. Time is
//! passed in, never read, so the timers are driven by `GroupShard::tick`. A group lives in
//! one `GroupShard` and is only touched under that shard's lock.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::error::GroupError;
use bytes::Bytes;

use super::records::{GroupValue, MemberValue};
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
    pub(super) fn error(e: GroupError, member_id: &str) -> JoinResult {
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
    /// A member as Kafka persists it, with its metadata for `protocol`.
    pub(super) fn to_value(&self, protocol: &str) -> MemberValue {
        MemberValue {
            member_id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            session_timeout_ms: self.session_timeout_ms,
            subscription: self.metadata_for(protocol),
            assignment: self.assignment.clone(),
        }
    }

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
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined, with when they expire
    /// (KIP-394; Kafka's `pendingMembers`): a rebalance waits for them, as they are members
    /// about to join, until they join or their session timeout passes.
    pub(super) pending: HashMap<String, Instant>,
    /// When the group last became Empty (wall clock, ms), as Kafka's `currentStateTimestamp`:
    /// its committed offsets expire `offsets.retention.minutes` after.
    pub(super) empty_since_ms: Option<i64>,
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
            pending: HashMap::new(),
            empty_since_ms: None,
            rebalance_deadline: None,
            initial_delay: false,
        }
    }

    /// The group loaded from its record: Stable with its members if it has any (as Kafka
    /// loads a group), their sessions starting `now`.
    pub(super) fn from_value(id: &str, v: GroupValue, now: Instant) -> Group {
        let mut g = Group::new(id);
        g.generation = v.generation;
        g.protocol_type = Some(v.protocol_type).filter(|t| !t.is_empty());
        g.protocol = v.protocol.clone();
        g.leader = v.leader;
        let protocol = v.protocol.unwrap_or_default();
        for m in v.members {
            g.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    last_seen: now,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        g.state = if g.members.is_empty() {
            g.empty_since_ms = Some(v.current_state_timestamp).filter(|t| *t >= 0);
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        g
    }

    /// The group as Kafka persists it (GroupMetadataValue v3).
    pub(super) fn to_value(&self, now_ms: i64) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: now_ms,
            members: self
                .members
                .values()
                .map(|m| m.to_value(&protocol))
                .collect(),
        }
    }

    /// The member id of the static member `instance`, if it is one of ours.
    pub(super) fn static_member(&self, instance: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.as_str())
    }

    /// KIP-345: `instance` given with a member id that is not its current one is an old
    /// incarnation (FENCED_INSTANCE_ID).
    pub(super) fn fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        instance
            .and_then(|i| self.static_member(i))
            .is_some_and(|current| current != member_id)
    }

    /// KIP-345: a static member restarted under `new_id`. It takes over the old member's
    /// place (assignment, leadership); requests of the old incarnation still waiting are
    /// fenced.
    pub(super) fn replace_static_member(&mut self, old_id: &str, new_id: &str) {
        let Some(mut m) = self.members.remove(old_id) else {
            return;
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(GroupError::FencedInstanceId, old_id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send((GroupError::FencedInstanceId.code(), Bytes::new()));
        }
        m.id = new_id.to_string();
        self.members.insert(new_id.to_string(), m);
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.to_string());
        }
    }

    /// How long a rebalance waits for the members to rejoin: the longest rebalance timeout
    /// (`max.poll.interval.ms`) of any member, as Kafka's `rebalanceTimeoutMs`, so a member
    /// joining with a short one does not cut short the others' time (issue 22 item 4).
    pub(super) fn rebalance_timeout(&self) -> std::time::Duration {
        let ms = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        std::time::Duration::from_millis(ms.max(0) as u64)
    }

    /// Moves to PreparingRebalance: members must rejoin before `deadline`; syncs in progress
    /// are told to rejoin.
    pub(super) fn prepare_rebalance(&mut self, deadline: Instant) {
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send((GroupError::RebalanceInProgress.code(), Bytes::new()));
            }
        }
        if self.state != GroupState::PreparingRebalance {
            self.state = GroupState::PreparingRebalance;
            self.rebalance_deadline = Some(deadline);
        }
    }

    /// True when every member has a JoinGroup waiting and no member id handed out with
    /// MEMBER_ID_REQUIRED is still to join (Kafka's `hasAllMembersJoined`).
    pub(super) fn all_joined(&self) -> bool {
        !self.members.is_empty()
            && self.pending.is_empty()
            && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Kafka's `selectProtocol`: of the protocols every member supports, each member votes
    /// for the first in its own order of preference, and the most votes win. Kafka leaves a
    /// tie to a hash map's order; here the protocol named first wins it, so the choice does
    /// not depend on the process.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let supported_by_all = |name: &str| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(p, _)| p == name))
        };
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            let vote = m
                .protocols
                .iter()
                .map(|(n, _)| n.as_str())
                .find(|n| supported_by_all(n))?;
            *votes.entry(vote).or_default() += 1;
        }
        let most = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, n)| *n == most)
            .map(|(name, _)| name.to_string())
    }

    /// The topics the members subscribe to, read from their `consumer` protocol metadata as
    /// Kafka's `computeSubscribedTopics` does (the version-0 prefix every version shares):
    /// none for an Empty group; `None` when unknown (another protocol type, no protocol
    /// chosen yet, or metadata that does not parse).
    pub(super) fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        if self.members.is_empty() {
            return Some(HashSet::new());
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            topics.extend(subscription_topics(m.metadata_for(protocol))?);
        }
        Some(topics)
    }

    /// Whether the group consumes `topic` (Kafka's `isSubscribedToTopic`): when the
    /// subscriptions are unknown, a `consumer` group is taken to.
    pub(super) fn subscribed_to(&self, topic: &str) -> bool {
        match self.subscribed_topics() {
            Some(topics) => topics.contains(topic),
            None => self.protocol_type.as_deref() == Some("consumer"),
        }
    }

    /// Ends the join phase: dynamic members that did not rejoin are dropped, the generation
    /// advances, and every waiting JoinGroup is answered. Static members that did not rejoin
    /// keep their place (and get a share of the assignment) until their session expires, as
    /// Kafka's `onCompleteJoin` does: a restarting pod comes back to its partitions (issue 22
    /// item 5). If only such absent static members remain, the join is postponed by another
    /// rebalance timeout rather than completed with no leader. Returns true if the group
    /// changed generation.
    pub(super) fn complete_join(&mut self, now: Instant) -> bool {
        self.members
            .retain(|_, m| m.join_waiter.is_some() || m.instance_id.is_some());
        if !self.members.is_empty() && !self.members.values().any(|m| m.join_waiter.is_some()) {
            self.rebalance_deadline = Some(now + self.rebalance_timeout());
            self.initial_delay = false;
            return false;
        }
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
        // The leader must be a member that rejoined: it is the one answered with the list.
        if self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_none_or(|m| m.join_waiter.is_none())
        {
            self.leader = self
                .members
                .values()
                .find(|m| m.join_waiter.is_some())
                .map(|m| m.id.clone());
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

    /// Answers every waiting request with `e` (the shard is unloaded: NOT_COORDINATOR).
    pub(super) fn fail_waiters(&mut self, e: GroupError) {
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(e, &m.id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send((e.code(), Bytes::new()));
            }
        }
    }

    /// Removes a member; the group rebalances if others remain, or empties.
    pub(super) fn remove_member(&mut self, id: &str, now: Instant) {
        if let Some(m) = self.members.remove(id) {
            if let Some(w) = m.join_waiter {
                let _ = w.send(JoinResult::error(GroupError::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter {
                let _ = w.send((GroupError::UnknownMemberId.code(), Bytes::new()));
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
                self.prepare_rebalance(now + self.rebalance_timeout());
            }
        }
    }
}

/// The topics of a `ConsumerProtocolSubscription`: a version, then the topic names.
fn subscription_topics(mut b: Bytes) -> Option<Vec<String>> {
    use bytes::Buf;
    if b.remaining() < 6 {
        return None;
    }
    let _version = b.get_i16();
    let n = b.get_i32();
    if n < 0 {
        return None;
    }
    let mut topics = Vec::with_capacity(n.clamp(0, 1024) as usize);
    for _ in 0..n {
        if b.remaining() < 2 {
            return None;
        }
        let len = usize::try_from(b.get_i16()).ok()?;
        if b.remaining() < len {
            return None;
        }
        topics.push(String::from_utf8(b.split_to(len).to_vec()).ok()?);
    }
    Some(topics)
}
