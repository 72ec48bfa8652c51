//! What happened in a run: every fault, commit, role change, truncation and acknowledged
//! write, in order, with a running hash (same seed, same hash) and the facts the checker
//! needs (acknowledged and consumed records).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// One thing that happened.
#[derive(Debug, Clone, Hash)]
pub enum Event {
    /// A fault or a healing, described.
    Fault(String),
    /// The controller committed a decision.
    Commit {
        /// Metadata offset after it.
        offset: u64,
        /// The records, as `MetadataRecord`'s Display shows them.
        records: String,
    },
    /// A decision's records did not apply to the image they were decided over.
    CommitFailed(String),
    /// A broker registered (a new incarnation epoch).
    Registered {
        /// Broker.
        broker: i32,
        /// Its broker epoch.
        epoch: i64,
    },
    /// A broker took up leadership.
    Leader {
        /// Broker.
        broker: i32,
        /// Partition.
        partition: i32,
        /// Leader epoch.
        epoch: i32,
        /// Its log end then.
        log_end: i64,
        /// Its high watermark then.
        hw: i64,
    },
    /// A broker became a follower (or saw the partition go offline).
    Follower {
        /// Broker.
        broker: i32,
        /// Partition.
        partition: i32,
        /// The leader, -1 for none.
        leader: i32,
        /// Leader epoch.
        epoch: i32,
    },
    /// A leader proposed an ISR change.
    IsrProposed {
        /// Broker.
        broker: i32,
        /// Partition.
        partition: i32,
        /// The proposed ISR.
        isr: Vec<i32>,
    },
    /// A leader got an answer to an ISR change.
    IsrAnswered {
        /// Broker.
        broker: i32,
        /// Partition.
        partition: i32,
        /// What it decided, Debug-formatted.
        what: String,
    },
    /// A follower truncated its log.
    Truncated {
        /// Broker.
        broker: i32,
        /// Partition.
        partition: i32,
        /// Log end before.
        from: i64,
        /// Offset cut to.
        to: i64,
    },
    /// A leader appended a produce.
    Appended {
        /// Broker.
        broker: i32,
        /// Partition.
        partition: i32,
        /// Leader epoch.
        epoch: i32,
        /// Offset of the last record.
        last: i64,
    },
    /// A leader answered an acks=all produce as written.
    Acked {
        /// Broker.
        broker: i32,
        /// Partition.
        partition: i32,
        /// Leader epoch.
        epoch: i32,
        /// First offset.
        first: i64,
        /// Payload ids.
        payloads: Vec<u64>,
    },
    /// An invariant failed.
    Violation(String),
}

/// A record the leader acknowledged to an acks=all producer.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    /// Partition.
    pub partition: i32,
    /// Offset it was acknowledged at.
    pub offset: i64,
    /// Its payload id.
    pub payload: u64,
    /// When.
    pub at_ms: i64,
}

/// A run's history.
#[derive(Debug, Default)]
pub struct History {
    events: Vec<(i64, Event)>,
    hasher: DefaultHasher,
    /// Print each event as it happens (SIM_SEED replays).
    pub echo: bool,
    /// Acknowledged records.
    pub acks: Vec<Ack>,
}

impl History {
    /// An empty history; with `echo`, each event is printed as it happens.
    pub fn new(echo: bool) -> History {
        History {
            echo,
            ..History::default()
        }
    }

    /// Records `event` at `now`.
    pub fn push(&mut self, now: i64, event: Event) {
        (now, &event).hash(&mut self.hasher);
        if self.echo {
            println!("{now:>6} ms  {event:?}");
        }
        self.events.push((now, event));
    }

    /// The hash of everything recorded: equal for equal runs.
    pub fn trace_hash(&self) -> u64 {
        self.hasher.finish()
    }

    /// The last `n` events, one per line.
    pub fn tail(&self, n: usize) -> String {
        let from = self.events.len().saturating_sub(n);
        self.events[from..]
            .iter()
            .map(|(t, e)| format!("{t:>6} ms  {e:?}\n"))
            .collect()
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }
}
