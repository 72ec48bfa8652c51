//! The client: a producer sending acks=all batches to whoever its (possibly stale) metadata
//! says leads, and a consumer reading each partition in order from its leader. Its
//! metadata comes from a broker's image, as a Metadata request would.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_replication::image::{MetadataImage, NO_LEADER};

use crate::broker::Broker;
use crate::controller::TOPIC;
use crate::log::Record;
use crate::net::{Envelope, Msg, CLIENT};
use crate::rng::Rng;

/// The producing and consuming client.
#[derive(Debug)]
pub struct Client {
    image: Arc<MetadataImage>,
    next_refresh: i64,
    next_produce: i64,
    next_consume: i64,
    next_payload: u64,
    next_req: u64,
    positions: BTreeMap<i32, i64>,
    /// Producing stops when faults heal, so the cluster can settle.
    pub producing: bool,
}

impl Client {
    /// A client that knows nothing yet.
    pub fn new() -> Client {
        Client {
            image: Arc::new(MetadataImage::default()),
            next_refresh: 0,
            next_produce: 0,
            next_consume: 0,
            next_payload: 1,
            next_req: 0,
            positions: BTreeMap::new(),
            producing: true,
        }
    }

    fn send(&mut self, to: i32, msg: Msg, out: &mut Vec<Envelope>) {
        self.next_req += 1;
        out.push(Envelope {
            from: CLIENT,
            from_incarnation: 0,
            to,
            to_incarnation: None,
            req: self.next_req,
            deferred: false,
            msg,
        });
    }

    /// Refreshes metadata, produces and consumes when due.
    pub fn tick(&mut self, now: i64, brokers: &[Broker], rng: &mut Rng, out: &mut Vec<Envelope>) {
        if now >= self.next_refresh {
            self.next_refresh = now + 100;
            let alive: Vec<usize> = (0..brokers.len()).filter(|i| brokers[*i].alive).collect();
            if let Some(i) = rng.pick(&alive) {
                self.image = Arc::clone(&brokers[i].image);
            }
        }
        let Some(topic) = self.image.topic_by_name(TOPIC) else {
            return;
        };
        let leaders: Vec<i32> = topic.partitions.iter().map(|p| p.leader).collect();
        if self.producing && now >= self.next_produce {
            self.next_produce = now + rng.range(5, 30);
            let i = rng.range(0, leaders.len() as i64 - 1) as i32;
            let leader = leaders[i as usize];
            if leader != NO_LEADER {
                let n = rng.range(1, 3) as u64;
                let payloads: Vec<u64> = (self.next_payload..self.next_payload + n).collect();
                self.next_payload += n;
                self.send(
                    leader,
                    Msg::Produce {
                        partition: i,
                        payloads,
                    },
                    out,
                );
            }
        }
        if now >= self.next_consume {
            self.next_consume = now + 40;
            let i = rng.range(0, leaders.len() as i64 - 1) as i32;
            let leader = leaders[i as usize];
            if leader != NO_LEADER {
                let fetch_offset = *self.positions.get(&i).unwrap_or(&0);
                self.send(
                    leader,
                    Msg::ConsumerFetch {
                        partition: i,
                        fetch_offset,
                    },
                    out,
                );
            }
        }
    }

    /// An answer; returns the records a consumer read, for the checker.
    pub fn on_reply(&mut self, msg: Msg) -> Option<(i32, Vec<Record>)> {
        match msg {
            Msg::ConsumerReply {
                partition, records, ..
            } => {
                if let Some(last) = records.last() {
                    let pos = self.positions.entry(partition).or_insert(0);
                    *pos = (*pos).max(last.offset + 1);
                }
                Some((partition, records))
            }
            _ => None,
        }
    }
}
