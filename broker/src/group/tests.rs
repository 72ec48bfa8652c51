//! `GroupShard` driven directly: requests and time in, records and answers out. No log
//! directory, no runtime, no time passing but what the tests pass in.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use sluice_storage::TopicPartition;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::records::{GroupValue, OffsetsRecord};
use super::shard::{Effect, GroupShard, Now, Pending};
use super::state::{GroupState, JoinResult};
use super::{CommitParams, GroupConfig, JoinParams, SyncParams};

fn shard() -> GroupShard {
    GroupShard::new(
        0,
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        },
    )
}

fn at(start: Instant, ms: u64) -> Now {
    Now {
        at: start + Duration::from_millis(ms),
        ms: 1_000 + ms as i64,
    }
}

fn join_params(member: &str, instance: Option<&str>) -> JoinParams {
    JoinParams {
        group_id: "g".into(),
        member_id: member.into(),
        instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        require_known_member_id: false,
    }
}

/// Sends the deferred answers (as the runtime does once the records replicate).
fn deliver<T>(e: Effect<T>) -> (Vec<OffsetsRecord>, Pending<T>) {
    e.deferred.into_iter().for_each(|d| d.send());
    (e.records, e.answer)
}

fn later<T>(p: Pending<T>) -> oneshot::Receiver<T> {
    match p {
        Pending::Later(rx) => rx,
        Pending::Now(_) => panic!("expected an answer to wait"),
    }
}

fn now_answer<T>(p: Pending<T>) -> T {
    match p {
        Pending::Now(t) => t,
        Pending::Later(_) => panic!("expected an answer now"),
    }
}

fn ready<T>(rx: &mut oneshot::Receiver<T>) -> T {
    rx.try_recv().expect("answered")
}

fn sync(member: &str, generation: i32, assignments: &[(&str, &'static [u8])]) -> SyncParams {
    SyncParams {
        group_id: "g".into(),
        generation,
        member_id: member.into(),
        instance_id: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from_static(a)))
            .collect(),
    }
}

fn commit(member: &str, generation: i32, metadata: &str) -> CommitParams {
    CommitParams {
        group_id: "g".into(),
        generation,
        member_id: member.into(),
        instance_id: None,
        offsets: vec![(TopicPartition::new("t", 0), 7, -1, Some(metadata.into()))],
    }
}

/// Appends `records` and has the ISR take them at once (as the runtime does for a single
/// replica).
fn replicate(s: &mut GroupShard, records: Vec<OffsetsRecord>) {
    let end = s.log_end + records.len() as i64;
    s.appended(records, end);
    s.replicated_to(end);
}

fn all(_: &TopicPartition) -> bool {
    true
}

/// Static members a and b, Stable at generation 2 with assignments "pa" and "pb".
fn stable_static_group(s: &mut GroupShard, t0: Instant) -> (String, String) {
    let mut a = later(s.join(join_params("", Some("a")), at(t0, 0)).answer);
    let a_id = ready(&mut a).member_id;
    let mut b = later(s.join(join_params("", Some("b")), at(t0, 1)).answer);
    let mut a = later(s.join(join_params(&a_id, Some("a")), at(t0, 2)).answer);
    let (ja, jb) = (ready(&mut a), ready(&mut b));
    assert_eq!((ja.generation, jb.generation), (2, 2));
    assert_eq!(ja.leader, a_id);
    let b_id = jb.member_id;
    let mut bs = later(s.sync(sync(&b_id, 2, &[]), at(t0, 3)).answer);
    let e = s.sync(sync(&a_id, 2, &[(&a_id, b"pa"), (&b_id, b"pb")]), at(t0, 4));
    let (records, answer) = deliver(e);
    assert_eq!(records.len(), 1, "the assignment is persisted");
    let mut as_ = later(answer);
    assert_eq!(ready(&mut as_).1.as_ref(), b"pa");
    assert_eq!(ready(&mut bs).1.as_ref(), b"pb");
    (a_id, b_id)
}

