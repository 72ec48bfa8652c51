//! Records inside a v2 batch: decoding (with decompression) and building whole batches.
//!
//! Record layout (varints are zigzag-encoded, as in protobuf): length varint, attributes i8,
//! timestampDelta varlong, offsetDelta varint, key (varint length, -1 = null), value (same),
//! header count varint, then per header a key (varint length + UTF-8) and a value (nullable).

use std::borrow::Cow;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::compression::{self, Compression, CompressionError};
use crate::types::{Offset, TimestampOffset};

/// Why records could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The batch header is invalid.
    #[error("invalid batch: {0}")]
    Batch(String),
    /// The records section is malformed.
    #[error("malformed record {index}: {reason}")]
    Malformed {
        /// Index of the record in the batch.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Decompression failed.
    #[error(transparent)]
    Compression(#[from] CompressionError),
}

/// A header of a record.
pub type RecordHeader<'a> = (&'a [u8], Option<&'a [u8]>);

/// One decoded record, borrowing from the (decompressed) records section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Record attributes (unused by Kafka today).
    pub attributes: i8,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Key, or `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Value, or `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Headers in order.
    pub headers: Vec<RecordHeader<'a>>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    index: usize,
}

impl<'a> Cursor<'a> {
    fn bad(&self, reason: &'static str) -> RecordError {
        RecordError::Malformed {
            index: self.index,
            reason,
        }
    }

    fn varlong(&mut self) -> Result<i64, RecordError> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| self.bad("truncated varint"))?;
            self.buf = rest;
            raw |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(self.bad("varint too long"))
    }

    fn varint(&mut self) -> Result<i32, RecordError> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| self.bad("varint out of i32 range"))
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < len {
            return Err(self.bad("field beyond record end"));
        }
        let (a, b) = self.buf.split_at(len);
        self.buf = b;
        Ok(a)
    }

    fn nullable(&mut self) -> Result<Option<&'a [u8]>, RecordError> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err(self.bad("negative length")),
            n => self.bytes(n as usize).map(Some),
        }
    }
}

/// Iterates the records of an (uncompressed or decompressed) records section.
pub struct RecordIter<'a> {
    cur: Cursor<'a>,
    remaining: usize,
}

impl<'a> RecordIter<'a> {
    /// Iterates `count` records in `records`.
    pub fn new(records: &'a [u8], count: usize) -> Self {
        RecordIter {
            cur: Cursor {
                buf: records,
                index: 0,
            },
            remaining: count,
        }
    }

    /// Bytes of the records section after the records iterated so far: none once a
    /// well-formed section's declared records are all read.
    pub fn remaining_bytes(&self) -> usize {
        self.cur.buf.len()
    }

    fn decode(&mut self) -> Result<Record<'a>, RecordError> {
        let len = self.cur.varint()?;
        if len < 0 {
            return Err(self.cur.bad("negative record length"));
        }
        let body = self.cur.bytes(len as usize)?;
        let mut r = Cursor {
            buf: body,
            index: self.cur.index,
        };
        let attributes = r.bytes(1)?[0] as i8;
        let timestamp_delta = r.varlong()?;
        let offset_delta = r.varint()?;
        let key = r.nullable()?;
        let value = r.nullable()?;
        let n = r.varint()?;
        if n < 0 || n as usize > body.len() {
            return Err(r.bad("bad header count"));
        }
        let mut headers = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let k = r.nullable()?.ok_or_else(|| r.bad("null header key"))?;
            headers.push((k, r.nullable()?));
        }
        if !r.buf.is_empty() {
            return Err(r.bad("bytes left after record"));
        }
        Ok(Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let r = self.decode();
        self.cur.index += 1;
        if r.is_err() {
            self.remaining = 0;
        }
        Some(r)
    }
}

/// The header and the uncompressed records section of a whole batch.
pub fn records_section(
    batch: &[u8],
    max_decompressed: usize,
) -> Result<(BatchHeader, Cow<'_, [u8]>), RecordError> {
    let h = batch::check_batch(batch, usize::MAX).map_err(|d| RecordError::Batch(d.to_string()))?;
    let body = &batch[HEADER_LEN..h.size()];
    let codec = Compression::from_id(h.compression())?;
    let data = match codec {
        Compression::None => Cow::Borrowed(body),
        c => Cow::Owned(compression::decompress(c, body, max_decompressed)?),
    };
    Ok((h, data))
}

/// Decompressed size allowed per batch when searching: generous against real batches
/// (`max.message.bytes` is ~1 MiB compressed), bounded against bombs.
const SEARCH_DECOMPRESS_LIMIT: usize = 256 << 20;

