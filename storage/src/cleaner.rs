//! Log compaction (`cleanup.policy=compact`): keep the latest record per key, keep offsets.
//!
//! Pure functions over batch bytes; `log::compaction` does the file work. Kafka's rules:
//! the latest record of each key survives; a tombstone (null value) that is the latest of its
//! key survives until `delete.retention.ms` after the first clean that kept it (the KIP-534
//! delete horizon, see [`clean`]), then goes; records with a null key
//! are removed (producers cannot write them to compacted topics, see `Log::append`); control
//! batches are kept as they are; a batch keeping all its records is copied byte for byte; a
//! batch losing some is rebuilt with its original base offset, offset deltas, last offset,
//! producer fields, flags and codec; a batch losing all is dropped.

use std::collections::{BTreeMap, HashMap};

use crate::batch::{BatchHeader, BatchIter};
use crate::compression::Compression;
use crate::record::{records_section, BatchBuilder, RecordError, RecordHeader, RecordIter};

/// Largest decompressed records section the cleaner accepts per batch.
const MAX_DECOMPRESSED: usize = 256 << 20;

/// Bytes one entry of the [`OffsetMap`] takes in its table: a 128-bit digest of the key, the
/// offset, and the table's control byte (Kafka's `SkimpyOffsetMap` stores a 16-byte MD5 and an
/// 8-byte offset per slot).
const ENTRY_BYTES: usize = 16 + 8 + 1;

/// The latest offset of each key in the dirty section being cleaned, in bounded memory.
///
/// Keys are stored as 128-bit digests, as Kafka's cleaner stores MD5s, so the map's size does
/// not depend on key sizes; two keys sharing a digest (about one chance in 2^64 for a
/// billion keys) would make the older one's latest record look superseded. The table is sized
/// once, for at most [`OffsetMap::max_keys`] entries, and never grows past it: a pass maps as
/// much of the dirty section as fits and leaves the rest to the next pass (Kafka's
/// `log.cleaner.dedupe.buffer.size`).
#[derive(Debug, Clone)]
pub struct OffsetMap {
    latest: HashMap<u128, i64, BuildDigestHasher>,
    max_keys: usize,
}

impl Default for OffsetMap {
    fn default() -> Self {
        OffsetMap::bounded(usize::MAX, 0)
    }
}

impl OffsetMap {
    /// An empty map that holds at most what fits in `max_bytes`, with room made at once for
    /// `expected_keys` (an upper bound of the keys to map, so that the table never has to grow).
    pub fn bounded(max_bytes: usize, expected_keys: usize) -> OffsetMap {
        let max_keys = Self::keys_fitting(max_bytes);
        OffsetMap {
            latest: HashMap::with_capacity_and_hasher(
                expected_keys.min(max_keys),
                BuildDigestHasher,
            ),
            max_keys,
        }
    }

    /// How many keys a table of at most `max_bytes` holds: its bucket count is a power of two
    /// filled to at most 7/8.
    pub fn keys_fitting(max_bytes: usize) -> usize {
        let buckets = max_bytes / ENTRY_BYTES;
        if buckets < 8 {
            return buckets.min(3);
        }
        let pow2 = 1usize << (usize::BITS - 1 - buckets.leading_zeros());
        pow2 / 8 * 7
    }

    /// Builds an unbounded map from whole batches, in log order.
    pub fn build<'a>(
        segments: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<OffsetMap, RecordError> {
        let mut map = OffsetMap::default();
        for data in segments {
            for (at, h) in BatchIter::new(data) {
                map.add_batch(&data[at..at + h.size()], &h)?;
            }
        }
        Ok(map)
    }

    /// True when the keys of a batch of `records` records may not fit any more. The first batch
    /// always fits, so that every pass makes progress.
    pub fn is_full_for(&self, records: usize) -> bool {
        !self.latest.is_empty() && self.latest.len().saturating_add(records) > self.max_keys
    }

    /// Maps every keyed record of `batch` (whose header is `h`) to its offset.
    pub fn add_batch(&mut self, batch: &[u8], h: &BatchHeader) -> Result<(), RecordError> {
        if h.is_control() {
            return Ok(());
        }
        let (_, records) = records_section(batch, MAX_DECOMPRESSED)?;
        for r in RecordIter::new(&records, h.record_count.max(0) as usize) {
            let r = r?;
            if let Some(k) = r.key {
                self.latest
                    .insert(digest(k), h.base_offset + r.offset_delta as i64);
            }
        }
        Ok(())
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(&digest(key)).copied()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// True when no key is mapped.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// The most keys this map holds.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }
}

/// A 128-bit digest of `key`: two SipHash runs with different prefixes. The digest lives only
/// as long as one pass, so it need not be stable across builds.
fn digest(key: &[u8]) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// Hashes a digest by taking its low bits: it is already uniformly distributed.
#[derive(Debug, Clone, Copy, Default)]
struct BuildDigestHasher;

#[derive(Debug, Default)]
struct DigestHasher(u64);

impl std::hash::BuildHasher for BuildDigestHasher {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher::default()
    }
}