#[test]
fn static_member_rejoin_keeps_generation_and_assignment_without_rebalance() {
    let (mut s, t0) = (shard(), Instant::now());
    let (a_id, old_b) = stable_static_group(&mut s, t0);
    let e = s.join(join_params("", Some("b")), at(t0, 10));
    let (records, answer) = deliver(e);
    let j = ready(&mut later(answer));
    assert_eq!(
        (j.error, j.generation, j.leader.as_str()),
        (0, 2, a_id.as_str())
    );
    assert_ne!(j.member_id, old_b);
    assert!(j.members.is_empty(), "b is not the leader");
    let [OffsetsRecord::Group {
        value: Some(GroupValue { members, .. }),
        ..
    }] = records.as_slice()
    else {
        panic!("the replacement is persisted: {records:?}")
    };
    assert!(members.iter().any(|m| m.member_id == j.member_id));
    assert!(!members.iter().any(|m| m.member_id == old_b));
    assert_eq!(s.heartbeat("g", 2, &a_id, Some("a"), at(t0, 11)), 0);
    assert_eq!(
        s.heartbeat("g", 2, &old_b, Some("b"), at(t0, 11)),
        ResponseError::FencedInstanceId.code()
    );
    let r = now_answer(s.sync(sync(&j.member_id, 2, &[]), at(t0, 12)).answer);
    assert_eq!((r.0, r.1.as_ref()), (0, &b"pb"[..]));
}

#[test]
fn static_leader_rejoin_keeps_its_leadership_without_running_the_assignor() {
    let (mut s, t0) = (shard(), Instant::now());
    let (a_id, _) = stable_static_group(&mut s, t0);
    let (_, answer) = deliver(s.join(join_params("", Some("a")), at(t0, 10)));
    let j = ready(&mut later(answer));
    assert_ne!(j.member_id, a_id);
    // Kafka before JoinGroup v9: the old leader id and no member list, so the client syncs
    // as a follower and gets its assignment back.
    assert_eq!((j.generation, j.leader.as_str()), (2, a_id.as_str()));
    assert!(j.members.is_empty());
    assert_eq!(s.groups["g"].leader.as_deref(), Some(j.member_id.as_str()));
    let r = now_answer(s.sync(sync(&j.member_id, 2, &[]), at(t0, 11)).answer);
    assert_eq!(r.1.as_ref(), b"pa");
}

#[test]
fn commits_are_accepted_while_preparing_and_refused_while_completing_a_rebalance() {
    let (mut s, t0) = (shard(), Instant::now());
    let mut a = later(s.join(join_params("", None), at(t0, 0)).answer);
    let a_id = ready(&mut a).member_id;
    let _ = deliver(s.sync(sync(&a_id, 1, &[(&a_id, b"pa")]), at(t0, 1)));
    // A second member: PreparingRebalance until a rejoins.
    let mut b = later(s.join(join_params("", None), at(t0, 2)).answer);
    assert_eq!(s.groups["g"].state, GroupState::PreparingRebalance);
    let e = s.commit(commit(&a_id, 1, "m"), &all, at(t0, 3));
    assert_eq!(e.records.len(), 1);
    assert_eq!(now_answer(e.answer)[0].1, 0);
    let e = s.commit(commit(&a_id, 0, "m"), &all, at(t0, 3));
    assert_eq!(
        now_answer(e.answer)[0].1,
        ResponseError::IllegalGeneration.code()
    );
    let _a = later(s.join(join_params(&a_id, None), at(t0, 4)).answer);
    assert_eq!(ready(&mut b).generation, 2);
    assert_eq!(s.groups["g"].state, GroupState::CompletingRebalance);
    let e = s.commit(commit(&a_id, 2, "m"), &all, at(t0, 5));
    assert!(e.records.is_empty());
    assert_eq!(
        now_answer(e.answer)[0].1,
        ResponseError::RebalanceInProgress.code()
    );
}

