//! `ProducerStateManager`: idempotent-producer bookkeeping per partition (KIP-98).
//!
//! For each producer id it keeps the current epoch and the last five batches' sequence ranges
//! and offsets, which is what Kafka keeps: a producer has at most five requests in flight, so a
//! retried batch is always among them. Pure state; the log persists it as a snapshot file and
//! rebuilds it from batch headers after the snapshot's offset.
//!
//! A producer that wrote nothing for `producer.id.expiration.ms` (by its batches' max
//! timestamp, as Kafka's `lastTimestamp`) is forgotten on the log's housekeeping pass, so the
//! state and its snapshots stay bounded; its next batch is taken as an unknown producer's.

use std::collections::{BTreeMap, VecDeque};

use crate::batch::BatchHeader;
use crate::types::Offset;

/// Batches remembered per producer for duplicate detection.
const CACHED_BATCHES: usize = 5;

/// One remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
}

/// State of one producer id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    pub(crate) batches: VecDeque<BatchMeta>,
    /// Max timestamp of the producer's latest batch (Kafka's `lastTimestamp`).
    pub(crate) last_timestamp: i64,
}

/// The decision for an incoming batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// New data: append it.
    Append,
    /// A retry of a batch already in the log, at these offsets.
    Duplicate { first_offset: i64, last_offset: i64 },
    /// A stale epoch.
    Fenced { current: i16 },
    /// A gap or reordering.
    OutOfOrder { expected: i32 },
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerStateManager {
    producers: BTreeMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStateManager {
    /// Decides what to do with a client batch (producer id >= 0, sequence >= 0).
    pub(crate) fn check(&self, h: &BatchHeader) -> SequenceCheck {
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown producer: as Kafka (KIP-360), accept any sequence, because its earlier
            // batches may simply have been removed by retention.
            return SequenceCheck::Append;
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::Fenced {
                current: entry.epoch,
            };
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0 }
            };
        }
        let last_seq = h.last_sequence();
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return SequenceCheck::Duplicate {
                first_offset: b.first_offset,
                last_offset: b.last_offset,
            };
        }
        let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if h.base_sequence == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder { expected }
        }
    }

    /// Number of producers tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Records a batch that is now in the log (appended, replicated or replayed).
    /// `timestamp` is the batch's max timestamp as stored (the append time for LogAppendTime).
    pub(crate) fn update(
        &mut self,
        h: &BatchHeader,
        first_offset: Offset,
        last_offset: Offset,
        timestamp: i64,
    ) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        entry.last_timestamp = timestamp;
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if h.base_sequence < 0 {
            return;
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            first_offset: first_offset.0,
            last_offset: last_offset.0,
        });
        while entry.batches.len() > CACHED_BATCHES {
            entry.batches.pop_front();
        }
    }

    /// Forgets producers whose last batch is `expiration_ms` or more older than `now`
    /// (Kafka's `removeExpiredProducers`); returns how many.
    pub(crate) fn remove_expired(&mut self, now: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now.saturating_sub(e.last_timestamp) < expiration_ms);
        before - self.producers.len()
    }

    /// The last offset of each producer's latest batch: the batch the cleaner keeps, emptied
    /// if need be, so the producer's sequence survives a rebuild from the log.
    pub(crate) fn last_batch_offsets(&self) -> BTreeMap<i64, i64> {
        self.producers
            .iter()
            .filter_map(|(pid, e)| Some((*pid, e.batches.back()?.last_offset)))
            .collect()
    }

    /// Serializes the state: version (2), count, then per producer id, epoch, last timestamp
    /// and batches.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&2u16.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (pid, e) in &self.producers {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        out
    }

    /// Parses [`ProducerStateManager::encode`]'s output; `None` if malformed. Version 1
    /// snapshots carry no timestamps: their producers count as active at `loaded_at`.
    pub(crate) fn decode(mut buf: &[u8], loaded_at: i64) -> Option<ProducerStateManager> {
        fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if buf.len() < n {
                return None;
            }
            let (a, b) = buf.split_at(n);
            *buf = b;
            Some(a)
        }
        let i32_of = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let i64_of = |b: &[u8]| {
            let mut x = [0u8; 8];
            x.copy_from_slice(b);
            i64::from_be_bytes(x)
        };
        let version = match take(&mut buf, 2)? {
            [0, 1] => 1,
            [0, 2] => 2,
            _ => return None,
        };
        let count = u32::from_be_bytes(take(&mut buf, 4)?.try_into().ok()?);
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let pid = i64_of(take(&mut buf, 8)?);
            let e = take(&mut buf, 2)?;
            let epoch = i16::from_be_bytes([e[0], e[1]]);
            let last_timestamp = match version {
                1 => loaded_at,
                _ => i64_of(take(&mut buf, 8)?),
            };
            let n = take(&mut buf, 1)?[0] as usize;
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: i32_of(take(&mut buf, 4)?),
                    last_seq: i32_of(take(&mut buf, 4)?),
                    first_offset: i64_of(take(&mut buf, 8)?),
                    last_offset: i64_of(take(&mut buf, 8)?),
                });
            }
            producers.insert(
                pid,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp,
                },
            );
        }
        buf.is_empty().then_some(ProducerStateManager { producers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: n,
        }
    }

    #[test]
    fn retries_are_duplicates_gaps_are_out_of_order_old_epochs_are_fenced() {
        let mut s = ProducerStateManager::default();
        assert_eq!(
            s.check(&header(7, 0, 3, 1)),
            SequenceCheck::Append,
            "unknown producers start anywhere"
        );
        let h = header(7, 0, 0, 3);
        assert_eq!(s.check(&h), SequenceCheck::Append);
        s.update(&h, Offset(10), Offset(12), 0);
        assert_eq!(
            s.check(&h),
            SequenceCheck::Duplicate {
                first_offset: 10,
                last_offset: 12
            }
        );
        assert_eq!(
            s.check(&header(7, 0, 4, 1)),
            SequenceCheck::OutOfOrder { expected: 3 }
        );
        assert_eq!(s.check(&header(7, 0, 3, 1)), SequenceCheck::Append);
        assert_eq!(
            s.check(&header(7, 1, 2, 1)),
            SequenceCheck::OutOfOrder { expected: 0 },
            "a new epoch starts at 0"
        );
        s.update(&header(7, 1, 0, 1), Offset(13), Offset(13), 0);
        assert_eq!(
            s.check(&header(7, 0, 3, 1)),
            SequenceCheck::Fenced { current: 1 }
        );
        let decoded = ProducerStateManager::decode(&s.encode(), 0).expect("round trip");
        assert_eq!(decoded, s);
        assert!(ProducerStateManager::decode(&s.encode()[..5], 0).is_none());
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerStateManager::default();
        for i in 0..6 {
            s.update(&header(1, 0, i, 1), Offset(i as i64), Offset(i as i64), 0);
        }
        assert_eq!(
            s.check(&header(1, 0, 0, 1)),
            SequenceCheck::OutOfOrder { expected: 6 }
        );
        assert!(matches!(
            s.check(&header(1, 0, 1, 1)),
            SequenceCheck::Duplicate { .. }
        ));
    }
}
