//! The consumer: manual assignment with seek, or group membership with the classic protocol
//! (range and cooperative-sticky assignors, static membership), auto or manual commit, and
//! rebalance callbacks. One task drives it through [`Consumer::poll`], as with Kafka's
//! consumer; heartbeats run in the background.
//!
//! Fetches are pipelined: when a leader answers, the next Fetch to it is sent before the
//! records are handed to the application.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FetchRequest,
    FetchResponse, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::assignor::{Assignor, MemberSubscription, TopicPartition};
use crate::cluster::{ClientConfig, Cluster};
use crate::error::{Error, Result};
use crate::offsets::{self, CommitIdentity, EARLIEST, LATEST};
use crate::records::{decode_batches, ConsumerRecord};

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// The log start offset.
    Beginning,
    /// The high watermark: only records produced from now on.
    End,
    /// An exact offset.
    At(i64),
    /// The first record with a timestamp at or after this time (ms since the epoch); the end
    /// if there is none.
    Timestamp(i64),
}

/// `auto.offset.reset`: where to start when there is no committed offset or it is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// `earliest`.
    Earliest,
    /// `latest` (Kafka's default).
    Latest,
    /// `none`: fail instead.
    None,
}

/// Consumer settings, named after Kafka's consumer configs.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// `group.id`; needed for [`Consumer::subscribe`] and commits.
    pub group_id: Option<String>,
    /// `group.instance.id`: static membership (KIP-345).
    pub group_instance_id: Option<String>,
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
    /// `enable.auto.commit`.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval: Duration,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms`, sent as the rebalance timeout.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `partition.assignment.strategy`, in order of preference.
    pub assignors: Vec<Assignor>,
    /// `fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`.
    pub max_partition_fetch_bytes: i32,
    /// `fetch.max.wait.ms`.
    pub fetch_max_wait: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client: ClientConfig::default(),
            group_id: None,
            group_instance_id: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            fetch_min_bytes: 1,
            fetch_max_bytes: 52_428_800,
            max_partition_fetch_bytes: 1_048_576,
            fetch_max_wait: Duration::from_millis(500),
        }
    }
}

/// Told about partitions given to or taken from this consumer, from inside [`Consumer::poll`].
pub trait RebalanceListener: Send {
    /// Partitions this consumer no longer owns; commit or flush work for them here.
    fn on_partitions_revoked(&mut self, _partitions: &[TopicPartition]) {}
    /// Partitions newly given to this consumer.
    fn on_partitions_assigned(&mut self, _partitions: &[TopicPartition]) {}
}

#[derive(Debug, Clone, Default)]
struct Membership {
    member_id: String,
    generation: i32,
    joined: bool,
}

struct Group {
    id: String,
    member: Arc<Mutex<Membership>>,
    rejoin: Arc<AtomicBool>,
    protocol: Option<Assignor>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

struct FetchResult {
    leader: i32,
    epoch: u64,
    offsets: Vec<(TopicPartition, i64)>,
    response: Result<FetchResponse>,
}

/// A Kafka consumer.
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    subscription: Vec<String>,
    assigned: BTreeSet<TopicPartition>,
    positions: HashMap<TopicPartition, i64>,
    seeks: HashMap<TopicPartition, Offset>,
    epoch: u64,
    results_tx: mpsc::UnboundedSender<FetchResult>,
    results: mpsc::UnboundedReceiver<FetchResult>,
    fetching: HashSet<i32>,
    buffered: Vec<ConsumerRecord>,
    names: HashMap<String, Arc<str>>,
    high_watermarks: HashMap<TopicPartition, i64>,
    group: Option<Group>,
    /// In a mutex only so that `Consumer` is `Sync` (and its futures `Send`) without
    /// asking listeners to be `Sync`; it is only ever reached through `&mut self`.
    listener: Option<std::sync::Mutex<Box<dyn RebalanceListener>>>,
    last_commit: Instant,
}