#[test]
fn commit_metadata_over_the_limit_is_refused_per_partition() {
    let mut s = shard();
    let t0 = Instant::now();
    let mut req = commit("", -1, "");
    req.offsets = vec![
        (TopicPartition::new("t", 0), 1, -1, Some("m".repeat(4096))),
        (TopicPartition::new("t", 1), 1, -1, Some("m".repeat(4097))),
        (TopicPartition::new("u", 0), 1, -1, None),
    ];
    let e = s.commit(req, &|tp| tp.topic == "t", at(t0, 0));
    assert_eq!(
        e.records.len(),
        1,
        "only the partition that fits is written"
    );
    let codes: Vec<i16> = now_answer(e.answer).into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        codes,
        vec![
            0,
            ResponseError::OffsetMetadataTooLarge.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
    let mut long = commit("", -1, "");
    long.group_id = "g".repeat(40_000);
    let e = s.commit(long, &all, at(t0, 0));
    assert!(e.records.is_empty());
    assert_eq!(
        now_answer(e.answer)[0].1,
        ResponseError::InvalidGroupId.code()
    );
}

#[test]
fn a_replayed_shard_keeps_generation_members_and_assignments() {
    let (mut s, t0) = (shard(), Instant::now());
    let (a_id, b_id) = stable_static_group(&mut s, t0);
    let e = s.commit(commit(&a_id, 2, "m"), &all, at(t0, 5));
    replicate(&mut s, e.records.clone());
    // Everything the shard wrote, replayed into a fresh shard (a coordinator move).
    let g = &s.groups["g"];
    let mut written = vec![GroupShard::group_record(g, at(t0, 6))];
    written.extend(e.records);
    let mut moved = shard();
    for r in written {
        let (k, v) = r.encode().expect("encode");
        moved.replay(
            OffsetsRecord::decode(&k, v.as_deref()).expect("decode"),
            at(t0, 7),
        );
    }
    let g = &moved.groups["g"];
    assert_eq!((g.state, g.generation), (GroupState::Stable, 2));
    assert_eq!(g.leader.as_deref(), Some(a_id.as_str()));
    assert_eq!(moved.heartbeat("g", 2, &b_id, Some("b"), at(t0, 8)), 0);
    let r = now_answer(moved.sync(sync(&b_id, 2, &[]), at(t0, 8)).answer);
    assert_eq!(r.1.as_ref(), b"pb");
    let fetched = moved.fetch_offsets("g", None);
    assert_eq!(fetched.len(), 1);
    assert_eq!((fetched[0].1, fetched[0].3.as_deref()), (7, Some("m")));
}

#[test]
fn the_last_member_leaving_persists_an_empty_group() {
    let (mut s, t0) = (shard(), Instant::now());
    let mut a = later(s.join(join_params("", None), at(t0, 0)).answer);
    let a_id = ready(&mut a).member_id;
    let e = s.leave("g", &[(a_id, None)], at(t0, 1));
    let [OffsetsRecord::Group { value: Some(v), .. }] = e.records.as_slice() else {
        panic!("an emptied group is persisted")
    };
    assert!(v.members.is_empty());
    assert_eq!(now_answer(e.answer), Ok(vec![0]));
    assert_eq!(s.groups["g"].state, GroupState::Empty);
}

#[test]
fn unloading_answers_waiting_requests_not_coordinator() {
    let (mut s, t0) = (shard(), Instant::now());
    let mut a = later(s.join(join_params("", None), at(t0, 0)).answer);
    let a_id = ready(&mut a).member_id;
    let _ = deliver(s.sync(sync(&a_id, 1, &[]), at(t0, 1)));
    let mut b = later(s.join(join_params("", None), at(t0, 2)).answer);
    s.unload();
    let JoinResult { error, .. } = ready(&mut b);
    assert_eq!(error, ResponseError::NotCoordinator.code());
    assert!(!s.is_active());
}

#[test]
fn sessions_expire_from_the_tick_and_an_emptied_group_is_persisted() {
    let (mut s, t0) = (shard(), Instant::now());
    let mut a = later(s.join(join_params("", None), at(t0, 0)).answer);
    let a_id = ready(&mut a).member_id;
    let _ = deliver(s.sync(sync(&a_id, 1, &[]), at(t0, 1)));
    assert!(s.tick(at(t0, 9_000)).is_empty(), "within the session");
    let records = s.tick(at(t0, 10_002));
    assert_eq!(records.len(), 1);
    assert!(s.groups["g"].members.is_empty());
}

#[test]
fn a_rejoin_waits_for_no_member_whose_session_expired() {
    // After a coordinator move the group is loaded Stable with its old member; the consumer
    // comes back as a new member, and the old one never heartbeats again.
    let (mut s, t0) = (shard(), Instant::now());
    let mut a = later(s.join(join_params("", None), at(t0, 0)).answer);
    let a_id = ready(&mut a).member_id;
    let (records, _) = deliver(s.sync(sync(&a_id, 1, &[(&a_id, b"pa")]), at(t0, 1)));
    let mut moved = shard();
    for r in records {
        moved.replay(r, at(t0, 2));
    }
    let mut p = join_params("", None);
    p.rebalance_timeout_ms = 300_000; // max.poll.interval.ms: far beyond the session
    let mut b = later(moved.join(p, at(t0, 3)).answer);
    assert_eq!(moved.groups["g"].state, GroupState::PreparingRebalance);
    assert!(b.try_recv().is_err(), "waits for the loaded member");
    let _ = moved.tick(at(t0, 10_003));
    let j = ready(&mut b);
    assert_eq!(
        (j.error, j.generation),
        (0, 2),
        "joined once the old member expired"
    );
    assert_eq!(moved.groups["g"].members.len(), 1);
}

#[test]
fn a_replaced_static_member_is_fenced_on_join_heartbeat_sync_commit_and_leave() {
    // Issue 22 item 1: the zombie of a replaced pod (old member id, same instance id) is
    // FENCED_INSTANCE_ID everywhere, so it cannot evict its replacement.
    let (mut s, t0) = (shard(), Instant::now());
    let (_, old_b) = stable_static_group(&mut s, t0);
    let (_, answer) = deliver(s.join(join_params("", Some("b")), at(t0, 10)));
    let new_b = ready(&mut later(answer)).member_id;
    let fenced = ResponseError::FencedInstanceId.code();
    let j = s.join(join_params(&old_b, Some("b")), at(t0, 11));
    assert_eq!(now_answer(j.answer).error, fenced, "join");
    assert_eq!(s.heartbeat("g", 2, &old_b, Some("b"), at(t0, 11)), fenced);
    let mut req = sync(&old_b, 2, &[]);
    req.instance_id = Some("b".into());
    assert_eq!(now_answer(s.sync(req, at(t0, 11)).answer).0, fenced, "sync");
    let mut req = commit(&old_b, 2, "m");
    req.instance_id = Some("b".into());
    let e = s.commit(req, &all, at(t0, 11));
    assert!(e.records.is_empty());
    assert_eq!(now_answer(e.answer)[0].1, fenced, "commit");
    let e = s.leave("g", &[(old_b, Some("b".into()))], at(t0, 11));
    assert_eq!(now_answer(e.answer), Ok(vec![fenced]), "leave");
    let g = &s.groups["g"];
    assert_eq!(
        (g.state, g.generation),
        (GroupState::Stable, 2),
        "no rebalance"
    );
    assert!(g.members.contains_key(&new_b));
}

#[test]
fn the_rebalance_deadline_is_the_longest_rebalance_timeout_of_the_members() {
    // Issue 22 item 4: a member joining with a short rebalance timeout must not cut short the
    // time the others (here a, with max.poll.interval.ms of a minute) have to rejoin.
    let (mut s, t0) = (shard(), Instant::now());
    let mut p = join_params("", None);
    p.rebalance_timeout_ms = 60_000;
    let mut a = later(s.join(p.clone(), at(t0, 0)).answer);
    let a_id = ready(&mut a).member_id;
    let _ = deliver(s.sync(sync(&a_id, 1, &[(&a_id, b"pa")]), at(t0, 1)));
    let mut q = join_params("", None);
    q.rebalance_timeout_ms = 1_000;
    let mut b = later(s.join(q, at(t0, 2)).answer);
    assert_eq!(s.heartbeat("g", 1, &a_id, None, at(t0, 1_500)), 27);
    let _ = s.tick(at(t0, 2_000));
    assert!(b.try_recv().is_err(), "still waiting for a");
    let g = &s.groups["g"];
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert!(g.members.contains_key(&a_id), "a keeps its place");
    p.member_id = a_id.clone();
    let mut a = later(s.join(p, at(t0, 10_000)).answer);
    assert_eq!((ready(&mut a).generation, ready(&mut b).generation), (2, 2));
}

#[test]
fn a_static_member_that_did_not_rejoin_keeps_its_place_until_its_session_expires() {
    // Issue 22 item 5: only dynamic members are dropped at the end of a rebalance; a static
    // one (a pod restarting) stays, and the leader assigns to it.
    let (mut s, t0) = (shard(), Instant::now());
    let (a_id, b_id) = stable_static_group(&mut s, t0);
    let mut c = later(s.join(join_params("", None), at(t0, 10)).answer);
    let mut a = later(s.join(join_params(&a_id, Some("a")), at(t0, 11)).answer);
    assert_eq!(s.heartbeat("g", 2, &b_id, Some("b"), at(t0, 9_000)), 27);
    let _ = s.tick(at(t0, 10_011));
    let (ja, jc) = (ready(&mut a), ready(&mut c));
    assert_eq!((ja.error, ja.generation, jc.generation), (0, 3, 3));
    assert_eq!(ja.leader, a_id);
    let listed: Vec<&str> = ja.members.iter().map(|m| m.0.as_str()).collect();
    assert!(
        listed.contains(&b_id.as_str()),
        "b is assigned to: {listed:?}"
    );
    assert!(s.groups["g"].members.contains_key(&b_id));
    // b's session then runs out (the pod did not come back): it is removed then.
    assert_eq!(s.heartbeat("g", 3, &a_id, Some("a"), at(t0, 15_000)), 0);
    assert_eq!(s.heartbeat("g", 3, &jc.member_id, None, at(t0, 15_000)), 0);
    let _ = s.tick(at(t0, 10_011 + 10_001));
    assert!(!s.groups["g"].members.contains_key(&b_id));
}

#[test]
fn a_rebalance_no_member_rejoined_is_postponed_while_static_members_remain() {
    let (mut s, t0) = (shard(), Instant::now());
    let (a_id, b_id) = stable_static_group(&mut s, t0);
    let g = s.groups.get_mut("g").expect("group");
    g.prepare_rebalance(at(t0, 10).at + g.rebalance_timeout());
    assert_eq!(s.heartbeat("g", 2, &a_id, Some("a"), at(t0, 9_000)), 27);
    assert_eq!(s.heartbeat("g", 2, &b_id, Some("b"), at(t0, 9_000)), 27);
    let _ = s.tick(at(t0, 10_011));
    let g = &s.groups["g"];
    assert_eq!((g.state, g.generation), (GroupState::PreparingRebalance, 2));
    assert_eq!(g.members.len(), 2);
    let mut a = later(s.join(join_params(&a_id, Some("a")), at(t0, 10_012)).answer);
    assert!(a.try_recv().is_err(), "waits for b until the new deadline");
    let _ = s.tick(at(t0, 20_013));
    let j = ready(&mut a);
    assert_eq!(
        (j.error, j.generation, j.leader.as_str()),
        (0, 3, a_id.as_str())
    );
}

/// A JoinGroup's answer, whether given at once or already sent.
fn answered(p: Pending<JoinResult>) -> JoinResult {
    match p {
        Pending::Now(j) => j,
        Pending::Later(mut rx) => ready(&mut rx),
    }
}

#[test]
fn a_known_member_rejoining_with_unchanged_metadata_gets_the_current_generation() {
    // Issue 22 item 8 (Kafka's doCurrentMemberJoinGroup): a member that lost its JoinGroup
    // answer and asks again with the same protocols is told the current generation; only a
    // change of metadata, or the leader rejoining a Stable group, starts a rebalance.
    let (mut s, t0) = (shard(), Instant::now());
    let mut a = later(s.join(join_params("", None), at(t0, 0)).answer);
    let a_id = ready(&mut a).member_id;
    let _ = deliver(s.sync(sync(&a_id, 1, &[(&a_id, b"pa")]), at(t0, 1)));
    let mut b = later(s.join(join_params("", None), at(t0, 2)).answer);
    let mut a = later(s.join(join_params(&a_id, None), at(t0, 3)).answer);
    let (ja, jb) = (ready(&mut a), ready(&mut b));
    assert_eq!((ja.generation, ja.leader.as_str()), (2, a_id.as_str()));
    let b_id = jb.member_id;
    // CompletingRebalance: answered at once, the leader with the member list.
    let j = answered(s.join(join_params(&b_id, None), at(t0, 4)).answer);
    assert_eq!((j.error, j.generation, j.members.len()), (0, 2, 0));
    let j = answered(s.join(join_params(&a_id, None), at(t0, 5)).answer);
    assert_eq!((j.error, j.generation, j.members.len()), (0, 2, 2));
    assert_eq!(s.groups["g"].state, GroupState::CompletingRebalance);
    let mut bs = later(s.sync(sync(&b_id, 2, &[]), at(t0, 6)).answer);
    let _ = deliver(s.sync(sync(&a_id, 2, &[(&a_id, b"pa"), (&b_id, b"pb")]), at(t0, 7)));
    assert_eq!(ready(&mut bs).1.as_ref(), b"pb");
    // Stable: a follower with the same metadata keeps the generation and its assignment.
    let j = answered(s.join(join_params(&b_id, None), at(t0, 8)).answer);
    assert_eq!(
        (j.error, j.generation, j.leader.as_str()),
        (0, 2, a_id.as_str())
    );
    assert_eq!(s.groups["g"].state, GroupState::Stable);
    let r = now_answer(s.sync(sync(&b_id, 2, &[]), at(t0, 9)).answer);
    assert_eq!((r.0, r.1.as_ref()), (0, &b"pb"[..]));
    // Changed metadata rebalances.
    let mut p = join_params(&b_id, None);
    p.protocols = vec![("range".into(), Bytes::from_static(b"sub2"))];
    let _b = later(s.join(p, at(t0, 10)).answer);
    assert_eq!(s.groups["g"].state, GroupState::PreparingRebalance);
}

#[test]
fn deleting_a_topic_tombstones_its_committed_offsets_in_every_group() {
    // Issue 22 item 6: a topic deleted and recreated must not resume at the old offsets.
    let (mut s, t0) = (shard(), Instant::now());
    let mut a = later(s.join(join_params("", None), at(t0, 0)).answer);
    let a_id = ready(&mut a).member_id;
    let _ = deliver(s.sync(sync(&a_id, 1, &[(&a_id, b"pa")]), at(t0, 1)));
    let mut req = commit(&a_id, 1, "");
    req.offsets = vec![
        (TopicPartition::new("t", 0), 5, -1, None),
        (TopicPartition::new("u", 0), 6, -1, None),
    ];
    let e = s.commit(req, &all, at(t0, 2));
    replicate(&mut s, e.records.clone());
    // An offset-only group (assign-mode commits) whose offsets are all on `t`.
    let mut req = commit("", -1, "");
    req.group_id = "h".into();
    req.offsets = vec![
        (TopicPartition::new("t", 0), 7, -1, None),
        (TopicPartition::new("t", 1), 8, -1, None),
    ];
    let e = s.commit(req, &all, at(t0, 3));
    replicate(&mut s, e.records.clone());

    let records = s.delete_topics(&|topic| topic == "t");
    /// (group, offset's partition or None for the group record, has a value)
    type Key = (String, Option<(String, i32)>, bool);
    let mut keys: Vec<Key> = records
        .iter()
        .map(|r| match r {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => (
                group.clone(),
                Some((topic.clone(), *partition)),
                value.is_some(),
            ),
            OffsetsRecord::Group { group, value } => (group.clone(), None, value.is_some()),
        })
        .collect();
    keys.sort();
    let t = |p| Some(("t".to_string(), p));
    assert_eq!(
        keys,
        vec![
            ("g".into(), t(0), false),
            ("h".into(), None, false),
            ("h".into(), t(0), false),
            ("h".into(), t(1), false),
        ],
        "tombstones for t's offsets, and for the group left with nothing"
    );
    replicate(&mut s, records);
    let left: Vec<(String, i64)> = s
        .fetch_offsets("g", None)
        .into_iter()
        .map(|(tp, o, _, _)| (tp.topic, o))
        .collect();
    assert_eq!(left, vec![("u".to_string(), 6)]);
    assert!(s.fetch_offsets("h", None).is_empty());
    assert!(!s.list().iter().any(|(g, _, _)| g == "h"));
    assert!(
        s.delete_topics(&|topic| topic == "t").is_empty(),
        "idempotent"
    );
}

#[test]
fn deleting_a_topic_keeps_a_group_whose_commit_elsewhere_is_still_replicating() {
    let (mut s, t0) = (shard(), Instant::now());
    let mut req = commit("", -1, "");
    req.group_id = "h".into();
    req.offsets = vec![(TopicPartition::new("t", 0), 7, -1, None)];
    let e = s.commit(req, &all, at(t0, 1));
    replicate(&mut s, e.records.clone());
    // A commit to `u`, appended, acknowledged once the ISR has it: not replicated yet.
    let mut req = commit("", -1, "");
    req.group_id = "h".into();
    req.offsets = vec![(TopicPartition::new("u", 0), 9, -1, None)];
    let e = s.commit(req, &all, at(t0, 2));
    let end = s.log_end + e.records.len() as i64;
    s.appended(e.records.clone(), end);

    let records = s.delete_topics(&|topic| topic == "t");
    assert!(
        records
            .iter()
            .all(|r| matches!(r, OffsetsRecord::Offset { value: None, .. })),
        "only t's offset goes, not the group: {records:?}"
    );
    replicate(&mut s, records);
    s.replicated_to(s.log_end);
    let left: Vec<(String, i64)> = s
        .fetch_offsets("h", None)
        .into_iter()
        .map(|(tp, o, _, _)| (tp.topic, o))
        .collect();
    assert_eq!(
        left,
        vec![("u".to_string(), 9)],
        "the acknowledged commit survives"
    );
}
