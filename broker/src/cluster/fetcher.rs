//! Followers copy their leaders' logs with the Kafka protocol: one task per leader broker
//! sends Fetch requests with this node's replica id for every partition it follows there.
//! A follower of a new leader epoch first truncates with OffsetForLeaderEpoch, so it never
//! keeps records the new leader lacks.

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
use sluice_client::connection::Connection;
use sluice_storage::{LeaderEpoch, Offset, TopicPartition};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Cluster;
use crate::replica_manager::{Partition, ReplicaManager};

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
    tasks: Mutex<HashMap<i32, JoinHandle<()>>>,
    stop: watch::Receiver<bool>,
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
            tasks: Mutex::new(HashMap::new()),
            stop,
        }
    }

    /// Starts a fetcher for every leader this node follows a partition of and has none.
    /// Fetchers end by themselves when they have nothing left to follow.
    pub fn update(&self) {
        let mut tasks = self.tasks.lock();
        tasks.retain(|_, t| !t.is_finished());
        for leader in self.rm.leaders_followed() {
            tasks.entry(leader).or_insert_with(|| {
                tokio::spawn(run(
                    leader,
                    Arc::clone(&self.cluster),
                    Arc::clone(&self.rm),
                    self.settings.clone(),
                    self.stop.clone(),
                ))
            });
        }
    }

    /// Stops every fetcher. Aborting is safe: an append happens between awaits, whole.
    pub async fn join(&self) {
        let tasks: Vec<_> = self.tasks.lock().drain().map(|(_, t)| t).collect();
        for t in tasks {
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
    settings: FetchSettings,
    mut stop: watch::Receiver<bool>,
) {
    let node = rm.node_id();
    let mut conn: Option<(String, Connection)> = None;
    // Partitions the leader refused, resting until then while the others are fetched.
    let mut delayed: HashMap<TopicPartition, Instant> = HashMap::new();
    tracing::info!(leader, "replica fetcher started");
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(mut parts) = rm.followed_from(leader) else {
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
                    conn = match Connection::connect(
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
    conn: &Connection,
    (node, broker_epoch): (i32, i64),
    rm: &ReplicaManager,
    parts: &[Arc<Partition>],
    settings: &FetchSettings,
) -> Result<Vec<(TopicPartition, Duration)>, String> {
    let (to_truncate, ready): (Vec<_>, Vec<_>) =
        parts.iter().partition(|p| p.replica().needs_truncation);
    if !to_truncate.is_empty() {
        truncate(conn, node, &to_truncate).await?;
    }
    if ready.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_topic: BTreeMap<&str, Vec<(&Arc<Partition>, i32)>> = BTreeMap::new();
    for p in &ready {
        by_topic
            .entry(p.tp.topic.as_str())
            .or_default()
            .push((p, p.replica().leader_epoch));
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
                                .with_current_leader_epoch(*epoch)
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
    let mut refused = Vec::new();
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
                    // Leadership may have moved while the fetch was out: those bytes are stale.
                    if p.replica().leader_epoch != *epoch {
                        continue;
                    }
                    if let Err(e) =
                        rm.append_replicated(p, records, pd.high_watermark, pd.log_start_offset)
                    {
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
                        if let Err(e) = p
                            .log
                            .truncate_fully_and_start_at(Offset(pd.log_start_offset))
                        {
                            tracing::error!(partition = %p.tp, error = %e, "cannot restart the log");
                            refused.push((p.tp.clone(), settings.backoff));
                        }
                    } else {
                        tracing::warn!(partition = %p.tp, offset = end,
                            "the leader has no records at this replica's log end; truncating again");
                        p.mark_needs_truncation();
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

/// Truncates each partition to where its log and its new leader's agree (KIP-101/279).
async fn truncate(conn: &Connection, node: i32, parts: &[&Arc<Partition>]) -> Result<(), String> {
    // (partition, the epoch it follows at, the latest epoch in its log) by topic
    type Asking<'a> = Vec<(&'a Arc<Partition>, i32, Option<LeaderEpoch>)>;
    let mut by_topic: BTreeMap<&str, Asking> = BTreeMap::new();
    for p in parts {
        let epoch = p.replica().leader_epoch;
        match p.log.latest_epoch() {
            // Nothing written under any epoch: nothing to disagree about.
            None => p.truncated(epoch),
            latest => by_topic
                .entry(p.tp.topic.as_str())
                .or_default()
                .push((p, epoch, latest)),
        }
    }
    if by_topic.is_empty() {
        return Ok(());
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
                                .with_current_leader_epoch(*current)
                                .with_leader_epoch(latest.map_or(-1, |e| e.0))
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
    for t in &resp.topics {
        for r in &t.partitions {
            let Some((p, epoch, _)) = by_topic
                .get(t.topic.as_str())
                .and_then(|ps| ps.iter().find(|(p, ..)| p.tp.partition == r.partition))
            else {
                continue;
            };
            if r.error_code != 0 {
                tracing::debug!(partition = %p.tp, error = r.error_code, "OffsetForLeaderEpoch refused");
                continue;
            }
            let o = p.log.offsets();
            let (target, done) = if r.leader_epoch < 0 {
                // The leader knows no epoch as old as ours: keep only what was committed.
                (o.high_watermark.0, true)
            } else {
                // Where the last epoch both logs know ends, in each log (KIP-279).
                match p.log.end_offset_for_epoch(LeaderEpoch(r.leader_epoch)) {
                    Some((e, end)) if e.0 == r.leader_epoch => (r.end_offset.min(end.0), true),
                    // Our nearest older epoch may be one the leader never had: cut back to
                    // where it ends and ask again with it, then our latest. (Cutting nothing,
                    // as when only an empty epoch follows it, would ask the same again.)
                    Some((_, end)) if end.0 < o.log_end.0 => (end.0, false),
                    _ => (r.end_offset.min(o.log_end.0), true),
                }
            };
            if target < o.log_end.0 {
                tracing::info!(partition = %p.tp, from = o.log_end.0, to = target, "truncating to the leader's log");
                if let Err(e) = p.log.truncate_to(Offset(target)) {
                    tracing::error!(partition = %p.tp, error = %e, "truncation failed");
                    continue;
                }
            }
            if done {
                p.truncated(*epoch);
            }
        }
    }
    Ok(())
}
