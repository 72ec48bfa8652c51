//! Followers copy their leaders' logs with the Kafka protocol: one task per leader broker
//! sends Fetch requests with this node's replica id for every partition it follows there.
//! A follower of a new leader epoch first truncates with OffsetForLeaderEpoch, so it never
//! keeps records the new leader lacks; where to cut is `sluice_replication::follower`'s
//! decision.
//!
//! Concurrency: each round works from one snapshot of every partition's replica state, and
//! the log changes it makes (append, truncate, restart) recheck that state's leader epoch
//! under the partition's lock, so a leader change applied meanwhile voids them. A task
//! leaves [`FetcherTasks`] in the same step as it finds nothing to follow, so a leader that
//! is followed again just then gets a new task.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use sluice_replication::follower::{self, EpochEndOffset, Truncation};
use sluice_storage::{LeaderEpoch, Offset, TopicPartition};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::peer::Peer;
use super::Cluster;
use crate::replica_manager::{Partition, Replica, ReplicaManager};

/// Fetch request version followers send: from v15 the follower names itself and its broker
/// epoch in ReplicaState (KIP-903), so the leader can tell a follower of this incarnation
/// from a client claiming a replica id; topics go by id (v13+, KIP-516).
const FETCH_VERSION: i16 = 15;
/// OffsetForLeaderEpoch version followers send (with the replica id).
const EPOCH_VERSION: i16 = 4;
/// Bytes one fetch response may carry over all partitions (`replica.fetch.response.max.bytes`).
const RESPONSE_MAX_BYTES: i32 = 10 << 20;

/// Settings of the fetchers.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// `replica.fetch.wait.max.ms`.
    pub wait_max_ms: i32,
    /// `replica.fetch.max.bytes`.
    pub partition_max_bytes: i32,
    /// `replica.fetch.backoff.ms`.
    pub backoff: Duration,
    /// `inter.broker.listener.name`: which of the leader's listeners to fetch from.
    pub listener: String,
}

/// The running fetcher tasks, one per leader.
pub struct Fetchers {
    cluster: Arc<Cluster>,
    rm: Arc<ReplicaManager>,
    settings: FetchSettings,
    tasks: Arc<FetcherTasks>,
    stop: watch::Receiver<bool>,
}

/// The fetcher task of each leader. A task counts here until it leaves through
/// [`FetcherTasks::leave_unless_followed`]: the check that it has nothing left to follow and
/// its removal happen under the lock [`FetcherTasks::start_missing`] takes, so a leader
/// followed again just as its task ends gets a new one instead of a task about to return.
#[derive(Default)]
pub struct FetcherTasks {
    tasks: Mutex<HashMap<i32, JoinHandle<()>>>,
}

impl FetcherTasks {
    /// Starts, with `spawn`, a task for each of `leaders` that has none. A task that ended
    /// otherwise (aborted, panicked, stopped) no longer counts.
    pub fn start_missing(
        &self,
        leaders: impl IntoIterator<Item = i32>,
        mut spawn: impl FnMut(i32) -> JoinHandle<()>,
    ) {
        let mut tasks = self.tasks.lock();
        tasks.retain(|_, t| !t.is_finished());
        for leader in leaders {
            tasks.entry(leader).or_insert_with(|| spawn(leader));
        }
    }

    /// For the task of `leader`: what `followed` finds, or `None` after removing the task,
    /// which must then end. `followed` is asked under the lock when it first finds nothing.
    pub fn leave_unless_followed<T>(
        &self,
        leader: i32,
        followed: impl Fn() -> Option<T>,
    ) -> Option<T> {
        if let Some(found) = followed() {
            return Some(found);
        }
        let mut tasks = self.tasks.lock();
        let found = followed();
        if found.is_none() {
            tasks.remove(&leader);
        }
        found
    }

    /// Whether `leader` has a task.
    pub fn has(&self, leader: i32) -> bool {
        self.tasks.lock().contains_key(&leader)
    }

    fn drain(&self) -> Vec<JoinHandle<()>> {
        self.tasks.lock().drain().map(|(_, t)| t).collect()
    }
}

impl Fetchers {
    /// No tasks yet; [`Fetchers::update`] starts them.
    pub fn new(
        cluster: Arc<Cluster>,
        rm: Arc<ReplicaManager>,
        settings: FetchSettings,
        stop: watch::Receiver<bool>,
    ) -> Fetchers {
        Fetchers {
            cluster,
            rm,
            settings,
            tasks: Arc::new(FetcherTasks::default()),
            stop,
        }
    }