impl Consumer {
    /// A consumer; connects on first use.
    pub fn new(config: ConsumerConfig) -> Result<Consumer> {
        let cluster = Arc::new(Cluster::new(config.client.clone())?);
        if config.assignors.is_empty() {
            return Err(Error::Invalid(
                "partition.assignment.strategy needs at least one assignor".into(),
            ));
        }
        let (results_tx, results) = mpsc::unbounded_channel();
        let group = config.group_id.clone().map(|id| Group {
            id,
            member: Arc::default(),
            rejoin: Arc::default(),
            protocol: None,
            heartbeat: None,
        });
        Ok(Consumer {
            cluster,
            config,
            subscription: Vec::new(),
            assigned: BTreeSet::new(),
            positions: HashMap::new(),
            seeks: HashMap::new(),
            epoch: 0,
            results_tx,
            results,
            fetching: HashSet::new(),
            buffered: Vec::new(),
            names: HashMap::new(),
            high_watermarks: HashMap::new(),
            group,
            listener: None,
            last_commit: Instant::now(),
        })
    }

    /// The cluster handle (metadata, connections) this consumer uses.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Reads `partitions` directly, without group membership.
    pub fn assign(&mut self, partitions: Vec<TopicPartition>) {
        self.set_assignment(partitions.into_iter().collect());
    }

    /// Joins the consumer group (`group.id`) and reads the partitions it is given.
    pub fn subscribe(&mut self, topics: Vec<String>) -> Result<()> {
        let Some(g) = &self.group else {
            return Err(Error::Invalid("subscribe needs a group.id".into()));
        };
        self.subscription = topics;
        g.rejoin.store(true, Ordering::Release);
        Ok(())
    }

    /// Sets the callbacks run when partitions are assigned or revoked.
    pub fn set_rebalance_listener(&mut self, listener: Box<dyn RebalanceListener>) {
        self.listener = Some(std::sync::Mutex::new(listener));
    }

    /// Moves the read position of an assigned partition.
    pub fn seek(&mut self, partition: TopicPartition, offset: Offset) {
        self.positions.remove(&partition);
        self.seeks.insert(partition, offset);
        self.epoch += 1;
    }

