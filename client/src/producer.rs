//! The producer: per-partition batching with `linger` and `batch.size`, compression, acks,
//! idempotence (on by default), the Java-compatible partitioner, and delivery futures that
//! resolve to the offset each record was written at.
//!
//! `send` encodes the record straight into its partition's open batch. A background task
//! seals batches when they are full or have lingered long enough, groups them by leader into
//! Produce requests (at most `max.in.flight.requests.per.connection` per broker), and settles
//! each batch's records when the answer comes: retriable errors refresh metadata and send the
//! batch again, in sequence order, until `delivery.timeout.ms`.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify, Semaphore};

use crate::cluster::{ClientConfig, Cluster};
use crate::error::{Error, Result};
use crate::partitioner::{partition_for_key, Rng};
use crate::records::{BatchWriter, Compression, Header, ProducerStamp};

mod sender;

use sender::sender;

/// Producer settings, named after Kafka's producer configs.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// `acks`: 0 (fire and forget), 1 (leader) or -1 (all in-sync replicas).
    pub acks: i16,
    /// `linger.ms`: how long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// `batch.size`: bytes of records per partition batch.
    pub batch_size: usize,
    /// `compression.type`.
    pub compression: Compression,
    /// `enable.idempotence`: sequence numbers so retries never duplicate. Takes effect with
    /// `acks=-1`, as in the Java client.
    pub enable_idempotence: bool,
    /// `max.in.flight.requests.per.connection`.
    pub max_in_flight: usize,
    /// `delivery.timeout.ms`: how long a record may take, retries included.
    pub delivery_timeout: Duration,
    /// `max.request.size`: the largest record batch sent.
    pub max_request_size: usize,
    /// `buffer.memory`: bytes of unsent records after which `send` waits.
    pub buffer_memory: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            client: ClientConfig::default(),
            acks: -1,
            linger: Duration::from_millis(5),
            batch_size: 16_384,
            compression: Compression::None,
            enable_idempotence: true,
            max_in_flight: 5,
            delivery_timeout: Duration::from_secs(120),
            max_request_size: 1_048_576,
            buffer_memory: 32 << 20,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// Topic.
    pub topic: String,
    /// Partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Key.
    pub key: Option<Bytes>,
    /// Value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Timestamp in ms since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and no key.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Sets the timestamp.
    pub fn timestamp(mut self, ms: i64) -> ProducerRecord {
        self.timestamp = Some(ms);
        self
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset, or -1 with `acks=0`.
    pub offset: i64,
    /// The record's timestamp, or the broker's append time for `LogAppendTime` topics.
    pub timestamp: i64,
}

type Outcome = Option<std::result::Result<(i64, i64), Arc<Error>>>;

/// Resolves when the record is acknowledged (or has failed). Await it, or drop it if the
/// outcome does not matter.
pub struct DeliveryFuture {
    rx: watch::Receiver<Outcome>,
    topic: Arc<str>,
    partition: i32,
    index: i64,
    timestamp: i64,
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<RecordMetadata>> + Send>>;

    fn into_future(mut self) -> Self::IntoFuture {
        Box::pin(async move {
            let outcome = self
                .rx
                .wait_for(Option::is_some)
                .await
                .map_err(|_| Error::Closed)?
                .clone()
                .expect("waited for Some");
            match outcome {
                Ok((base, append_time)) => Ok(RecordMetadata {
                    topic: self.topic.to_string(),
                    partition: self.partition,
                    offset: if base < 0 { -1 } else { base + self.index },
                    timestamp: if append_time >= 0 {
                        append_time
                    } else {
                        self.timestamp
                    },
                }),
                Err(e) => Err(e.duplicate()),
            }
        })
    }
}

struct OpenBatch {
    writer: BatchWriter,
    done: watch::Sender<Outcome>,
    created: Instant,
    bytes: usize,
}

struct SealedBatch {
    writer: Option<BatchWriter>,
    data: Bytes,
    count: i32,
    base_sequence: i32,
    done: watch::Sender<Outcome>,
    created: Instant,
    bytes: usize,
}

#[derive(Default)]
struct PartitionState {
    open: Option<OpenBatch>,
    queue: VecDeque<SealedBatch>,
    in_flight: usize,
    next_sequence: i32,
}