    /// Starts a fetcher for every leader this node follows a partition of and has none.
    /// Fetchers end by themselves when they have nothing left to follow.
    pub fn update(&self) {
        self.tasks
            .start_missing(self.rm.leaders_followed(), |leader| {
                tokio::spawn(run(
                    leader,
                    Arc::clone(&self.cluster),
                    Arc::clone(&self.rm),
                    Arc::clone(&self.tasks),
                    self.settings.clone(),
                    self.stop.clone(),
                ))
            });
    }

    /// Stops every fetcher. Aborting is safe: an append happens between awaits, whole.
    pub async fn join(&self) {
        for t in self.tasks.drain() {
            t.abort();
            if let Err(e) = t.await {
                if !e.is_cancelled() {
                    tracing::warn!(error = %e, "fetcher task failed");
                }
            }
        }
    }
}

async fn run(
    leader: i32,
    cluster: Arc<Cluster>,
    rm: Arc<ReplicaManager>,
    tasks: Arc<FetcherTasks>,
    settings: FetchSettings,
    mut stop: watch::Receiver<bool>,
) {
    let node = rm.node_id();
    let mut conn: Option<(String, Peer)> = None;
    // Partitions the leader refused, resting until then while the others are fetched.
    let mut delayed: HashMap<TopicPartition, Instant> = HashMap::new();
    tracing::info!(leader, "replica fetcher started");
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(mut parts) = tasks.leave_unless_followed(leader, || rm.followed_from(leader))
        else {
            tracing::info!(leader, "replica fetcher has nothing left to follow");
            return;
        };
        let now = Instant::now();
        delayed.retain(|_, until| *until > now);
        parts.retain(|p| !delayed.contains_key(&p.tp));
        if parts.is_empty() {
            let wake = delayed
                .values()
                .min()
                .copied()
                .unwrap_or(now + settings.backoff);
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => continue,
                _ = stop.changed() => return,
            }
        }
        let addr = cluster.image().brokers.get(&leader).and_then(|b| {
            b.endpoints
                .iter()
                .find(|e| e.name == settings.listener)
                .or(b.endpoints.first())
                .map(|e| format!("{}:{}", e.host, e.port))
        });
        let result = match addr {
            None => Err(format!("leader {leader} has no known address")),
            Some(addr) => {
                if conn
                    .as_ref()
                    .is_none_or(|(a, c)| *a != addr || c.is_closed())
                {
                    conn = match Peer::connect(
                        &addr,
                        &format!("sluice-replica-{node}"),
                        Duration::from_secs(10),
                    )
                    .await
                    {
                        Ok(c) => Some((addr, c)),
                        Err(e) => {
                            tracing::debug!(leader, error = %e, "cannot reach the leader");
                            None
                        }
                    };
                }
                match &conn {
                    None => Err(format!("cannot reach leader {leader}")),
                    Some((_, c)) => {
                        // -1 until registered: the leader refuses such a fetch, and the
                        // next round carries the epoch.
                        let follower = (node, cluster.broker_epoch().unwrap_or(-1));
                        fetch_once(c, follower, &rm, &parts, &settings)
                            .await
                            .map(|refused| {
                                for (tp, rest) in refused {
                                    delayed.insert(tp, Instant::now() + rest);
                                }
                            })
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(leader, error = %e, "replica fetch failed; backing off");
            conn = None;
            tokio::select! {
                _ = tokio::time::sleep(settings.backoff) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// How long a partition the leader refused rests. The leader and this follower learn of a
/// new topic or leader epoch a few milliseconds apart: those races are retried soon, not
/// after a full `replica.fetch.backoff.ms` that acks=all producers would wait out.
fn rest_after(e: ResponseError, backoff: Duration) -> Duration {
    match e {
        ResponseError::UnknownTopicOrPartition
        | ResponseError::UnknownTopicId
        | ResponseError::NotLeaderOrFollower
        | ResponseError::UnknownLeaderEpoch
        | ResponseError::FencedLeaderEpoch => backoff.min(METADATA_RACE_BACKOFF),
        _ => backoff,
    }
}

/// The rest after a refusal that newer metadata on either side resolves.
const METADATA_RACE_BACKOFF: Duration = Duration::from_millis(20);

/// One round: truncate partitions of a new epoch, then fetch the others once. Returns the
/// partitions the leader refused, each with how long to rest.
async fn fetch_once(
    conn: &Peer,
    (node, broker_epoch): (i32, i64),
    rm: &ReplicaManager,
    parts: &[Arc<Partition>],
    settings: &FetchSettings,
) -> Result<Vec<(TopicPartition, Duration)>, String> {
    // One read of each replica state for the round: the epoch a partition is fetched at
    // is the one it was found not to need truncation at.
    let (to_truncate, ready): (Vec<_>, Vec<_>) = parts
        .iter()
        .map(|p| (p, p.replica()))
        .partition(|(_, r)| r.needs_truncation);
    let mut refused = Vec::new();
    if !to_truncate.is_empty() {
        refused = truncate(conn, node, &to_truncate, settings.backoff).await?;
    }
    if ready.is_empty() {
        return Ok(refused);
    }
    let mut by_topic: BTreeMap<&str, Vec<(&Arc<Partition>, LeaderEpoch)>> = BTreeMap::new();
    for (p, r) in &ready {
        by_topic
            .entry(p.tp.topic.as_str())
            .or_default()
            .push((p, r.leader_epoch));
    }
    let ids: BTreeMap<&str, uuid::Uuid> = by_topic
        .keys()
        .filter_map(|name| rm.topic(name).map(|t| (*name, t.meta.id)))
        .collect();
    let topics = by_topic
        .iter()
        .filter_map(|(topic, ps)| {
            let id = ids.get(topic)?;
            Some(
                FetchTopic::default().with_topic_id(*id).with_partitions(
                    ps.iter()
                        .map(|(p, epoch)| {
                            let o = p.log.offsets();
                            FetchPartition::default()
                                .with_partition(p.tp.partition)
                                .with_current_leader_epoch(epoch.0)
                                .with_fetch_offset(o.log_end.0)
                                .with_last_fetched_epoch(-1)
                                .with_log_start_offset(o.log_start.0)
                                .with_partition_max_bytes(settings.partition_max_bytes)
                        })
                        .collect(),
                ),
            )
        })
        .collect();
    let req = FetchRequest::default()
        .with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(node))
                .with_replica_epoch(broker_epoch),
        )
        .with_max_wait_ms(settings.wait_max_ms)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_session_epoch(-1)
        .with_topics(topics);
    let resp = conn
        .call_at(&req, FETCH_VERSION)
        .await
        .map_err(|e| e.to_string())?;
    if resp.error_code != 0 {
        return Err(format!("fetch refused with error {}", resp.error_code));
    }
    for t in &resp.responses {
        for pd in &t.partitions {
            let name = ids
                .iter()
                .find(|(_, id)| **id == t.topic_id)
                .map(|(name, _)| *name);
            let Some((p, epoch)) = name.and_then(|n| by_topic.get(n)).and_then(|ps| {
                ps.iter()
                    .find(|(p, _)| p.tp.partition == pd.partition_index)
            }) else {
                continue;
            };
            match ResponseError::try_from_code(pd.error_code) {
                None => {
                    let records = pd.records.as_deref().unwrap_or_default();
                    // False when leadership moved while the fetch was out: the bytes are stale.
                    if let Err(e) = rm.append_replicated(
                        p,
                        *epoch,
                        records,
                        Offset(pd.high_watermark),
                        Offset(pd.log_start_offset),
                    ) {
                        tracing::error!(partition = %p.tp, error = %e, "cannot append replicated records");
                        refused.push((p.tp.clone(), settings.backoff));
                    }
                }
                Some(ResponseError::OffsetOutOfRange) => {
                    let end = p.log.offsets().log_end.0;
                    if pd.log_start_offset > end {
                        // Retention on the leader removed everything this replica would fetch next.
                        tracing::warn!(partition = %p.tp, from = end, to = pd.log_start_offset,
                            "the leader's log starts past this replica's end; starting over there");
                        if let Err(e) = p.restart_as_follower(*epoch, Offset(pd.log_start_offset)) {
                            tracing::error!(partition = %p.tp, error = %e, "cannot restart the log");
                            refused.push((p.tp.clone(), settings.backoff));
                        }
                    } else {
                        tracing::warn!(partition = %p.tp, offset = end,
                            "the leader has no records at this replica's log end; truncating again");
                        p.mark_needs_truncation(*epoch);
                        refused.push((p.tp.clone(), settings.backoff));
                    }
                }
                Some(e) => {
                    tracing::debug!(partition = %p.tp, error = ?e, "fetch refused for a partition");
                    refused.push((p.tp.clone(), rest_after(e, settings.backoff)));
                }
            }
        }
    }
    Ok(refused)
}

/// Truncates each partition to where its log and its new leader's agree (KIP-101/279), at
/// the leader epoch of the round's snapshot. Returns the partitions to rest: those the
/// leader refused or left unanswered, or whose truncation failed, as fetch errors rest.
async fn truncate(
    conn: &Peer,
    node: i32,
    parts: &[(&Arc<Partition>, Replica)],
    backoff: Duration,
) -> Result<Vec<(TopicPartition, Duration)>, String> {
    // (partition, the epoch it follows at, the latest epoch in its log) by topic
    type Asking<'a> = Vec<(&'a Arc<Partition>, LeaderEpoch, LeaderEpoch)>;
    let mut by_topic: BTreeMap<&str, Asking> = BTreeMap::new();
    let mut rest = Vec::new();
    for (p, r) in parts {
        match p.log.latest_epoch() {
            None => {
                if let Some(wait) = truncate_to_high_watermark(p, r.leader_epoch, backoff) {
                    rest.push((p.tp.clone(), wait));
                }
            }
            Some(latest) => {
                by_topic
                    .entry(p.tp.topic.as_str())
                    .or_default()
                    .push((p, r.leader_epoch, latest))
            }
        }
    }
    if by_topic.is_empty() {
        return Ok(rest);
    }
    let topics = by_topic
        .iter()
        .map(|(topic, ps)| {
            OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_string((*topic).to_string())))
                .with_partitions(
                    ps.iter()
                        .map(|(p, current, latest)| {
                            OffsetForLeaderPartition::default()
                                .with_partition(p.tp.partition)
                                .with_current_leader_epoch(current.0)
                                .with_leader_epoch(latest.0)
                        })
                        .collect(),
                )
        })
        .collect();
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(node))
        .with_topics(topics);
    let resp = conn
        .call_at(&req, EPOCH_VERSION)
        .await
        .map_err(|e| e.to_string())?;
    let mut unanswered: Vec<&Arc<Partition>> =
        by_topic.values().flatten().map(|(p, ..)| *p).collect();
    for t in &resp.topics {
        for r in &t.partitions {
            let Some((p, epoch, _)) = by_topic
                .get(t.topic.as_str())
                .and_then(|ps| ps.iter().find(|(p, ..)| p.tp.partition == r.partition))
            else {
                continue;
            };
            unanswered.retain(|u| !Arc::ptr_eq(u, p));
            let answer = EpochEndOffset {
                leader_epoch: LeaderEpoch(r.leader_epoch),
                end_offset: Offset(r.end_offset),
            };
            if let Some(wait) = on_epoch_answer(p, *epoch, r.error_code, answer, backoff) {
                rest.push((p.tp.clone(), wait));
            }
        }
    }
    rest.extend(unanswered.into_iter().map(|p| (p.tp.clone(), backoff)));
    Ok(rest)
}

