//! The simulated network: messages in flight with a delay each (so they reorder), loss, and
//! cut links between any two nodes (brokers, the controller). Delivery is ordered by
//! (delivery time, send order), never by a hash: runs are reproducible.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sluice_replication::follower::EpochEndOffset;
use sluice_replication::image::MetadataImage;
use sluice_replication::quorum::service::{ControllerRequest, ControllerResponse};

use crate::log::Record;
use crate::rng::Rng;

/// The controller's node id in the simulation (brokers are 1..=n).
pub const CONTROLLER: i32 = 0;
/// The producing and consuming client.
pub const CLIENT: i32 = -1;

/// What a follower's fetch got back: records from its offset, and the leader's offsets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchData {
    /// Records from the fetch offset up to the leader's log end.
    pub records: Vec<Record>,
    /// The leader's high watermark.
    pub high_watermark: i64,
    /// The leader's log start.
    pub log_start: i64,
}

/// A message. Requests carry an id their answer repeats.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A broker's request to the active controller (the real request type).
    ToController(ControllerRequest),
    /// The controller's answer (the real answer type).
    FromController(ControllerResponse),
    /// The committed image up to `offset`, as a learner replays the metadata log.
    Metadata {
        /// The metadata log offset the image reflects.
        offset: u64,
        /// The image.
        image: Arc<MetadataImage>,
    },
    /// A follower's Fetch (Fetch v15: replica id and broker epoch in ReplicaState).
    Fetch {
        /// Partition index.
        partition: i32,
        /// The follower's broker epoch, -1 before it registered.
        broker_epoch: i64,
        /// Its log end.
        fetch_offset: i64,
        /// Its log start.
        log_start: i64,
        /// The leader epoch it follows at (KIP-320).
        current_leader_epoch: i32,
    },
    /// The leader's answer: data or a Kafka error code.
    FetchReply {
        /// Partition index.
        partition: i32,
        /// Records and offsets, or an error code with the leader's log start.
        result: Result<FetchData, (i16, i64)>,
    },
    /// OffsetForLeaderEpoch from a follower.
    EpochQuery {
        /// Partition index.
        partition: i32,
        /// The epoch the follower follows at.
        current_leader_epoch: i32,
        /// The latest epoch in the follower's log.
        leader_epoch: i32,
    },
    /// Its answer: an error code (0 for none) and the leader's epoch end.
    EpochReply {
        /// Partition index.
        partition: i32,
        /// Kafka error code.
        error: i16,
        /// Where the asked epoch ends in the leader's log.
        answer: EpochEndOffset,
    },
    /// An acks=all produce from the client.
    Produce {
        /// Partition index.
        partition: i32,
        /// Payload ids, one per record.
        payloads: Vec<u64>,
    },
    /// Its answer (0: acknowledged).
    ProduceReply {
        /// Kafka error code.
        #[allow(dead_code)]
        error: i16,
    },
    /// A consumer's fetch (replica id -1): reads up to the high watermark.
    ConsumerFetch {
        /// Partition index.
        partition: i32,
        /// Where to read from.
        fetch_offset: i64,
    },
    /// What the consumer got.
    ConsumerReply {
        /// Partition index.
        partition: i32,
        /// The leader epoch the leader answered at.
        #[allow(dead_code)]
        leader_epoch: i32,
        /// Records read.
        records: Vec<Record>,
    },
}

/// A message with its route.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Sender.
    pub from: i32,
    /// Sender's process incarnation (brokers; 0 for others).
    pub from_incarnation: u64,
    /// Receiver.
    pub to: i32,
    /// For an answer: the receiver's incarnation that asked. A restarted process has no
    /// connection left to receive it on.
    pub to_incarnation: Option<u64>,
    /// Request id, repeated by the answer.
    pub req: u64,
    /// Deferred once already by a slow disk.
    pub deferred: bool,
    /// The message.
    pub msg: Msg,
}

/// The links and the messages in flight.
#[derive(Debug)]
pub struct Net {
    in_flight: BTreeMap<(i64, u64), Envelope>,
    seq: u64,
    cuts: BTreeSet<(i32, i32)>,
    /// Probability a message is lost.
    pub loss: f64,
    /// No message is lost by chance while set (cut links still lose them).
    pub lossless: bool,
    /// Largest delay, ms.
    pub max_delay_ms: i64,
    rng: Rng,
}

fn link(a: i32, b: i32) -> (i32, i32) {
    (a.min(b), a.max(b))
}

impl Net {
    /// No message in flight, every link up.
    pub fn new(rng: Rng, loss: f64, max_delay_ms: i64) -> Net {
        Net {
            in_flight: BTreeMap::new(),
            seq: 0,
            cuts: BTreeSet::new(),
            loss,
            lossless: false,
            max_delay_ms,
            rng,
        }
    }

    /// Whether the link between `a` and `b` is cut.
    pub fn is_cut(&self, a: i32, b: i32) -> bool {
        self.cuts.contains(&link(a, b))
    }

    /// Cuts the link between `a` and `b`.
    pub fn cut(&mut self, a: i32, b: i32) {
        self.cuts.insert(link(a, b));
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&mut self, a: i32, b: i32) {
        self.cuts.remove(&link(a, b));
    }

    /// Restores every link.
    pub fn heal_all(&mut self) {
        self.cuts.clear();
    }

    /// Cut links.
    pub fn cuts(&self) -> Vec<(i32, i32)> {
        self.cuts.iter().copied().collect()
    }

    /// Sends `env` at `now` to arrive `extra_ms` later than the network alone would take;
    /// false if it is lost on the way (a cut link or bad luck).
    pub fn send_late(&mut self, now: i64, env: Envelope, extra_ms: i64) -> bool {
        let lost = !self.lossless && self.rng.chance(self.loss);
        if self.is_cut(env.from, env.to) || lost {
            return false;
        }
        let at = now + extra_ms + self.rng.range(1, self.max_delay_ms.max(1));
        self.enqueue(at, env);
        true
    }

    /// Puts `env` in flight to arrive at `at`, without loss (a node's own deferred work).
    pub fn enqueue(&mut self, at: i64, env: Envelope) {
        self.seq += 1;
        self.in_flight.insert((at, self.seq), env);
    }

    /// The next message due by `now`, if any. A link cut while it was in flight loses it.
    pub fn next_due(&mut self, now: i64) -> Option<Envelope> {
        loop {
            let (&key, _) = self.in_flight.first_key_value()?;
            if key.0 > now {
                return None;
            }
            let env = self.in_flight.remove(&key)?;
            if !env.deferred && self.is_cut(env.from, env.to) {
                continue;
            }
            return Some(env);
        }
    }
}