    /// The partitions this consumer reads now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assigned.iter().cloned().collect()
    }

    /// The next offset to be read from `partition`, once known.
    pub fn position(&self, partition: &TopicPartition) -> Option<i64> {
        self.positions.get(partition).copied()
    }

    /// The high watermark of `partition` seen in the last fetch from it.
    pub fn high_watermark(&self, partition: &TopicPartition) -> Option<i64> {
        self.high_watermarks.get(partition).copied()
    }

    fn set_assignment(&mut self, partitions: BTreeSet<TopicPartition>) {
        self.positions.retain(|tp, _| partitions.contains(tp));
        self.seeks.retain(|tp, _| partitions.contains(tp));
        self.assigned = partitions;
        self.buffered.clear();
        self.epoch += 1;
    }

    /// Waits up to `timeout` for records and returns what arrived (maybe nothing). Group
    /// membership, rebalances, offset resets and auto-commit all happen in here.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.maintain_group().await?;
            self.resolve_positions().await?;
            self.start_fetches().await;
            if !self.buffered.is_empty() {
                return Ok(std::mem::take(&mut self.buffered));
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            if self.fetching.is_empty() {
                // Nothing to read (no assignment yet, or leaders unknown): wait a little.
                let pause = wait.min(self.config.client.retry_backoff);
                tokio::time::sleep(pause).await;
                if Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                continue;
            }
            let result = match tokio::time::timeout(wait, self.results.recv()).await {
                Ok(Some(r)) => r,
                Ok(None) => return Err(Error::Closed),
                Err(_) => return Ok(Vec::new()),
            };
            self.handle_fetch(result).await?;
            self.start_fetches().await;
            if !self.buffered.is_empty() {
                return Ok(std::mem::take(&mut self.buffered));
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    fn topic_name(&mut self, topic: &str) -> Arc<str> {
        Arc::clone(
            self.names
                .entry(topic.to_string())
                .or_insert_with(|| Arc::from(topic)),
        )
    }

    /// Finds a start offset for every assigned partition that has none.
    async fn resolve_positions(&mut self) -> Result<()> {
        let missing: Vec<TopicPartition> = self
            .assigned
            .iter()
            .filter(|tp| !self.positions.contains_key(*tp))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut by_time: BTreeMap<i64, Vec<TopicPartition>> = BTreeMap::new();
        let mut need_committed = Vec::new();
        for tp in missing {
            match self.seeks.get(&tp) {
                Some(Offset::At(o)) => {
                    self.positions.insert(tp, *o);
                }
                Some(Offset::Beginning) => by_time.entry(EARLIEST).or_default().push(tp),
                Some(Offset::End) => by_time.entry(LATEST).or_default().push(tp),
                Some(Offset::Timestamp(t)) => by_time.entry(*t).or_default().push(tp),
                None => need_committed.push(tp),
            }
        }
        if !need_committed.is_empty() {
            let committed = match &self.group {
                Some(g) => offsets::committed(&self.cluster, &g.id, Some(&need_committed)).await?,
                None => BTreeMap::new(),
            };
            for tp in need_committed {
                match committed.get(&tp) {
                    Some(c) => {
                        self.positions.insert(tp, c.offset);
                    }
                    None => match self.config.auto_offset_reset {
                        OffsetReset::Earliest => by_time.entry(EARLIEST).or_default().push(tp),
                        OffsetReset::Latest => by_time.entry(LATEST).or_default().push(tp),
                        OffsetReset::None => {
                            return Err(Error::Invalid(format!(
                                "no committed offset for {}-{} and auto.offset.reset is none",
                                tp.0, tp.1
                            )))
                        }
                    },
                }
            }
        }
        for (timestamp, tps) in by_time {
            let found = offsets::list_offsets(&self.cluster, &tps, timestamp).await?;
            let mut no_match = Vec::new();
            for tp in tps {
                match found.get(&tp) {
                    Some(o) if *o >= 0 => {
                        self.positions.insert(tp.clone(), *o);
                        self.seeks.remove(&tp);
                    }
                    _ => no_match.push(tp),
                }
            }
            if !no_match.is_empty() {
                // No record that late: start at the end, as Kafka's tools do.
                let ends = offsets::list_offsets(&self.cluster, &no_match, LATEST).await?;
                for (tp, o) in ends {
                    self.seeks.remove(&tp);
                    self.positions.insert(tp, o);
                }
            }
        }
        Ok(())
    }

    /// Sends a Fetch to every leader that has none outstanding.
    async fn start_fetches(&mut self) {
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        let cached = self.cluster.cached();
        let mut unknown = BTreeSet::new();
        for tp in &self.assigned {
            let Some(&offset) = self.positions.get(tp) else {
                continue;
            };
            let leader = cached
                .topics
                .get(&tp.0)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == tp.1))
                .map(|p| p.leader);
            match leader {
                Some(l) if l >= 0 => by_leader.entry(l).or_default().push((tp.clone(), offset)),
                _ => {
                    unknown.insert(tp.0.clone());
                }
            }
        }
        for topic in unknown {
            if let Err(e) = self.cluster.topic(&topic, false).await {
                tracing::debug!(%topic, error = %e, "no metadata for an assigned topic yet");
            }
        }
        for (leader, offsets) in by_leader {
            if !self.fetching.insert(leader) {
                continue;
            }
            let mut topics: Vec<FetchTopic> = Vec::new();
            for ((t, p), o) in &offsets {
                let part = FetchPartition::default()
                    .with_partition(*p)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(*o)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(self.config.max_partition_fetch_bytes);
                match topics.iter_mut().find(|x| x.topic.0.as_str() == t) {
                    Some(x) => x.partitions.push(part),
                    None => topics.push(
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(vec![part]),
                    ),
                }
            }
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(self.config.fetch_max_wait.as_millis() as i32)
                .with_min_bytes(self.config.fetch_min_bytes)
                .with_max_bytes(self.config.fetch_max_bytes)
                .with_isolation_level(0)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(topics);
            let cluster = Arc::clone(&self.cluster);
            let tx = self.results_tx.clone();
            let epoch = self.epoch;
            let timeout = self.config.client.request_timeout + self.config.fetch_max_wait;
            tokio::spawn(async move {
                let response = async {
                    let conn = cluster.broker(leader).await?;
                    conn.start(&request)
                        .await?
                        .with_timeout(timeout)
                        .wait()
                        .await
                }
                .await;
                // The consumer may be gone; then nobody needs the answer.
                let _ = tx.send(FetchResult {
                    leader,
                    epoch,
                    offsets,
                    response,
                });
            });
        }
    }

    async fn handle_fetch(&mut self, result: FetchResult) -> Result<()> {
        self.fetching.remove(&result.leader);
        let response = match result.response {
            Ok(r) => r,
            Err(e) if e.is_retriable() => {
                tracing::debug!(leader = result.leader, error = %e, "fetch failed; retrying");
                for ((t, _), _) in &result.offsets {
                    self.cluster.invalidate(t);
                }
                tokio::time::sleep(self.config.client.retry_backoff).await;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        crate::error::check(response.error_code, || {
            format!("fetching from broker {}", result.leader)
        })?;
        let stale = result.epoch != self.epoch;
        for topic in response.responses {
            let name = self.topic_name(topic.topic.0.as_str());
            for p in topic.partitions {
                let tp = (name.to_string(), p.partition_index);
                let Some(fetched_at) = result
                    .offsets
                    .iter()
                    .find(|(x, _)| *x == tp)
                    .map(|(_, o)| *o)
                else {
                    continue;
                };
                if stale || self.positions.get(&tp) != Some(&fetched_at) {
                    continue; // the application moved the position meanwhile
                }
                match p.error_code {
                    0 => {
                        self.high_watermarks.insert(tp.clone(), p.high_watermark);
                        let data = p.records.unwrap_or_default();
                        let (records, next) = decode_batches(&name, tp.1, data, fetched_at)?;
                        if let Some(next) = next {
                            self.positions.insert(tp, next.max(fetched_at));
                        }
                        self.buffered.extend(records);
                    }
                    // OFFSET_OUT_OF_RANGE
                    1 => {
                        let reset = match self.config.auto_offset_reset {
                            OffsetReset::Earliest => Offset::Beginning,
                            OffsetReset::Latest => Offset::End,
                            OffsetReset::None => {
                                return Err(Error::from_code(1, || {
                                    format!(
                                        "offset {fetched_at} of {}-{} (auto.offset.reset is none)",
                                        tp.0, tp.1
                                    )
                                })
                                .expect("non-zero"))
                            }
                        };
                        tracing::info!(topic = %tp.0, partition = tp.1, offset = fetched_at, "offset out of range; resetting");
                        self.seek(tp, reset);
                    }
                    code => {
                        let e = Error::from_code(code, || {
                            format!("fetching {}-{} from broker {}", tp.0, tp.1, result.leader)
                        })
                        .expect("non-zero");
                        if !e.is_retriable() {
                            return Err(e);
                        }
                        self.cluster.invalidate(&tp.0);
                    }
                }
            }
        }
        Ok(())
    }

    fn identity(&self) -> CommitIdentity {
        match &self.group {
            Some(g) => {
                let m = g.member.lock();
                CommitIdentity {
                    generation: if m.joined { m.generation } else { -1 },
                    member_id: if m.joined {
                        m.member_id.clone()
                    } else {
                        String::new()
                    },
                    group_instance_id: self.config.group_instance_id.clone(),
                }
            }
            None => CommitIdentity::default(),
        }
    }

    /// Commits the current position of every assigned partition.
    pub async fn commit(&mut self) -> Result<()> {
        let offsets: BTreeMap<TopicPartition, i64> = self
            .assigned
            .iter()
            .filter_map(|tp| self.positions.get(tp).map(|o| (tp.clone(), *o)))
            .collect();
        self.commit_offsets(&offsets).await
    }

    /// Commits `offsets` (the next offset to read, per partition) for the group.
    pub async fn commit_offsets(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        let Some(g) = &self.group else {
            return Err(Error::Invalid("committing offsets needs a group.id".into()));
        };
        let r = offsets::commit(&self.cluster, &g.id, &self.identity(), offsets).await;
        if let Err(e) = &r {
            // ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS: the group moved on.
            if e.kafka().is_some_and(|k| [22, 25, 27].contains(&k.code())) {
                g.rejoin.store(true, Ordering::Release);
            }
        }
        self.last_commit = Instant::now();
        r
    }

    async fn auto_commit(&mut self) {
        if let Err(e) = self.commit().await {
            tracing::warn!(error = %e, "auto-commit failed");
        }
    }

    /// Joins or rejoins the group when needed, and auto-commits on schedule.
    async fn maintain_group(&mut self) -> Result<()> {
        let Some(g) = &self.group else {
            return Ok(());
        };
        if self.subscription.is_empty() {
            return Ok(());
        }
        let due = self.config.enable_auto_commit
            && g.member.lock().joined
            && self.last_commit.elapsed() >= self.config.auto_commit_interval;
        if due {
            self.auto_commit().await;
        }
        let g = self.group.as_ref().expect("checked");
        if g.rejoin.swap(false, Ordering::AcqRel) || !g.member.lock().joined {
            self.join().await?;
        }
        Ok(())
    }

    fn cooperative(&self) -> bool {
        self.config.assignors.iter().all(|a| a.is_cooperative())
    }

    fn revoke(&mut self, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        if let Some(l) = &mut self.listener {
            let l = l.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
            l.on_partitions_revoked(partitions);
        }
    }

    async fn join(&mut self) -> Result<()> {
        let cooperative = self.cooperative();
        if !cooperative && !self.assigned.is_empty() {
            if self.config.enable_auto_commit {
                self.auto_commit().await;
            }
            let all = self.assignment();
            self.revoke(&all);
            self.set_assignment(BTreeSet::new());
        }
        let group_id = self.group.as_ref().expect("in a group").id.clone();
        let started = Instant::now();
        loop {
            match self.join_once(&group_id).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let code = e.kafka().map(|k| k.code());
                    // UNKNOWN_MEMBER_ID / FENCED: start over with a fresh member id.
                    if code == Some(25) {
                        self.group
                            .as_ref()
                            .expect("group")
                            .member
                            .lock()
                            .member_id
                            .clear();
                    }
                    let retry = e.is_retriable() || matches!(code, Some(25 | 22 | 27 | 79));
                    if !retry || started.elapsed() > self.config.rebalance_timeout {
                        return Err(e);
                    }
                    tracing::debug!(group = %group_id, error = %e, "rejoining");
                    tokio::time::sleep(self.config.client.retry_backoff).await;
                }
            }
        }
    }

    async fn join_once(&mut self, group_id: &str) -> Result<()> {
        let cooperative = self.cooperative();
        let owned: Vec<OwnedTopic> = group_topics(&self.assigned)
            .into_iter()
            .map(|(t, ps)| {
                OwnedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t)))
                    .with_partitions(ps)
            })
            .collect();
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(
                self.subscription
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            )
            .with_owned_partitions(if cooperative { owned } else { Vec::new() });
        let metadata = encode_versioned(&subscription, 1)?;
        let (member, g_member) = {
            let g = self.group.as_ref().expect("in a group");
            (g.member.lock().clone(), Arc::clone(&g.member))
        };
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group_id.to_string())))
            .with_session_timeout_ms(self.config.session_timeout.as_millis() as i32)
            .with_rebalance_timeout_ms(self.config.rebalance_timeout.as_millis() as i32)
            .with_member_id(StrBytes::from_string(member.member_id.clone()))
            .with_group_instance_id(
                self.config
                    .group_instance_id
                    .clone()
                    .map(StrBytes::from_string),
            )
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(
                self.config
                    .assignors
                    .iter()
                    .map(|a| {
                        JoinGroupRequestProtocol::default()
                            .with_name(StrBytes::from_static_str(a.name()))
                            .with_metadata(metadata.clone())
                    })
                    .collect(),
            );
        let conn = self.cluster.coordinator(group_id).await?;
        let wait = self.config.rebalance_timeout + Duration::from_secs(5);
        // Whatever asked for a rejoin until now (a heartbeat, a failed commit) is answered by
        // this join; leaving the flag set would start yet another rebalance right after it.
        if let Some(g) = &self.group {
            g.rejoin.store(false, Ordering::Release);
        }
        let r = conn.start(&join).await?.with_timeout(wait).wait().await?;
        if r.error_code == 79 {
            // MEMBER_ID_REQUIRED (KIP-394): rejoin with the id the coordinator chose.
            g_member.lock().member_id = r.member_id.to_string();
        }
        offsets::coordinator_check(&self.cluster, group_id, r.error_code, "joining")?;
        let member_id = r.member_id.to_string();
        let generation = r.generation_id;
        let protocol = r
            .protocol_name
            .as_ref()
            .and_then(|n| Assignor::from_name(n.as_str()))
            .ok_or_else(|| Error::Protocol {
                broker: conn.addr().to_string(),
                message: format!(
                    "group {group_id} chose an unknown protocol {:?}",
                    r.protocol_name
                ),
            })?;
        {
            let mut m = g_member.lock();
            m.member_id = member_id.clone();
            m.generation = generation;
        }
        let assignments = if r.leader == r.member_id {
            self.lead(protocol, &r.members).await?
        } else {
            Vec::new()
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group_id.to_string())))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.clone()))
            .with_group_instance_id(
                self.config
                    .group_instance_id
                    .clone()
                    .map(StrBytes::from_string),
            )
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str(protocol.name())))
            .with_assignments(assignments);
        let s = conn.start(&sync).await?.with_timeout(wait).wait().await?;
        offsets::coordinator_check(&self.cluster, group_id, s.error_code, "syncing with")?;
        let assigned = decode_assignment(s.assignment)?;
        tracing::debug!(group = group_id, member = %member_id, generation, partitions = assigned.len(), "joined");
        g_member.lock().joined = true;
        if let Some(g) = &mut self.group {
            g.protocol = Some(protocol);
        }
        self.apply_assignment(assigned, protocol.is_cooperative())
            .await;
        self.ensure_heartbeat();
        Ok(())
    }

    /// As the group leader: runs the assignor over every member's subscription.
    async fn lead(
        &self,
        protocol: Assignor,
        members: &[kafka_protocol::messages::join_group_response::JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut subs = Vec::new();
        for m in members {
            let s = decode_subscription(m.metadata.clone())?;
            subs.push(MemberSubscription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                topics: s.topics.iter().map(|t| t.to_string()).collect(),
                owned: s
                    .owned_partitions
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(move |p| (t.topic.0.to_string(), *p))
                    })
                    .collect(),
            });
        }
        let topics: BTreeSet<String> = subs.iter().flat_map(|s| s.topics.clone()).collect();
        let topics: Vec<String> = topics.into_iter().collect();
        let metadata = self.cluster.refresh(Some(&topics), false).await?;
        let counts: BTreeMap<String, i32> = metadata
            .topics
            .values()
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect();
        let plan = protocol.assign(&subs, &counts);
        let mut out = Vec::new();
        for (member, tps) in plan {
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                group_topics(&tps.into_iter().collect())
                    .into_iter()
                    .map(|(t, ps)| {
                        AssignedTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
            out.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(encode_versioned(&assignment, 1)?),
            );
        }
        Ok(out)
    }

    async fn apply_assignment(&mut self, new: BTreeSet<TopicPartition>, cooperative: bool) {
        let revoked: Vec<TopicPartition> = self.assigned.difference(&new).cloned().collect();
        let added: Vec<TopicPartition> = new.difference(&self.assigned).cloned().collect();
        if !revoked.is_empty() {
            if self.config.enable_auto_commit {
                let offsets: BTreeMap<TopicPartition, i64> = revoked
                    .iter()
                    .filter_map(|tp| self.positions.get(tp).map(|o| (tp.clone(), *o)))
                    .collect();
                if let Err(e) = self.commit_offsets(&offsets).await {
                    tracing::warn!(error = %e, "committing revoked partitions failed");
                }
            }
            self.revoke(&revoked);
            if cooperative {
                // KIP-429: after giving partitions up, rejoin so they can move.
                if let Some(g) = &self.group {
                    g.rejoin.store(true, Ordering::Release);
                }
            }
        }
        self.set_assignment(new);
        if let Some(l) = &mut self.listener {
            if !added.is_empty() {
                let l = l.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
                l.on_partitions_assigned(&added);
            }
        }
    }

    fn ensure_heartbeat(&mut self) {
        let Some(g) = &mut self.group else { return };
        if g.heartbeat.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let cluster = Arc::clone(&self.cluster);
        let member = Arc::clone(&g.member);
        let rejoin = Arc::clone(&g.rejoin);
        let group_id = g.id.clone();
        let instance = self.config.group_instance_id.clone();
        let interval = self.config.heartbeat_interval;
        g.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let m = member.lock().clone();
                if !m.joined {
                    continue;
                }
                let request = HeartbeatRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group_id.clone())))
                    .with_generation_id(m.generation)
                    .with_member_id(StrBytes::from_string(m.member_id.clone()))
                    .with_group_instance_id(instance.clone().map(StrBytes::from_string));
                let r = async { cluster.coordinator(&group_id).await?.call(&request).await }.await;
                if member.lock().generation != m.generation {
                    // A rebalance finished while this heartbeat was out: its answer is stale.
                    continue;
                }
                match r {
                    Ok(r) => match r.error_code {
                        0 => {}
                        // REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID
                        27 | 22 | 25 | 82 => {
                            if r.error_code == 25 {
                                member.lock().member_id.clear();
                            }
                            if r.error_code != 27 {
                                member.lock().joined = false;
                            }
                            rejoin.store(true, Ordering::Release);
                        }
                        15 | 16 => cluster.invalidate_coordinator(&group_id),
                        code => tracing::warn!(group = %group_id, code, "heartbeat failed"),
                    },
                    Err(e) => {
                        tracing::debug!(group = %group_id, error = %e, "heartbeat failed");
                        cluster.invalidate_coordinator(&group_id);
                    }
                }
            }
        }));
    }

    /// Commits (with auto-commit), leaves the group (unless static) and stops heartbeats.
    pub async fn close(mut self) -> Result<()> {
        let Some(g) = &self.group else {
            return Ok(());
        };
        let joined = g.member.lock().joined;
        if !joined {
            return Ok(());
        }
        if self.config.enable_auto_commit {
            self.auto_commit().await;
        }
        let all = self.assignment();
        self.revoke(&all);
        let g = self.group.as_mut().expect("checked");
        if let Some(h) = g.heartbeat.take() {
            h.abort();
        }
        if self.config.group_instance_id.is_some() {
            // Static members keep their place until session.timeout.ms (KIP-345).
            return Ok(());
        }
        let member_id = StrBytes::from_string(g.member.lock().member_id.clone());
        let conn = self.cluster.coordinator(&g.id).await?;
        let version = conn.version::<LeaveGroupRequest>()?;
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(g.id.clone())));
        // v3 (KIP-345) moved the member id into a list of members.
        let request = if version >= 3 {
            request.with_members(vec![MemberIdentity::default().with_member_id(member_id)])
        } else {
            request.with_member_id(member_id)
        };
        let r = conn.call_at(&request, version).await?;
        crate::error::check(r.error_code, || format!("leaving group {}", g.id))?;
        for m in &r.members {
            crate::error::check(m.error_code, || format!("leaving group {}", g.id))?;
        }
        Ok(())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(h) = self.group.as_mut().and_then(|g| g.heartbeat.take()) {
            h.abort();
        }
    }
}