/// Kafka's `truncateToHighWatermark` for a log that knows no leader epoch (records written
/// without one, or none at all): with no epoch to compare, only what was committed is known
/// to be the leader's too. Returns how long the partition rests if the truncation failed.
fn truncate_to_high_watermark(
    p: &Partition,
    epoch: LeaderEpoch,
    backoff: Duration,
) -> Option<Duration> {
    let o = p.log.offsets();
    let target = o.high_watermark.min(o.log_end);
    if target < o.log_end {
        tracing::info!(partition = %p.tp, from = o.log_end.0, to = target.0,
            "no leader epoch to compare; truncating to the high watermark");
    }
    match p.truncate_as_follower(epoch, target, true) {
        Ok(_) => None,
        Err(e) => {
            tracing::error!(partition = %p.tp, error = %e, "truncation failed");
            Some(backoff)
        }
    }
}

/// Truncates `p`, followed at `epoch`, as the leader's OffsetForLeaderEpoch answer says.
/// Returns how long the partition rests before it is tried again, if it must: a refusal
/// rests as a refused fetch does, so a leader that keeps refusing is not asked in a loop.
fn on_epoch_answer(
    p: &Partition,
    epoch: LeaderEpoch,
    error_code: i16,
    answer: EpochEndOffset,
    backoff: Duration,
) -> Option<Duration> {
    if error_code != 0 {
        tracing::debug!(partition = %p.tp, error = error_code, "OffsetForLeaderEpoch refused");
        return Some(
            ResponseError::try_from_code(error_code).map_or(backoff, |e| rest_after(e, backoff)),
        );
    }
    let o = p.log.offsets();
    let (target, done) = match follower::truncation(
        o.log_end,
        o.high_watermark,
        |e| p.log.end_offset_for_epoch(e),
        answer,
    ) {
        Truncation::Done { truncate_to } => (truncate_to, true),
        Truncation::Again {
            truncate_to,
            ask_with,
        } => {
            tracing::debug!(partition = %p.tp, to = truncate_to.0, epoch = ask_with.0,
                "the leader never had this replica's epoch; asking again with an older one");
            (truncate_to, false)
        }
    };
    if target < o.log_end {
        tracing::info!(partition = %p.tp, from = o.log_end.0, to = target.0, "truncating to the leader's log");
    }
    // Truncating at the log end too: it drops epochs this log never wrote in.
    match p.truncate_as_follower(epoch, target, done) {
        Ok(true) => None,
        Ok(false) => {
            tracing::debug!(partition = %p.tp, "leadership moved during truncation; asking again");
            None
        }
        Err(e) => {
            tracing::error!(partition = %p.tp, error = %e, "truncation failed");
            Some(backoff)
        }
    }
}

#[cfg(test)]
mod tests;