impl std::hash::Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// What cleaning one segment did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanStats {
    /// Records kept.
    pub kept: u64,
    /// Records removed.
    pub removed: u64,
    /// Batches that got their delete horizon in this pass (rewritten even if nothing went).
    pub stamped: u64,
    /// The earliest delete horizon among the kept batches that still hold a tombstone: the
    /// time at which cleaning again removes something even if nothing new was written.
    pub next_delete_horizon: Option<i64>,
}

impl CleanStats {
    /// True when the cleaned bytes differ from the input.
    pub fn changed(&self) -> bool {
        self.removed > 0 || self.stamped > 0
    }
}

/// The clock, settings and producer state one cleaning pass runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanParams {
    /// The cleaner's current time (the embedder's clock).
    pub now_ms: i64,
    /// `delete.retention.ms`: how long a tombstone is kept after the first clean that saw it.
    pub delete_retention_ms: i64,
    /// Producer id -> last offset of that producer's latest batch. Such a batch is kept even
    /// when none of its records is (as an empty batch, Kafka's `RETAIN_EMPTY`): a producer
    /// state rebuilt from the log must still end at the producer's last sequence, or its
    /// next batch is refused as out of order.
    pub last_batch_of_producer: BTreeMap<i64, i64>,
}

/// Cleans the batches in `data` against `map`.
///
/// Tombstones expire as in Kafka since KIP-534, by a *delete horizon* rather than by their
/// own timestamp (which a producer sets, and may set to -1 or far in the past): the first
/// clean that keeps a tombstone rewrites its batch with the delete-horizon attribute (bit 6)
/// and `now + delete.retention.ms` in `baseTimestamp`, the record timestamp deltas re-based on
/// it so every record's timestamp (`baseTimestamp` + delta) reads as before. A later clean
/// at or after the horizon removes the batch's tombstones. Consumers thus get at least
/// `delete.retention.ms` to see a tombstone, counted from the first clean.
pub fn clean(
    data: &[u8],
    map: &OffsetMap,
    params: &CleanParams,
) -> Result<(Vec<u8>, CleanStats), RecordError> {
    let mut out = Vec::with_capacity(data.len());
    let mut stats = CleanStats::default();
    for (at, h) in BatchIter::new(data) {
        clean_batch(
            &data[at..at + h.size()],
            &h,
            map,
            params,
            &mut stats,
            &mut out,
        )?;
    }
    Ok((out, stats))
}

/// Cleans one batch (whose header is `h`) against `map`, appending what survives of it to
/// `out` and counting it in `stats`; see [`clean`].
pub fn clean_batch(
    batch: &[u8],
    h: &BatchHeader,
    map: &OffsetMap,
    params: &CleanParams,
    stats: &mut CleanStats,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    if h.is_control() {
        out.extend_from_slice(batch);
        return Ok(());
    }
    // Kafka's `shouldRetainRecord`: a tombstone stays until its batch's horizon passed,
    // and a batch without a horizon has not been through a clean yet.
    let tombstones_expired = h
        .delete_horizon_ms()
        .is_some_and(|horizon| params.now_ms >= horizon);
    let (_, records) = records_section(batch, MAX_DECOMPRESSED)?;
    let mut kept = Vec::new();
    let mut total = 0u64;
    for r in RecordIter::new(&records, h.record_count.max(0) as usize) {
        let r = r?;
        total += 1;
        let offset = h.base_offset + r.offset_delta as i64;
        let keep = match r.key {
            // Kafka's cleaner drops keyless records: compaction has no key to keep them by.
            None => false,
            Some(k) => {
                let latest = map.get(k).is_none_or(|l| l <= offset);
                latest && (r.value.is_some() || !tombstones_expired)
            }
        };
        if keep {
            kept.push(r);
        }
    }
    stats.kept += kept.len() as u64;
    stats.removed += total - kept.len() as u64;
    let has_tombstone = kept.iter().any(|r| r.value.is_none());
    let horizon = match h.delete_horizon_ms() {
        Some(horizon) => Some(horizon),
        None if has_tombstone => {
            stats.stamped += 1;
            Some(params.now_ms.saturating_add(params.delete_retention_ms))
        }
        None => None,
    };
    if let (true, Some(at)) = (has_tombstone, horizon) {
        stats.next_delete_horizon = Some(stats.next_delete_horizon.map_or(at, |n| n.min(at)));
    }
    if kept.len() as u64 == total && horizon == h.delete_horizon_ms() {
        out.extend_from_slice(batch);
    } else if !kept.is_empty() {
        out.extend_from_slice(&rebuild(h, &kept, horizon)?);
    } else if h.has_producer_id()
        && params.last_batch_of_producer.get(&h.producer_id) == Some(&h.last_offset())
    {
        out.extend_from_slice(&empty(h)?);
    }
    Ok(())
}

