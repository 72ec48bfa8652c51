//! The Kafka v2 RecordBatch header: parsing, validation and the in-place fields the broker sets.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17, attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27,
//! maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53,
//! recordCount i32 @57, records @61. The CRC-32C covers attributes to the end, so baseOffset
//! and partitionLeaderEpoch can be written in place without touching it.

use crate::error::{Result, StorageError};

/// Size of the v2 batch header.
pub const HEADER_LEN: usize = 61;
/// `baseOffset` + `batchLength`: the bytes not counted by `batchLength`.
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal `batchLength` (a header with no records).
pub(crate) const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;

const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;

const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
/// KIP-534: the batch's `baseTimestamp` holds its delete horizon (see
/// [`BatchHeader::delete_horizon_ms`]).
pub(crate) const DELETE_HORIZON_BIT: i16 = 1 << 6;
const COMPRESSION_MASK: i16 = 0x07;

/// The parsed fixed-size header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 here.
    pub magic: i8,
    /// Stored CRC-32C.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

impl BatchHeader {
    /// Parses the header at the start of `buf`; checks only that 61 bytes are there.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: i64_at(buf, 0),
            batch_length: i32_at(buf, 8),
            partition_leader_epoch: i32_at(buf, 12),
            magic: buf[16] as i8,
            crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
            attributes: i16_at(buf, 21),
            last_offset_delta: i32_at(buf, 23),
            base_timestamp: i64_at(buf, 27),
            max_timestamp: i64_at(buf, 35),
            producer_id: i64_at(buf, 43),
            producer_epoch: i16_at(buf, 51),
            base_sequence: i32_at(buf, 53),
            record_count: i32_at(buf, 57),
        })
    }

    /// Whole size of the batch in bytes, including offset and length fields.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record (saturating: a header read from damaged bytes may put it
    /// past `i64::MAX`; recovery refuses such a batch, see `segment::recovery`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }

    /// Offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// True when the batch's timestamps are the broker's append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// True for a batch written inside a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// True for a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// The delete horizon the cleaner stamped on this batch (KIP-534): when the flag is set,
    /// `baseTimestamp` holds the time after which its tombstones may be removed, and record
    /// timestamps (`baseTimestamp` + delta) were re-based on it, so they read unchanged.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_BIT != 0).then_some(self.base_timestamp)
    }

    /// True when the batch comes from an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record (wrapping as Kafka does at i32::MAX).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

/// Why bytes at some position are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchDefect {
    /// Fewer bytes than the header or the declared length.
    Truncated,
    /// A magic byte other than 2.
    Magic(i8),
    /// A declared length too small or too large.
    Length(i32),
    /// The CRC-32C does not match.
    Crc {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// The header's counts do not agree.
    Counts(String),
}

impl std::fmt::Display for BatchDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchDefect::Truncated => write!(f, "truncated batch"),
            BatchDefect::Magic(m) => write!(f, "magic {m}, expected 2"),
            BatchDefect::Length(l) => write!(f, "batch length {l} out of range"),
            BatchDefect::Crc { stored, computed } => {
                write!(
                    f,
                    "CRC-32C mismatch: stored {stored:08x}, computed {computed:08x}"
                )
            }
            BatchDefect::Counts(why) => write!(f, "{why}"),
        }
    }
}

/// CRC-32C over `attributes..end` of a whole batch.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET.min(batch.len())..])
}

/// Checks the batch starting at `buf[0]`: framing, magic, length bound, counts and CRC-32C.
/// Returns its header; `buf` may hold more bytes after the batch.
pub fn check_batch(buf: &[u8], max_len: usize) -> std::result::Result<BatchHeader, BatchDefect> {
    if buf.len() >= 17 && buf.len() < HEADER_LEN && buf[16] as i8 != 2 {
        return Err(BatchDefect::Magic(buf[16] as i8));
    }
    let h = BatchHeader::parse(buf).ok_or(BatchDefect::Truncated)?;
    if h.magic != 2 {
        return Err(BatchDefect::Magic(h.magic));
    }
    if h.batch_length < MIN_BATCH_LENGTH || h.size() > max_len {
        return Err(BatchDefect::Length(h.batch_length));
    }
    if buf.len() < h.size() {
        return Err(BatchDefect::Truncated);
    }
    if h.record_count < 0 || h.last_offset_delta < 0 {
        return Err(BatchDefect::Counts(format!(
            "negative record count {} or last offset delta {}",
            h.record_count, h.last_offset_delta
        )));
    }
    let computed = compute_crc(&buf[..h.size()]);
    if computed != h.crc {
        return Err(BatchDefect::Crc {
            stored: h.crc,
            computed,
        });
    }
    Ok(h)
}

/// Validates a client's batch for append: [`check_batch`] plus the rules Kafka's LogValidator
/// applies to producer input.
pub fn validate_client_batch(buf: &[u8], max_message_bytes: u32) -> Result<BatchHeader> {
    let h = check_batch(buf, usize::MAX).map_err(|d| match d {
        BatchDefect::Magic(m) => StorageError::UnsupportedMagic(m),
        other => StorageError::CorruptRecord(other.to_string()),
    })?;
    if h.size() > max_message_bytes as usize {
        return Err(StorageError::RecordTooLarge {
            size: h.size(),
            max: max_message_bytes,
        });
    }
    if h.record_count == 0 {
        return Err(invalid("batch holds no records".into()));
    }
    if h.last_offset_delta != h.record_count - 1 {
        return Err(invalid(format!(
            "last offset delta {} does not match record count {}",
            h.last_offset_delta, h.record_count
        )));
    }
    if h.is_control() {
        return Err(invalid("clients may not write control batches".into()));
    }
    if h.compression() > 4 {
        return Err(invalid(format!(
            "unknown compression codec {}",
            h.compression()
        )));
    }
    Ok(h)
}