struct TopicState {
    name: Arc<str>,
    partitions: Vec<PartitionState>,
    leaders: Vec<i32>,
    sticky: i32,
    /// Whether a record has gone into the sticky partition since it was chosen.
    sticky_used: bool,
    stale: bool,
}

#[derive(Default)]
struct State {
    topics: HashMap<Arc<str>, TopicState>,
    broker_in_flight: HashMap<i32, usize>,
    outstanding: usize,
    flush: bool,
    closed: bool,
    fatal: Option<Arc<Error>>,
}

struct Inner {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    idempotent: Option<(i64, i16)>,
    state: Mutex<State>,
    rng: Mutex<Rng>,
    wake: Notify,
    idle: Notify,
    memory: Semaphore,
}

/// An asynchronous producer. Clone it freely; clones share batches and connections.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    /// Connects, and with idempotence asks the cluster for a producer id.
    pub async fn new(config: ProducerConfig) -> Result<Producer> {
        if config.batch_size == 0 || config.max_in_flight == 0 {
            return Err(Error::Invalid(
                "batch.size and max.in.flight.requests.per.connection must be positive".into(),
            ));
        }
        if ![0, 1, -1].contains(&config.acks) {
            return Err(Error::Invalid(format!(
                "acks must be 0, 1 or -1 (all), not {}",
                config.acks
            )));
        }
        let cluster = Arc::new(Cluster::new(config.client.clone())?);
        let idempotent = if config.enable_idempotence && config.acks == -1 {
            let r = cluster
                .retry("InitProducerId", || async {
                    let conn = cluster.any().await?;
                    let r = conn
                        .call(
                            &InitProducerIdRequest::default()
                                .with_transactional_id(None)
                                .with_transaction_timeout_ms(60_000)
                                .with_producer_id(ProducerId(-1))
                                .with_producer_epoch(-1),
                        )
                        .await?;
                    crate::error::check(r.error_code, || {
                        format!("InitProducerId to broker {}", conn.addr())
                    })?;
                    Ok((r.producer_id.0, r.producer_epoch))
                })
                .await?;
            Some(r)
        } else {
            cluster.any().await?;
            None
        };
        let memory = config
            .buffer_memory
            .clamp(config.max_request_size, Semaphore::MAX_PERMITS);
        let inner = Arc::new(Inner {
            cluster,
            idempotent,
            state: Mutex::default(),
            rng: Mutex::new(Rng::new()),
            wake: Notify::new(),
            idle: Notify::new(),
            memory: Semaphore::new(memory),
            config,
        });
        tokio::spawn(sender(Arc::clone(&inner)));
        Ok(Producer { inner })
    }

    /// The producer id and epoch, when idempotent.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.inner.idempotent
    }

    /// Queues `record` and returns a future for its outcome. Waits only when `buffer.memory`
    /// is used up (back-pressure) or the topic's metadata is not known yet.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let inner = &self.inner;
        let size = BatchWriter::record_size(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
        if size + crate::records::BATCH_HEADER > inner.config.max_request_size {
            return Err(Error::Invalid(format!(
                "a record of {size} bytes for topic {} is larger than max.request.size ({})",
                record.topic, inner.config.max_request_size
            )));
        }
        match inner.memory.try_acquire_many(size as u32) {
            Ok(p) => p.forget(),
            Err(_) => inner
                .memory
                .acquire_many(size as u32)
                .await
                .map_err(|_| Error::Closed)?
                .forget(),
        }
        let known = inner
            .state
            .lock()
            .topics
            .contains_key(record.topic.as_str());
        if !known {
            if let Err(e) = self.learn_topic(&record.topic).await {
                inner.memory.add_permits(size);
                return Err(e);
            }
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let mut st = inner.state.lock();
        if st.closed {
            drop(st);
            inner.memory.add_permits(size);
            return Err(Error::Closed);
        }
        if let Some(e) = &st.fatal {
            let e = e.duplicate();
            drop(st);
            inner.memory.add_permits(size);
            return Err(e);
        }
        let topic = st
            .topics
            .get_mut(record.topic.as_str())
            .expect("learned above");
        let n = topic.partitions.len() as i32;
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p < 0 || p >= n => {
                drop(st);
                inner.memory.add_permits(size);
                return Err(Error::Invalid(format!(
                    "topic {} has {n} partitions; there is no partition {p}",
                    record.topic
                )));
            }
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, n),
            (None, None) => {
                if topic.sticky < 0 {
                    topic.sticky = inner.rng.lock().below(n as u32) as i32;
                } else if topic.sticky_used
                    && n > 1
                    && topic.partitions[topic.sticky as usize].open.is_none()
                {
                    // KIP-480: the batch we stuck to has gone; the next batch goes elsewhere.
                    let step = 1 + inner.rng.lock().below(n as u32 - 1) as i32;
                    topic.sticky = (topic.sticky + step) % n;
                }
                topic.sticky_used = true;
                topic.sticky
            }
        };
        let config = &inner.config;
        let part = &mut topic.partitions[partition as usize];
        let mut sealed_full = false;
        if let Some(open) = &part.open {
            if open.writer.count() > 0 && open.writer.size() + size > config.batch_size {
                let open = part.open.take().expect("checked");
                seal(part, open, inner.idempotent.is_some());
                sealed_full = true;
            }
        }
        let open = part.open.get_or_insert_with(|| OpenBatch {
            writer: BatchWriter::new(
                config
                    .batch_size
                    .min(size.max(1024) * 2)
                    .max(config.batch_size / 4),
            ),
            done: watch::channel(None).0,
            created: Instant::now(),
            bytes: 0,
        });
        let index = open.writer.count() as i64;
        open.writer.push(
            timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
        open.bytes += size;
        let full = open.writer.size() >= config.batch_size;
        let future = DeliveryFuture {
            rx: open.done.subscribe(),
            topic: Arc::clone(&topic.name),
            partition,
            index,
            timestamp,
        };
        if full {
            let open = part.open.take().expect("just used");
            seal(part, open, inner.idempotent.is_some());
            sealed_full = true;
        }
        if sealed_full && record.partition.is_none() && record.key.is_none() && n > 1 {
            // KIP-480: move on once a batch is complete, to a different partition.
            let step = 1 + inner.rng.lock().below(n as u32 - 1) as i32;
            topic.sticky = (partition + step) % n;
            topic.sticky_used = false;
        }
        st.outstanding += 1;
        drop(st);
        if sealed_full || config.linger.is_zero() {
            inner.wake.notify_one();
        } else if index == 0 {
            // A new batch: the sender must learn its linger deadline.
            inner.wake.notify_one();
        }
        Ok(future)
    }

    async fn learn_topic(&self, name: &str) -> Result<()> {
        let info = self.inner.cluster.topic(name, true).await?;
        let mut st = self.inner.state.lock();
        st.topics
            .entry(Arc::from(name))
            .or_insert_with(|| TopicState {
                name: Arc::from(name),
                partitions: (0..info.partitions.len())
                    .map(|_| PartitionState::default())
                    .collect(),
                leaders: info.partitions.iter().map(|p| p.leader).collect(),
                sticky: -1,
                sticky_used: false,
                stale: false,
            });
        Ok(())
    }

    /// Sends everything queued now and waits until every record sent before this call has
    /// been acknowledged or has failed.
    pub async fn flush(&self) {
        loop {
            let idle = self.inner.idle.notified();
            {
                let mut st = self.inner.state.lock();
                if st.outstanding == 0 {
                    st.flush = false;
                    return;
                }
                st.flush = true;
            }
            self.inner.wake.notify_one();
            idle.await;
        }
    }

    /// Flushes, then stops the background sender. Later sends fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.flush().await;
        self.inner.state.lock().closed = true;
        self.inner.wake.notify_one();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seals an open batch into the partition's send queue, assigning its sequence numbers.
/// Compression and the header are left to the sender task, off the `send` path.
fn seal(part: &mut PartitionState, open: OpenBatch, idempotent: bool) {
    let count = open.writer.count();
    let base_sequence = if idempotent { part.next_sequence } else { -1 };
    if idempotent {
        part.next_sequence = part.next_sequence.wrapping_add(count) & i32::MAX;
    }
    part.queue.push_back(SealedBatch {
        writer: Some(open.writer),
        data: Bytes::new(),
        count,
        base_sequence,
        done: open.done,
        created: open.created,
        bytes: open.bytes,
    });
}