/// The header of `h` with no records (Kafka's `writeEmptyHeader`): same offsets, producer
/// id, epoch and base sequence, so replaying it restores the producer's last sequence.
fn empty(h: &BatchHeader) -> Result<Vec<u8>, RecordError> {
    Ok(BatchBuilder::new()
        .base_offset(h.base_offset)
        .leader_epoch(h.partition_leader_epoch)
        .producer(h.producer_id, h.producer_epoch, h.base_sequence)
        .flags(h.attributes & !crate::batch::DELETE_HORIZON_BIT)
        .last_offset_delta(h.last_offset_delta)
        .max_timestamp(h.max_timestamp)
        .try_build()?)
}

/// The batch `h` with only the `kept` records, its offsets, producer fields, flags and codec
/// unchanged, and `delete_horizon` (if any) in its base timestamp.
fn rebuild(
    h: &BatchHeader,
    kept: &[crate::record::Record<'_>],
    delete_horizon: Option<i64>,
) -> Result<Vec<u8>, RecordError> {
    let mut b = BatchBuilder::new()
        .base_offset(h.base_offset)
        .leader_epoch(h.partition_leader_epoch)
        .compression(Compression::from_id(h.compression())?)
        .producer(h.producer_id, h.producer_epoch, h.base_sequence)
        .flags(h.attributes)
        .last_offset_delta(h.last_offset_delta);
    if h.is_log_append_time() {
        b = b.max_timestamp(h.max_timestamp);
    }
    if let Some(horizon) = delete_horizon {
        b = b.delete_horizon(horizon);
    }
    for r in kept {
        let headers: Vec<RecordHeader<'_>> = r.headers.clone();
        b = b.record_at(
            r.offset_delta,
            r.key,
            r.value,
            &headers,
            h.base_timestamp.saturating_add(r.timestamp_delta),
        );
    }
    Ok(b.try_build()?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// (key index, value or tombstone) per record; batches of up to 4 records.
    fn log_of(records: &[(u8, Option<u8>)], codec: Compression) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, chunk) in records.chunks(4).enumerate() {
            let mut b = BatchBuilder::new()
                .base_offset((i * 4) as i64)
                .compression(codec);
            for (j, (k, v)) in chunk.iter().enumerate() {
                let key = [*k];
                let value = v.map(|v| [v]);
                b = b.record_at(
                    j as i32,
                    Some(&key),
                    value.as_ref().map(|v| &v[..]),
                    &[],
                    1000 + (i * 4 + j) as i64,
                );
            }
            out.extend_from_slice(&b.build());
        }
        out
    }

    fn contents(data: &[u8]) -> Vec<(i64, u8, Option<u8>)> {
        let mut out = Vec::new();
        for (at, h) in BatchIter::new(data) {
            let (_, recs) = records_section(&data[at..at + h.size()], 1 << 20).expect("valid");
            for r in RecordIter::new(&recs, h.record_count as usize) {
                let r = r.expect("record");
                out.push((
                    h.base_offset + r.offset_delta as i64,
                    r.key.expect("key")[0],
                    r.value.map(|v| v[0]),
                ));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn compaction_keeps_exactly_the_latest_value_per_key(
            records in proptest::collection::vec((0u8..6, proptest::option::weighted(0.8, any::<u8>())), 1..60),
            drop_tombstones in any::<bool>(),
            codec in prop_oneof![Just(Compression::None), Just(Compression::Zstd), Just(Compression::Gzip)],
        ) {
            let data = log_of(&records, codec);
            let map = OffsetMap::build([&data[..]]).expect("map");
            // A first clean stamps horizons; a second one after them removes the tombstones.
            let params = CleanParams { now_ms: 1000, delete_retention_ms: 10, ..CleanParams::default() };
            let (mut cleaned, mut stats) = clean(&data, &map, &params).expect("clean");
            if drop_tombstones {
                let later = CleanParams { now_ms: 1010, ..params.clone() };
                let (again, more) = clean(&cleaned, &map, &later).expect("clean");
                prop_assert_eq!(more.next_delete_horizon, None);
                stats.kept = more.kept;
                stats.removed += more.removed;
                cleaned = again;
            }
            let mut model: BTreeMap<u8, (i64, Option<u8>)> = BTreeMap::new();
            for (i, (k, v)) in records.iter().enumerate() {
                model.insert(*k, (i as i64, *v));
            }
            let mut expected: Vec<(i64, u8, Option<u8>)> = model
                .into_iter()
                .filter(|(_, (_, v))| v.is_some() || !drop_tombstones)
                .map(|(k, (o, v))| (o, k, v))
                .collect();
            expected.sort();
            prop_assert_eq!(contents(&cleaned), expected.clone());
            prop_assert_eq!(stats.kept as usize, expected.len());
            prop_assert_eq!((stats.kept + stats.removed) as usize, records.len());
            // Batches keep their offsets: the last batch still ends where it did.
            let last = |d: &[u8]| BatchIter::new(d).last().map(|(_, h)| h.next_offset());
            if let Some(end) = last(&cleaned) {
                prop_assert!(end <= last(&data).unwrap_or(0));
            }
            for (_, h) in BatchIter::new(&cleaned) {
                prop_assert_eq!(h.compression(), codec.id());
            }
        }
    }
}
