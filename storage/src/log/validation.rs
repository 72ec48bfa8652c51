//! What Kafka's LogValidator checks of a producer's records beyond the batch header: the
//! records section holds exactly the records the header counts, at offset deltas 0, 1, 2...
//! (the header's counts decide how far the log end moves, so they must be the records'
//! own), a compacted topic takes no record without a key, and CreateTime timestamps lie
//! within the topic's bounds of the broker's clock.

use crate::batch::BatchHeader;
use crate::error::{Result, StorageError};
use crate::record::{self, RecordIter};
use crate::types::TopicPartition;

/// Decompressed bytes one batch may expand to while it is checked: far above any real
/// batch (`max.message.bytes` bounds the compressed size), bounded against bombs.
const DECOMPRESS_LIMIT: usize = 64 << 20;

/// How far a producer's CreateTime timestamps may stray from the broker's clock
/// (`message.timestamp.before.max.ms`, `message.timestamp.after.max.ms`).
#[derive(Debug, Clone, Copy)]
pub(super) struct TimestampBounds {
    pub(super) now: i64,
    pub(super) before_max_ms: i64,
    pub(super) after_max_ms: i64,
}

impl TimestampBounds {
    /// Why `ts` (of the record at `offset` in the batch) is out of bounds, Kafka's sentence.
    fn check(&self, ts: i64, offset: i64) -> Option<String> {
        // No timestamp (-1) is not checked, as Kafka does not.
        let early = self.now.saturating_sub(ts) > self.before_max_ms;
        let late = ts.saturating_sub(self.now) > self.after_max_ms;
        (ts != -1 && (early || late)).then(|| {
            format!(
                "Timestamp {ts} of message with offset {offset} is out of range. The timestamp should be within [{}, {}]",
                self.now.saturating_sub(self.before_max_ms),
                self.now.saturating_add(self.after_max_ms)
            )
        })
    }
}

/// Checks every record of the client batches `headers` locates in `batches`; `timestamps`
/// when the topic keeps CreateTime.
pub(super) fn check_client_records(
    batches: &[u8],
    headers: &[(usize, BatchHeader)],
    compacted: bool,
    timestamps: Option<TimestampBounds>,
    tp: &TopicPartition,
) -> Result<()> {
    for (at, h) in headers {
        let mut out_of_range = Vec::new();
        let (_, records) = record::records_section(&batches[*at..*at + h.size()], DECOMPRESS_LIMIT)
            .map_err(|e| StorageError::CorruptRecord(e.to_string()))?;
        let declared = h.record_count.max(0) as usize;
        let mut keyless = Vec::new();
        let mut iter = RecordIter::new(&records, declared);
        for (index, r) in (0i32..).zip(iter.by_ref()) {
            let r = r.map_err(|e| invalid(format!("records section: {e}")))?;
            if r.offset_delta != index {
                return Err(invalid(format!(
                    "record {index} has offset delta {}: a batch's records are numbered 0, 1, 2...",
                    r.offset_delta
                )));
            }
            if let Some(why) = timestamps.and_then(|t| {
                t.check(
                    h.base_timestamp.saturating_add(r.timestamp_delta),
                    i64::from(index),
                )
            }) {
                out_of_range.push((index, why));
            }
            if compacted && r.key.is_none() {
                keyless.push((
                    index,
                    format!("Compacted topic cannot accept message without key in topic partition {tp}."),
                ));
            }
        }
        if iter.remaining_bytes() > 0 {
            return Err(invalid(format!(
                "the batch declares {declared} records but its records section holds more"
            )));
        }
        if !out_of_range.is_empty() {
            return Err(StorageError::InvalidTimestamp {
                reason: out_of_range[0].1.clone(),
                records: out_of_range,
            });
        }
        if !keyless.is_empty() {
            return Err(StorageError::InvalidRecord {
                reason: format!(
                    "compacted topic {tp} cannot accept a record without a key ({} such)",
                    keyless.len()
                ),
                records: keyless,
            });
        }
    }
    Ok(())
}

fn invalid(reason: String) -> StorageError {
    StorageError::InvalidRecord {
        reason,
        records: Vec::new(),
    }
}
