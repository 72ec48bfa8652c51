//! The classic rebalance protocol on a `GroupShard`: JoinGroup, SyncGroup, Heartbeat and
//! LeaveGroup (KIP-62 rebalance timeouts, KIP-134 initial delay, KIP-345 static membership,
//! KIP-394 member ids). Pure: requests and time in, an `Effect` out.

use std::collections::HashMap;
use std::time::Duration;

use super::error::GroupError;
use bytes::Bytes;
use tokio::sync::oneshot;

use super::records::{check_len, MAX_STRING_LEN};
use super::shard::{check_group_id, Delivery, Effect, GroupShard, Now, Pending};
use super::state::{Group, GroupState, JoinResult, Member, SyncResult};

/// A JoinGroup request, in domain terms.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a new member first gets its id with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// A SyncGroup request, in domain terms.
#[derive(Debug, Clone)]
pub struct SyncParams {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// The leader's assignment by member id (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// A new member's id: its instance id or client id, a dash and a UUID, as Kafka forms it.
const MEMBER_ID_SUFFIX: usize = 1 + 36;

/// Whether every string of the join fits the offsets topic's schema once persisted (member
/// ids are formed from the instance or client id plus [`MEMBER_ID_SUFFIX`] bytes).
fn join_fits(p: &JoinParams) -> bool {
    let base = MAX_STRING_LEN - MEMBER_ID_SUFFIX;
    check_len("member id", &p.member_id).is_ok()
        && p.instance_id.as_ref().is_none_or(|i| i.len() <= base)
        && p.client_id.len() <= base
        && check_len("client host", &p.client_host).is_ok()
        && check_len("protocol type", &p.protocol_type).is_ok()
        && p.protocols
            .iter()
            .all(|(n, _)| check_len("protocol", n).is_ok())
}

impl GroupShard {
    /// JoinGroup.
    pub fn join(&mut self, p: JoinParams, now: Now) -> Effect<JoinResult> {
        let fail = |e: GroupError| Effect::now(JoinResult::error(e, &p.member_id));
        if let Err(e) = check_group_id(&p.group_id) {
            return fail(e);
        }
        if !join_fits(&p) {
            return fail(GroupError::InvalidRequest);
        }
        if p.session_timeout_ms < self.config.min_session_timeout_ms
            || p.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(GroupError::InvalidSessionTimeout);
        }
        if p.protocols.is_empty() || p.protocol_type.is_empty() {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        let initial_delay_ms = self.config.initial_rebalance_delay_ms;
        let g = self
            .groups
            .entry(p.group_id.clone())
            .or_insert_with(|| Group::new(&p.group_id));
        if !g.members.is_empty()
            && g.protocol_type
                .as_deref()
                .is_some_and(|t| t != p.protocol_type)
        {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        if !g.members.is_empty()
            && !p.protocols.iter().any(|(n, _)| {
                g.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(q, _)| q == n))
            })
        {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        let mut member_id = p.member_id.clone();
        if member_id.is_empty() {
            let base = p.instance_id.clone().unwrap_or_else(|| {
                if p.client_id.is_empty() {
                    "member".into()
                } else {
                    p.client_id.clone()
                }
            });
            member_id = format!("{base}-{}", uuid::Uuid::new_v4());
            if let Some(inst) = &p.instance_id {
                if let Some(old) = g.static_member(inst).map(str::to_string) {
                    return static_member_rejoin(g, &old, &member_id, &p, now);
                }
            } else if p.require_known_member_id {
                let expires = now.at + Duration::from_millis(p.session_timeout_ms.max(0) as u64);
                g.pending.insert(member_id.clone(), expires);
                return Effect::now(JoinResult::error(GroupError::MemberIdRequired, &member_id));
            }
        } else if !g.members.contains_key(&member_id) && g.pending.remove(&member_id).is_none() {
            let e = if g.fenced(&member_id, p.instance_id.as_deref()) {
                GroupError::FencedInstanceId
            } else {
                GroupError::UnknownMemberId
            };
            return fail(e);
        } else if let (Some(inst), Some(m)) = (&p.instance_id, g.members.get(&member_id)) {
            if m.instance_id.as_ref() != Some(inst) {
                return fail(GroupError::FencedInstanceId);
            }
        }
        if let Some(current) = current_generation(g, &member_id, &p.protocols, now) {
            return Effect::now(current);
        }
        let (tx, rx) = oneshot::channel();
        let was_empty = g.members.is_empty() && g.state == GroupState::Empty;
        let member = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                id: member_id.clone(),
                instance_id: p.instance_id.clone(),
                client_id: p.client_id.clone(),
                client_host: p.client_host.clone(),
                session_timeout_ms: p.session_timeout_ms,
                rebalance_timeout_ms: p.rebalance_timeout_ms,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_seen: now.at,
                join_waiter: None,
                sync_waiter: None,
            });
        update_member(member, &p, now);
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(JoinResult::error(GroupError::UnknownMemberId, &member_id));
        }
        g.protocol_type = Some(p.protocol_type.clone());
        tracing::debug!(group = %p.group_id, member = %member_id, state = ?g.state, generation = g.generation, "JoinGroup");
        if g.state != GroupState::PreparingRebalance {
            // An empty group waits group.initial.rebalance.delay.ms for more members (KIP-134)
            // before its first rebalance completes; a running one waits for its members.
            let timeout = g.rebalance_timeout();
            let wait = if was_empty {
                timeout.min(Duration::from_millis(initial_delay_ms))
            } else {
                timeout
            };
            g.prepare_rebalance(now.at + wait);
            g.initial_delay = was_empty && !wait.is_zero();
        }
        if g.all_joined() && !g.initial_delay {
            g.complete_join(now.at);
        }
        Effect {
            records: Vec::new(),
            deferred: Vec::new(),
            answer: Pending::Later(rx),
        }
    }

    /// SyncGroup. The leader's assignment is persisted with the group before any member gets
    /// its share.
    pub fn sync(&mut self, req: SyncParams, now: Now) -> Effect<SyncResult> {
        let fail = |e: GroupError| Effect::now((e.code(), Bytes::new()));
        let Some(g) = self.groups.get_mut(&req.group_id) else {
            return fail(GroupError::UnknownMemberId);
        };
        if !g.members.contains_key(&req.member_id) {
            return fail(if g.fenced(&req.member_id, req.instance_id.as_deref()) {
                GroupError::FencedInstanceId
            } else {
                GroupError::UnknownMemberId
            });
        }
        if g.fenced(&req.member_id, req.instance_id.as_deref()) {
            return fail(GroupError::FencedInstanceId);
        }
        if req.generation != g.generation {
            return fail(GroupError::IllegalGeneration);
        }
        match g.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                fail(GroupError::RebalanceInProgress)
            }
            GroupState::Stable => Effect::now((
                0,
                g.members
                    .get(&req.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default(),
            )),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    m.last_seen = now.at;
                    m.sync_waiter = Some(tx);
                }
                if g.leader.as_deref() != Some(req.member_id.as_str()) {
                    return Effect {
                        records: Vec::new(),
                        deferred: Vec::new(),
                        answer: Pending::Later(rx),
                    };
                }
                let assigned: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                let mut deferred = Vec::new();
                for m in g.members.values_mut() {
                    m.assignment = assigned.get(&m.id).cloned().unwrap_or_default();
                    if let Some(w) = m.sync_waiter.take() {
                        deferred.push(Delivery::Sync(w, (0, m.assignment.clone())));
                    }
                }
                g.state = GroupState::Stable;
                Effect {
                    records: vec![GroupShard::group_record(g, now)],
                    deferred,
                    answer: Pending::Later(rx),
                }
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Now,
    ) -> i16 {
        let Some(g) = self.groups.get_mut(group_id) else {
            return GroupError::UnknownMemberId.code();
        };
        if g.fenced(member_id, instance_id) {
            return GroupError::FencedInstanceId.code();
        }
        let state = g.state;
        let current = g.generation;
        let Some(m) = g.members.get_mut(member_id) else {
            return GroupError::UnknownMemberId.code();
        };
        m.last_seen = now.at;
        match state {
            GroupState::PreparingRebalance => GroupError::RebalanceInProgress.code(),
            _ if generation != current => GroupError::IllegalGeneration.code(),
            _ => 0,
        }
    }

    /// LeaveGroup: per-member error codes, or the group's error (Kafka answers an unknown
    /// group with UNKNOWN_MEMBER_ID for each member). A group left empty is persisted so.
    pub fn leave(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: Now,
    ) -> Effect<Result<Vec<i16>, i16>> {
        if let Err(e) = check_group_id(group_id) {
            return Effect::now(Err(e.code()));
        }
        let Some(g) = self.groups.get_mut(group_id) else {
            return Effect::now(Ok(members
                .iter()
                .map(|_| GroupError::UnknownMemberId.code())
                .collect()));
        };
        let was_empty = g.members.is_empty();
        let codes = members
            .iter()
            .map(|(id, inst)| {
                let id = if id.is_empty() {
                    match inst.as_deref().and_then(|i| g.static_member(i)) {
                        Some(m) => m.to_string(),
                        None => return GroupError::UnknownMemberId.code(),
                    }
                } else {
                    id.clone()
                };
                if g.fenced(&id, inst.as_deref()) {
                    return GroupError::FencedInstanceId.code();
                }
                if !g.members.contains_key(&id) {
                    return GroupError::UnknownMemberId.code();
                }
                g.remove_member(&id, now.at);
                if g.state == GroupState::PreparingRebalance && g.all_joined() {
                    g.complete_join(now.at);
                }
                0
            })
            .collect();
        let records = if !was_empty && g.members.is_empty() {
            g.empty_since_ms = Some(now.ms);
            vec![GroupShard::group_record(g, now)]
        } else {
            Vec::new()
        };
        Effect {
            records,
            deferred: Vec::new(),
            answer: Pending::Now(Ok(codes)),
        }
    }
}