fn invalid(reason: String) -> StorageError {
    StorageError::InvalidRecord {
        reason,
        records: Vec::new(),
    }
}

/// Writes `baseOffset` and `partitionLeaderEpoch` into a batch (neither is covered by the CRC).
pub fn set_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Marks a batch as LogAppendTime with `now` as its max timestamp and recomputes its CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = i16_at(batch, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates the whole, valid batches at the start of `buf`; stops at the first defect.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    defect: Option<(usize, BatchDefect)>,
}

impl<'a> BatchIter<'a> {
    /// Iterates `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter {
            buf,
            pos: 0,
            defect: None,
        }
    }

    /// Where the first invalid bytes start (or the end), and why, once iteration stopped.
    pub fn stop(&self) -> (usize, Option<&BatchDefect>) {
        (self.pos, self.defect.as_ref().map(|(_, d)| d))
    }
}

impl Iterator for BatchIter<'_> {
    /// Position of the batch in `buf` and its header.
    type Item = (usize, BatchHeader);

    fn next(&mut self) -> Option<Self::Item> {
        if self.defect.is_some() || self.pos >= self.buf.len() {
            return None;
        }
        match check_batch(&self.buf[self.pos..], usize::MAX) {
            Ok(h) => {
                let at = self.pos;
                self.pos += h.size();
                Some((at, h))
            }
            Err(d) => {
                self.defect = Some((self.pos, d));
                None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Minimal batch builder for tests (uncompressed records, no headers).

    /// A record's optional key and value.
    pub(crate) type Kv<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    /// A v2 batch of `values` with optional keys, timestamps `ts + i`.
    pub(crate) fn batch(records: &[Kv<'_>], ts: i64) -> Vec<u8> {
        batch_with_producer(records, ts, -1, -1, -1)
    }

    pub(crate) fn batch_with_producer(
        records: &[Kv<'_>],
        ts: i64,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
    ) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, (k, v)) in records.iter().enumerate() {
            let mut r = vec![0u8];
            varint(&mut r, i as i64); // timestamp delta
            varint(&mut r, i as i64); // offset delta
            match k {
                Some(k) => {
                    varint(&mut r, k.len() as i64);
                    r.extend_from_slice(k);
                }
                None => varint(&mut r, -1),
            }
            match v {
                Some(v) => {
                    varint(&mut r, v.len() as i64);
                    r.extend_from_slice(v);
                }
                None => varint(&mut r, -1),
            }
            varint(&mut r, 0);
            varint(&mut body, r.len() as i64);
            body.extend_from_slice(&r);
        }
        let n = records.len() as i32;
        let mut b = Vec::with_capacity(61 + body.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(n - 1).to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&(ts + (n as i64 - 1).max(0)).to_be_bytes());
        b.extend_from_slice(&producer_id.to_be_bytes());
        b.extend_from_slice(&epoch.to_be_bytes());
        b.extend_from_slice(&base_sequence.to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&body);
        let crc = super::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// A batch of `n` values of `size` bytes each.
    pub(crate) fn values(n: usize, size: usize, ts: i64) -> Vec<u8> {
        let value = vec![b'x'; size];
        let recs: Vec<Kv<'_>> = (0..n).map(|_| (None, Some(&value[..]))).collect();
        batch(&recs, ts)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::values;
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn valid_batch_parses_and_offsets_can_be_set_without_breaking_crc() {
        let mut b = values(3, 10, 1000);
        let h = validate_client_batch(&b, 1 << 20).expect("valid");
        assert_eq!(
            (h.record_count, h.last_offset_delta, h.max_timestamp),
            (3, 2, 1002)
        );
        set_offset_and_epoch(&mut b, 42, 7);
        let h = check_batch(&b, usize::MAX).expect("still valid");
        assert_eq!(
            (h.base_offset, h.partition_leader_epoch, h.last_offset()),
            (42, 7, 44)
        );
        set_log_append_time(&mut b, 5555);
        let h = check_batch(&b, usize::MAX).expect("crc recomputed");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5555);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let b = values(2, 8, 0);
        for i in 0..b.len() {
            // baseOffset and partitionLeaderEpoch are outside the CRC by design.
            if i < 8 || (12..16).contains(&i) {
                continue;
            }
            let mut c = b.clone();
            c[i] ^= 0x20;
            assert!(
                check_batch(&c, usize::MAX).is_err(),
                "flip at {i} undetected"
            );
        }
    }

    #[test]
    fn legacy_magic_and_oversize_are_refused_with_their_own_errors() {
        let mut b = values(1, 8, 0);
        b[16] = 1;
        assert!(matches!(
            validate_client_batch(&b, 1 << 20),
            Err(StorageError::UnsupportedMagic(1))
        ));
        let b = values(4, 100, 0);
        assert!(matches!(
            validate_client_batch(&b, 100),
            Err(StorageError::RecordTooLarge { .. })
        ));
    }

    #[test]
    fn iterator_stops_at_a_torn_batch() {
        let mut buf = values(1, 5, 0);
        let first = buf.len();
        buf.extend_from_slice(&values(2, 5, 0));
        buf.truncate(buf.len() - 1);
        let mut it = BatchIter::new(&buf);
        assert_eq!(it.by_ref().count(), 1);
        assert_eq!(it.stop(), (first, Some(&BatchDefect::Truncated)));
    }
}
