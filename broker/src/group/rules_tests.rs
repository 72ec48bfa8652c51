//! Kafka's smaller group rules on a bare `GroupShard` (issue 22 item 10): member ids handed out
//! with MEMBER_ID_REQUIRED, offset-only groups, offset retention, OffsetDelete of topics no
//! member subscribes to, commits visible only once replicated, and the protocol vote.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use sluice_storage::TopicPartition;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::records::OffsetsRecord;
use super::shard::{Effect, GroupShard, Now, Pending};
use super::state::{GroupState, JoinResult};
use super::{CommitParams, GroupConfig, JoinParams, SyncParams};

fn shard() -> GroupShard {
    GroupShard::new(
        0,
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            offsets_retention_ms: 60_000,
            offsets_retention_check_interval_ms: 1_000,
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

/// A `consumer` protocol subscription (version 0) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

fn join(group: &str, client: &str, protocols: &[(&str, Bytes)]) -> JoinParams {
    JoinParams {
        group_id: group.into(),
        member_id: String::new(),
        instance_id: None,
        client_id: client.into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|(n, m)| (n.to_string(), m.clone()))
            .collect(),
        require_known_member_id: false,
    }
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

/// Appends an effect's records and has the ISR take them at once; sends deferred answers.
fn replicate<T>(s: &mut GroupShard, e: Effect<T>) -> Pending<T> {
    e.deferred.into_iter().for_each(|d| d.send());
    let end = s.log_end + e.records.len() as i64;
    s.appended(e.records, end);
    s.replicated_to(end);
    e.answer
}

/// One member of `group` subscribed to `topics`, Stable at generation 1.
fn stable(s: &mut GroupShard, group: &str, topics: &[&str], t0: Instant) -> String {
    let p = join(group, "a", &[("range", subscription(topics))]);
    let j = later(s.join(p, at(t0, 0)).answer)
        .try_recv()
        .expect("joined");
    let sync = SyncParams {
        group_id: group.into(),
        generation: j.generation,
        member_id: j.member_id.clone(),
        instance_id: None,
        assignments: vec![(j.member_id.clone(), Bytes::from_static(b"x"))],
    };
    let e = s.sync(sync, at(t0, 1));
    let mut answer = later(replicate(s, e));
    assert_eq!(answer.try_recv().expect("synced").0, 0);
    j.member_id
}

fn commit(group: &str, member: &str, generation: i32, offsets: &[(&str, i64)]) -> CommitParams {
    CommitParams {
        group_id: group.into(),
        generation,
        member_id: member.into(),
        instance_id: None,
        offsets: offsets
            .iter()
            .map(|(t, o)| (TopicPartition::new(*t, 0), *o, -1, None))
            .collect(),
    }
}

fn exists(_: &TopicPartition) -> bool {
    true
}

fn committed(s: &GroupShard, group: &str) -> Vec<(String, i64)> {
    s.fetch_offsets(group, None)
        .into_iter()
        .map(|(tp, o, _, _)| (tp.topic, o))
        .collect()
}

#[test]
fn a_rebalance_waits_for_a_member_id_handed_out_until_it_expires() {
    // Kafka's pendingMembers: the id sent with MEMBER_ID_REQUIRED belongs to a consumer about
    // to join; the rebalance waits for it until its session timeout, then forgets it.
    let (mut s, t0) = (shard(), Instant::now());
    let a = stable(&mut s, "g", &["t"], t0);
    let mut p = join("g", "c", &[("range", subscription(&["t"]))]);
    p.require_known_member_id = true;
    let r = now_answer(s.join(p, at(t0, 2)).answer);
    assert_eq!(r.error, ResponseError::MemberIdRequired.code());
    // The leader rejoins (a rebalance): it waits for the member id handed out.
    let mut p = join("g", "a", &[("range", subscription(&["t"]))]);
    p.member_id = a;
    let mut rejoin = later(s.join(p, at(t0, 3)).answer);
    assert!(s.tick(at(t0, 5_000)).is_empty());
    assert!(rejoin.try_recv().is_err(), "waits for the pending member");
    let _ = s.tick(at(t0, 10_003));
    let j: JoinResult = rejoin.try_recv().expect("completed once the id expired");
    assert_eq!((j.error, j.generation), (0, 2));
    assert!(s.groups["g"].pending.is_empty());
}

#[test]
fn a_member_id_handed_out_that_joins_completes_the_rebalance_at_once() {
    let (mut s, t0) = (shard(), Instant::now());
    let a = stable(&mut s, "g", &["t"], t0);
    let mut p = join("g", "c", &[("range", subscription(&["t"]))]);
    p.require_known_member_id = true;
    let c = now_answer(s.join(p.clone(), at(t0, 2)).answer).member_id;
    let mut pa = join("g", "a", &[("range", subscription(&["t"]))]);
    pa.member_id = a;
    let mut ja = later(s.join(pa, at(t0, 3)).answer);
    assert!(ja.try_recv().is_err());
    p.member_id = c;
    let mut jc = later(s.join(p, at(t0, 4)).answer);
    let (ja, jc) = (ja.try_recv().expect("a"), jc.try_recv().expect("c"));
    assert_eq!((ja.generation, jc.generation), (2, 2));
    assert_eq!(s.groups["g"].members.len(), 2);
}

#[test]
fn an_offset_only_group_survives_a_reload() {
    // Assign-mode consumers (Flink, Spark) commit with generation -1 and never join.
    let (mut s, t0) = (shard(), Instant::now());
    let e = s.commit(commit("h", "", -1, &[("t", 7)]), &exists, at(t0, 0));
    let records = e.records.clone();
    assert_eq!(now_answer(replicate(&mut s, e))[0].1, 0);
    let mut moved = shard();
    for r in records {
        let (k, v) = r.encode().expect("encode");
        let decoded = OffsetsRecord::decode_loaded(&k, v.as_deref()).expect("decodes");
        moved.replay(decoded.expect("a known type"), at(t0, 1));
    }
    assert_eq!(committed(&moved, "h"), vec![("t".to_string(), 7)]);
    assert!(moved
        .list()
        .iter()
        .any(|(g, _, state)| g == "h" && *state == "Empty"));
}

#[test]
fn offsets_expire_after_the_retention_and_empty_groups_go() {
    let (mut s, t0) = (shard(), Instant::now());
    // g: a consumer group whose member commits, then leaves at t=10.
    let a = stable(&mut s, "g", &["t"], t0);
    let e = s.commit(commit("g", &a, 1, &[("t", 5)]), &exists, at(t0, 5));
    replicate(&mut s, e);
    let e = s.leave("g", &[(a, None)], at(t0, 10));
    replicate(&mut s, e);
    // h: commits only, at t=20. k: a running group, never expired.
    let e = s.commit(commit("h", "", -1, &[("t", 6)]), &exists, at(t0, 20));
    replicate(&mut s, e);
    let b = stable(&mut s, "k", &["t"], t0);
    let e = s.commit(commit("k", &b, 1, &[("t", 7)]), &exists, at(t0, 20));
    replicate(&mut s, e);

    assert!(
        s.tick(at(t0, 30)).is_empty(),
        "the first tick sets the check"
    );
    assert_eq!(s.heartbeat("k", 1, &b, None, at(t0, 55_000)), 0);
    assert!(
        s.tick(at(t0, 60_005)).is_empty(),
        "within offsets.retention.minutes of becoming Empty / of the commit"
    );
    let records = s.tick(at(t0, 61_010));
    let mut keys: Vec<(String, bool)> = records
        .iter()
        .map(|r| match r {
            OffsetsRecord::Offset { group, value, .. } => (group.clone(), value.is_some()),
            OffsetsRecord::Group { group, value } => (format!("{group} (group)"), value.is_some()),
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            ("g".to_string(), false),
            ("g (group)".to_string(), false),
            ("h".to_string(), false),
            ("h (group)".to_string(), false),
        ]
    );
    let end = s.log_end + records.len() as i64;
    s.appended(records, end);
    s.replicated_to(end);
    assert!(committed(&s, "g").is_empty() && committed(&s, "h").is_empty());
    assert_eq!(committed(&s, "k"), vec![("t".to_string(), 7)]);
    let listed: Vec<String> = s.list().into_iter().map(|(g, _, _)| g).collect();
    assert_eq!(listed, vec!["k".to_string()]);
}

#[test]
fn offset_delete_refuses_only_topics_the_members_subscribe_to() {
    let (mut s, t0) = (shard(), Instant::now());
    let a = stable(&mut s, "g", &["t"], t0);
    let e = s.commit(
        commit("g", &a, 1, &[("t", 5), ("u", 6)]),
        &exists,
        at(t0, 5),
    );
    replicate(&mut s, e);
    let e = s.delete_offsets(
        "g",
        vec![TopicPartition::new("t", 0), TopicPartition::new("u", 0)],
    );
    assert_eq!(e.records.len(), 1, "u's tombstone");
    let (code, results) = now_answer(replicate(&mut s, e));
    assert_eq!(code, 0);
    let codes: Vec<i16> = results.iter().map(|(_, c)| *c).collect();
    assert_eq!(codes, vec![ResponseError::GroupSubscribedToTopic.code(), 0]);
    assert_eq!(committed(&s, "g"), vec![("t".to_string(), 5)]);

    // A running group of another protocol type cannot delete offsets at all.
    let mut p = join("c", "a", &[("p", Bytes::new())]);
    p.protocol_type = "connect".into();
    let _joined = later(s.join(p, at(t0, 6)).answer);
    let e = s.delete_offsets("c", vec![TopicPartition::new("t", 0)]);
    assert_eq!(now_answer(e.answer).0, ResponseError::NonEmptyGroup.code());
}

#[test]
fn commits_are_fetched_only_once_replicated_and_in_log_order() {
    let (mut s, t0) = (shard(), Instant::now());
    let first = s.commit(commit("h", "", -1, &[("t", 1)]), &exists, at(t0, 0));
    s.appended(first.records, 1);
    let second = s.commit(commit("h", "", -1, &[("t", 2)]), &exists, at(t0, 1));
    s.appended(second.records, 2);
    assert!(committed(&s, "h").is_empty(), "not on the ISR yet");
    // The second commit's wait ends first: both apply, in the log's order.
    s.replicated_to(2);
    s.replicated_to(1);
    assert_eq!(committed(&s, "h"), vec![("t".to_string(), 2)]);
}

#[test]
fn the_protocol_is_the_one_most_members_prefer_among_those_all_support() {
    // Kafka's selectProtocol: a prefers range, b and c roundrobin; all support both. All
    // three join within the initial rebalance delay.
    let (mut s, t0) = (shard(), Instant::now());
    s.config.initial_rebalance_delay_ms = 3_000;
    let md = Bytes::from_static(b"m");
    let mut waiting = Vec::new();
    for (i, (client, first, second)) in [
        ("a", "range", "roundrobin"),
        ("b", "roundrobin", "range"),
        ("c", "roundrobin", "range"),
    ]
    .into_iter()
    .enumerate()
    {
        let p = join("g", client, &[(first, md.clone()), (second, md.clone())]);
        waiting.push(later(s.join(p, at(t0, i as u64)).answer));
    }
    assert_eq!(s.groups["g"].state, GroupState::PreparingRebalance);
    let _ = s.tick(at(t0, 3_000));
    let j = waiting[2].try_recv().expect("joined");
    assert_eq!(j.protocol_name.as_deref(), Some("roundrobin"));
}
