//! The consumer: manual assignment with seek, or group membership with the classic protocol
//! (range and cooperative-sticky assignors, static membership), auto or manual commit, and
//! rebalance callbacks. One task drives it through [`Consumer::poll`], as with Kafka's
//! consumer; heartbeats run in the background.
//!
//! Fetches are pipelined: when a leader answers, the next Fetch to it is sent before the
//! records are handed to the application.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI32, Ordering};
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

mod coordinator;
mod fetcher;

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

/// A request to rejoin the group and the generation it is about. A heartbeat or commit
/// answered "rebalancing" or "illegal generation" about generation g asks to leave g; a join
/// that meanwhile reached a later generation already did, and rejoining again would start a
/// needless rebalance (the answer to a heartbeat sent before a join can arrive after it).
struct Rejoin(AtomicI32);

impl Rejoin {
    const NONE: i32 = i32::MIN;
    const ANY: i32 = i32::MAX;

    /// Rejoin whatever the generation (a new subscription, partitions given up).
    fn now(&self) {
        self.0.store(Self::ANY, Ordering::Release);
    }

    /// Rejoin if still at `generation` (or older) when the request is taken.
    fn about(&self, generation: i32) {
        self.0.fetch_max(generation, Ordering::AcqRel);
    }

    /// Forgets what was asked: a join is being sent, which answers it.
    fn clear(&self) {
        self.0.store(Self::NONE, Ordering::Release);
    }

    /// Whether a member now at generation `current` must rejoin; clears the request.
    fn take(&self, current: i32) -> bool {
        let asked = self.0.swap(Self::NONE, Ordering::AcqRel);
        asked != Self::NONE && asked >= current
    }
}

impl Default for Rejoin {
    fn default() -> Self {
        Rejoin(AtomicI32::new(Self::NONE))
    }
}

struct Group {
    id: String,
    member: Arc<Mutex<Membership>>,
    rejoin: Arc<Rejoin>,
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
        g.rejoin.now();
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

#[cfg(test)]
mod rejoin_tests {
    use super::Rejoin;

    #[test]
    fn an_answer_about_an_older_generation_asks_for_no_rejoin() {
        let r = Rejoin::default();
        assert!(!r.take(3), "nothing asked");
        // A heartbeat sent at generation 2 was answered REBALANCE_IN_PROGRESS after the
        // join that rebalance asked for had already reached generation 3.
        r.about(2);
        assert!(!r.take(3));
        r.about(3);
        assert!(r.take(3));
        assert!(!r.take(3), "taken once");
        r.now();
        assert!(
            r.take(7),
            "a new subscription rejoins whatever the generation"
        );
        r.about(5);
        r.clear();
        assert!(!r.take(5), "a join sent since answers it");
    }
}
