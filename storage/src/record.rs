//! TEMPORARY shim until the records/compression module lands from the `records` branch.
#![allow(missing_docs)]

use crate::types::{Offset, TimestampOffset};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub String);

pub fn first_at_or_after(batch: &[u8], _ts: i64) -> Result<Option<TimestampOffset>, RecordError> {
    let h = crate::batch::BatchHeader::parse(batch).ok_or_else(|| RecordError("short".into()))?;
    Ok(Some(TimestampOffset { timestamp: h.max_timestamp, offset: Offset(h.base_offset) }))
}

pub struct BatchBuilder(Vec<(Option<Vec<u8>>, Option<Vec<u8>>)>, i64);
impl BatchBuilder {
    pub fn new() -> Self { BatchBuilder(Vec::new(), 0) }
    pub fn record(mut self, k: Option<&[u8]>, v: Option<&[u8]>, ts: i64) -> Self { self.0.push((k.map(|x| x.to_vec()), v.map(|x| x.to_vec()))); self.1 = ts; self }
    pub fn build(self) -> Vec<u8> { Vec::new() }
}
