//! A topic's `compression.type`: the leader rewrites each producer batch whose codec differs
//! into the topic's codec (Kafka's LogValidator does the same), keeping everything else of
//! the batch: producer id, epoch and sequence, timestamps, offsets deltas, the records.

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::compression::{self, Compression};
use crate::error::{Result, StorageError};
use crate::record;

/// Decompressed bytes one batch may expand to while it is rewritten (as the validator).
const DECOMPRESS_LIMIT: usize = 64 << 20;

/// Byte offset of the attributes in a v2 batch header.
const ATTRIBUTES_AT: usize = 21;
/// Byte offset of the batch length.
const LENGTH_AT: usize = 8;
/// Byte offset of the CRC, which covers everything from the attributes on.
const CRC_AT: usize = 17;

/// `batches` with every batch not in `codec` rewritten into it, or `None` when all already
/// are (the common case costs nothing).
pub(super) fn recompress(
    batches: &[u8],
    headers: &[(usize, BatchHeader)],
    codec: Compression,
    level: Option<i32>,
) -> Result<Option<Vec<u8>>> {
    if headers.iter().all(|(_, h)| h.compression() == codec.id()) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(batches.len());
    for (at, h) in headers {
        let whole = &batches[*at..*at + h.size()];
        if h.compression() == codec.id() {
            out.extend_from_slice(whole);
            continue;
        }
        let (_, records) = record::records_section(whole, DECOMPRESS_LIMIT)
            .map_err(|e| StorageError::CorruptRecord(e.to_string()))?;
        let body = compression::compress_at(codec, &records, level)
            .map_err(|e| StorageError::CorruptRecord(format!("recompressing a batch: {e}")))?;
        let start = out.len();
        out.extend_from_slice(&whole[..HEADER_LEN]);
        out.extend_from_slice(&body);
        let batch = &mut out[start..];
        let length = i32::try_from(batch.len() - 12)
            .map_err(|_| StorageError::CorruptRecord("a recompressed batch is too large".into()))?;
        batch[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        let attributes = (h.attributes & !0x07) | i16::from(codec.id());
        batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        let crc = batch::compute_crc(batch);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
    Ok(Some(out))
}