/// The first record of `batch` whose timestamp is at or after `ts`.
pub fn first_at_or_after(batch: &[u8], ts: i64) -> Result<Option<TimestampOffset>, RecordError> {
    let (h, data) = records_section(batch, SEARCH_DECOMPRESS_LIMIT)?;
    for r in RecordIter::new(&data, h.record_count.max(0) as usize) {
        let r = r?;
        let t = h.base_timestamp.saturating_add(r.timestamp_delta);
        if t >= ts {
            return Ok(Some(TimestampOffset {
                timestamp: t,
                offset: Offset(h.base_offset + r.offset_delta as i64),
            }));
        }
    }
    Ok(None)
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varlong(out, -1),
    }
}

/// Encodes one record (with its length prefix) into `out`.
pub fn encode_record(out: &mut Vec<u8>, r: &Record<'_>) {
    let mut body =
        Vec::with_capacity(16 + r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len));
    body.push(r.attributes as u8);
    put_varlong(&mut body, r.timestamp_delta);
    put_varlong(&mut body, r.offset_delta as i64);
    put_nullable(&mut body, r.key);
    put_nullable(&mut body, r.value);
    put_varlong(&mut body, r.headers.len() as i64);
    for (k, v) in &r.headers {
        put_nullable(&mut body, Some(k));
        put_nullable(&mut body, *v);
    }
    put_varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
}

/// An owned record for [`BatchBuilder`].
#[derive(Debug, Clone)]
struct OwnedRecord {
    offset_delta: i32,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Builds a complete v2 record batch (used by tests, benchmarks, compaction and embedders).
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    attributes: i16,
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    last_offset_delta: Option<i32>,
    max_timestamp: Option<i64>,
    delete_horizon: Option<i64>,
    records: Vec<OwnedRecord>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            compression: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            last_offset_delta: None,
            max_timestamp: None,
            delete_horizon: None,
            records: Vec::new(),
        }
    }
}

impl BatchBuilder {
    /// An empty batch at offset 0, uncompressed, without producer id.
    pub fn new() -> Self {
        BatchBuilder::default()
    }

    /// Sets the base offset.
    pub fn base_offset(mut self, offset: i64) -> Self {
        self.base_offset = offset;
        self
    }

    /// Sets the compression codec.
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Sets the idempotent producer fields.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the raw attribute flags other than compression (timestamp type, transactional, control).
    pub fn flags(mut self, attributes: i16) -> Self {
        self.attributes = attributes & !0x07;
        self
    }

    /// Sets the partition leader epoch.
    pub fn leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Keeps a batch's original last offset delta when records were removed from it
    /// (compaction), so offsets after it and producer sequence state stay as they were.
    pub fn last_offset_delta(mut self, delta: i32) -> Self {
        self.last_offset_delta = Some(delta);
        self
    }

    /// Overrides the batch's max timestamp (a LogAppendTime batch keeps its append time).
    pub fn max_timestamp(mut self, ts: i64) -> Self {
        self.max_timestamp = Some(ts);
        self
    }

    /// Stamps the KIP-534 delete horizon (the cleaner's, see `cleaner::clean`): sets the
    /// delete-horizon attribute and writes `horizon_ms` as the base timestamp, with every
    /// record's timestamp delta taken from it, so record timestamps read unchanged.
    pub fn delete_horizon(mut self, horizon_ms: i64) -> Self {
        self.delete_horizon = Some(horizon_ms);
        self
    }

    /// Adds a record with the next offset delta.
    pub fn record(self, key: Option<&[u8]>, value: Option<&[u8]>, timestamp: i64) -> Self {
        let delta = self.records.last().map_or(0, |r| r.offset_delta + 1);
        self.record_at(delta, key, value, &[], timestamp)
    }

    /// Adds a record with an explicit offset delta and headers (deltas must increase).
    pub fn record_at(
        mut self,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader<'_>],
        timestamp: i64,
    ) -> Self {
        self.records.push(OwnedRecord {
            offset_delta,
            timestamp,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect(),
        });
        self
    }

    /// Number of records added.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record was added.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Encodes the batch with its CRC-32C. `last_offset_delta` is the last record's delta.
    pub fn build(&self) -> Vec<u8> {
        self.try_build().unwrap_or_default()
    }

