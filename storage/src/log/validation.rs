//! What Kafka's LogValidator checks of a producer's records beyond the batch header: the
//! records section holds exactly the records the header counts, at offset deltas 0, 1, 2...
//! (the header's counts decide how far the log end moves, so they must be the records'
//! own), and a compacted topic takes no record without a key.

use crate::batch::BatchHeader;
use crate::error::{Result, StorageError};
use crate::record::{self, RecordIter};
use crate::types::TopicPartition;

/// Decompressed bytes one batch may expand to while it is checked: far above any real
/// batch (`max.message.bytes` bounds the compressed size), bounded against bombs.
const DECOMPRESS_LIMIT: usize = 64 << 20;

/// Checks every record of the client batches `headers` locates in `batches`.
pub(super) fn check_client_records(
    batches: &[u8],
    headers: &[(usize, BatchHeader)],
    compacted: bool,
    tp: &TopicPartition,
) -> Result<()> {
    for (at, h) in headers {
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