fn group_topics(tps: &BTreeSet<TopicPartition>) -> BTreeMap<String, Vec<i32>> {
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        out.entry(t.clone()).or_default().push(*p);
    }
    out
}

/// Consumer protocol payloads carry their version as a leading i16.
fn encode_versioned<M: Encodable>(m: &M, version: i16) -> Result<Bytes> {
    let mut b = BytesMut::new();
    b.put_i16(version);
    m.encode(&mut b, version)
        .map_err(|e| Error::Invalid(format!("cannot encode group metadata: {e}")))?;
    Ok(b.freeze())
}

fn decode_versioned<M: Decodable>(mut b: Bytes, what: &str) -> Result<M> {
    if b.len() < 2 {
        return Err(Error::Protocol {
            broker: "group coordinator".into(),
            message: format!("{what} of {} bytes", b.len()),
        });
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    let _ = bytes::Buf::get_i16(&mut b);
    // Newer versions only append fields; read them as the newest version known here.
    M::decode(&mut b, version.clamp(0, 3)).map_err(|e| Error::Protocol {
        broker: "group coordinator".into(),
        message: format!("cannot decode {what}: {e}"),
    })
}

fn decode_subscription(b: Bytes) -> Result<ConsumerProtocolSubscription> {
    decode_versioned(b, "a member's subscription")
}

fn decode_assignment(b: Bytes) -> Result<BTreeSet<TopicPartition>> {
    if b.is_empty() {
        return Ok(BTreeSet::new());
    }
    let a: ConsumerProtocolAssignment = decode_versioned(b, "the assignment")?;
    Ok(a.assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic.0.to_string(), *p))
        })
        .collect())
}