    /// Like [`BatchBuilder::build`], reporting a compression failure.
    pub fn try_build(&self) -> Result<Vec<u8>, CompressionError> {
        let base_ts = self
            .delete_horizon
            .unwrap_or_else(|| self.records.first().map_or(-1, |r| r.timestamp));
        let attributes = match self.delete_horizon {
            Some(_) => self.attributes | batch::DELETE_HORIZON_BIT,
            None => self.attributes,
        };
        let max_ts = self
            .max_timestamp
            .unwrap_or_else(|| self.records.iter().map(|r| r.timestamp).max().unwrap_or(-1));
        let mut body = Vec::new();
        for r in &self.records {
            let headers: Vec<RecordHeader<'_>> = r
                .headers
                .iter()
                .map(|(k, v)| (&k[..], v.as_deref()))
                .collect();
            encode_record(
                &mut body,
                &Record {
                    attributes: 0,
                    timestamp_delta: r.timestamp.wrapping_sub(base_ts),
                    offset_delta: r.offset_delta,
                    key: r.key.as_deref(),
                    value: r.value.as_deref(),
                    headers,
                },
            );
        }
        let body = compression::compress(self.compression, &body)?;
        let last_delta = self
            .last_offset_delta
            .unwrap_or_else(|| self.records.last().map_or(0, |r| r.offset_delta));
        let mut b = Vec::with_capacity(HEADER_LEN + body.len());
        b.extend_from_slice(&self.base_offset.to_be_bytes());
        b.extend_from_slice(
            &((HEADER_LEN - batch::LOG_OVERHEAD + body.len()) as i32).to_be_bytes(),
        );
        b.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&(attributes | self.compression.id() as i16).to_be_bytes());
        b.extend_from_slice(&last_delta.to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&max_ts.to_be_bytes());
        b.extend_from_slice(&self.producer_id.to_be_bytes());
        b.extend_from_slice(&self.producer_epoch.to_be_bytes());
        b.extend_from_slice(&self.base_sequence.to_be_bytes());
        b.extend_from_slice(&(self.records.len() as i32).to_be_bytes());
        b.extend_from_slice(&body);
        let crc = batch::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn codec() -> impl Strategy<Value = Compression> {
        prop_oneof![
            Just(Compression::None),
            Just(Compression::Gzip),
            Just(Compression::Snappy),
            Just(Compression::Lz4),
            Just(Compression::Zstd)
        ]
    }

    type Rec = (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(Vec<u8>, Option<Vec<u8>>)>,
        i64,
    );

    fn rec() -> impl Strategy<Value = Rec> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..8),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
                ),
                0..3,
            ),
            -1_000_000i64..1_000_000,
        )
    }

    proptest! {
        #[test]
        fn built_batches_decode_to_the_same_records(c in codec(), recs in proptest::collection::vec(rec(), 1..20)) {
            let mut b = BatchBuilder::new().compression(c).base_offset(100);
            for (i, (k, v, h, ts)) in recs.iter().enumerate() {
                let headers: Vec<RecordHeader<'_>> = h.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
                b = b.record_at(i as i32, k.as_deref(), v.as_deref(), &headers, 1_700_000_000_000 + ts);
            }
            let bytes = b.build();
            let (h, data) = records_section(&bytes, 1 << 24).expect("valid batch");
            prop_assert_eq!(h.compression(), c.id());
            prop_assert_eq!(h.record_count as usize, recs.len());
            let decoded: Vec<Record<'_>> = RecordIter::new(&data, recs.len()).collect::<Result<_, _>>().expect("records");
            for (i, (r, (k, v, hs, ts))) in decoded.iter().zip(&recs).enumerate() {
                prop_assert_eq!(r.offset_delta, i as i32);
                prop_assert_eq!(r.key, k.as_deref());
                prop_assert_eq!(r.value, v.as_deref());
                prop_assert_eq!(h.base_timestamp + r.timestamp_delta, 1_700_000_000_000 + ts);
                prop_assert_eq!(r.headers.len(), hs.len());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), n in 0usize..10) {
            for r in RecordIter::new(&bytes, n) {
                let _ = r;
            }
            let _ = records_section(&bytes, 1 << 16);
            let _ = first_at_or_after(&bytes, 0);
        }
    }

    #[test]
    fn timestamp_search_finds_the_first_record_not_the_batch() {
        let b = BatchBuilder::new()
            .base_offset(10)
            .compression(Compression::Lz4)
            .record(None, Some(b"a"), 100)
            .record(None, Some(b"b"), 300)
            .record(None, Some(b"c"), 200)
            .build();
        let at = |ts| {
            first_at_or_after(&b, ts)
                .expect("search")
                .map(|t| (t.offset.0, t.timestamp))
        };
        assert_eq!(at(50), Some((10, 100)));
        assert_eq!(at(150), Some((11, 300)));
        assert_eq!(at(300), Some((11, 300)));
        assert_eq!(at(301), None);
    }
}