/// Kafka's `doCurrentMemberJoinGroup`: a known member rejoining with unchanged protocols
/// (it lost the JoinGroup answer, say) is told the current generation instead of starting a
/// rebalance: while the group completes its rebalance (the leader with the member list
/// again), or once Stable unless it is the leader, whose JoinGroup asks for a rebalance
/// (a topic's partitions changed, which no member's metadata shows). Issue 22 item 8.
fn current_generation(
    g: &mut Group,
    member_id: &str,
    protocols: &[(String, Bytes)],
    now: Now,
) -> Option<JoinResult> {
    let is_leader = g.leader.as_deref() == Some(member_id);
    let current = match g.state {
        GroupState::CompletingRebalance => true,
        GroupState::Stable => !is_leader,
        GroupState::Empty | GroupState::PreparingRebalance => false,
    };
    let m = g.members.get_mut(member_id)?;
    if !current || m.protocols != protocols {
        return None;
    }
    m.last_seen = now.at;
    let protocol = g.protocol.clone().unwrap_or_default();
    let members = if is_leader && g.state == GroupState::CompletingRebalance {
        g.members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(JoinResult {
        error: 0,
        generation: g.generation,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol.clone(),
        leader: g.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members,
    })
}

fn update_member(member: &mut Member, p: &JoinParams, now: Now) {
    member.protocols = p.protocols.clone();
    member.session_timeout_ms = p.session_timeout_ms;
    member.rebalance_timeout_ms = p.rebalance_timeout_ms;
    member.client_id = p.client_id.clone();
    member.client_host = p.client_host.clone();
    member.last_seen = now.at;
}

/// KIP-345: a static member that restarted (unknown member id, known instance id) replaces
/// its old incarnation. In a Stable group whose protocol would not change, it gets the
/// current generation and its previous assignment back without a rebalance, once the group
/// with its new member id is persisted (Kafka's `updateStaticMemberThenRebalanceOrCompleteJoin`);
/// otherwise the group rebalances.
fn static_member_rejoin(
    g: &mut Group,
    old_id: &str,
    new_id: &str,
    p: &JoinParams,
    now: Now,
) -> Effect<JoinResult> {
    let leader_before = g.leader.clone().unwrap_or_default();
    g.replace_static_member(old_id, new_id);
    let Some(member) = g.members.get_mut(new_id) else {
        return Effect::now(JoinResult::error(GroupError::UnknownMemberId, new_id));
    };
    update_member(member, p, now);
    let (tx, rx) = oneshot::channel();
    let stable = g.state == GroupState::Stable;
    if stable && g.protocol.is_some() && g.select_protocol() == g.protocol {
        tracing::info!(group = %g.id, member = %new_id, old = %old_id, "static member rejoined; no rebalance");
        // Before JoinGroup v9 (KIP-814 `skip_assignment`, which Sluice does not serve yet)
        // Kafka names the leader as it was before the replacement and sends no member list,
        // so a restarted leader does not run its assignor again: it syncs like the others.
        let answer = JoinResult {
            error: 0,
            generation: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
            leader: leader_before,
            member_id: new_id.to_string(),
            members: Vec::new(),
        };
        return Effect {
            records: vec![GroupShard::group_record(g, now)],
            deferred: vec![Delivery::Join(tx, answer)],
            answer: Pending::Later(rx),
        };
    }
    if let Some(m) = g.members.get_mut(new_id) {
        m.join_waiter = Some(tx);
    }
    if g.state != GroupState::PreparingRebalance {
        // CompletingRebalance: the leader may be assigning to the old member id, so the
        // group rebalances (as Kafka does); likewise if the protocol would change.
        let timeout = g.rebalance_timeout();
        g.prepare_rebalance(now.at + timeout);
    }
    if g.all_joined() && !g.initial_delay {
        g.complete_join(now.at);
    }
    Effect {
        records: Vec::new(),
        deferred: Vec::new(),
        answer: Pending::Later(rx),
    }
}
