//! The storage engine's errors. Each names the file and offset involved where there is one.

use std::io;
use std::path::PathBuf;

use crate::types::{Offset, TopicPartition};

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system call on a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file on disk holds data that does not validate and cannot be repaired here.
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte position of the bad data.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record batch offered for append is malformed (bad framing, CRC, negative counts):
    /// the bytes may have been damaged on the way (Kafka's CorruptRecordException).
    #[error("corrupt record batch: {0}")]
    CorruptRecord(String),
    /// A well-formed batch Kafka refuses for what it holds (Kafka's InvalidRecordException,
    /// KIP-467): sending it again cannot succeed.
    #[error("invalid record batch: {reason}")]
    InvalidRecord {
        /// Why the batch is refused.
        reason: String,
        /// The records at fault: index in the batch and why, when particular records are.
        records: Vec<(i32, String)>,
    },
    /// Records whose CreateTime timestamps lie outside the topic's
    /// `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms` of the broker's
    /// clock (Kafka's INVALID_TIMESTAMP, with the records at fault).
    #[error("invalid timestamp: {reason}")]
    InvalidTimestamp {
        /// Why the batch is refused.
        reason: String,
        /// The records at fault: index in the batch and why.
        records: Vec<(i32, String)>,
    },
    /// A message set in the legacy v0/v1 format, which Sluice does not store.
    #[error("unsupported record batch magic {0}: only v2 record batches are accepted")]
    UnsupportedMagic(i8),
    /// A batch larger than the topic's `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge {
        /// Size of the batch in bytes.
        size: usize,
        /// The limit.
        max: u32,
    },
    /// A read or truncation at an offset outside `[log_start, log_end]`.
    #[error("offset {requested} is out of range [{log_start}, {log_end}] of {partition}")]
    OffsetOutOfRange {
        /// The partition.
        partition: TopicPartition,
        /// The offset asked for.
        requested: Offset,
        /// The log start offset.
        log_start: Offset,
        /// The log end offset.
        log_end: Offset,
    },
    /// An idempotent producer's batch does not follow its previous sequence number.
    #[error("out of order sequence for producer {producer_id} on {partition}: expected {expected}, got {received}")]
    OutOfOrderSequence {
        /// The partition.
        partition: TopicPartition,
        /// Producer id.
        producer_id: i64,
        /// The next sequence the log expects.
        expected: i32,
        /// The sequence the batch carries.
        received: i32,
    },
    /// An idempotent producer used an epoch older than the partition has seen.
    #[error("producer {producer_id} epoch {received} is fenced by epoch {current} on {partition}")]
    InvalidProducerEpoch {
        /// The partition.
        partition: TopicPartition,
        /// Producer id.
        producer_id: i64,
        /// The epoch on record.
        current: i16,
        /// The epoch the batch carries.
        received: i16,
    },
    /// A configuration key or value is not valid.
    #[error("invalid configuration {key}={value}: {reason}")]
    InvalidConfig {
        /// The Kafka config key.
        key: String,
        /// The value offered.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A flush failed earlier; the log refuses writes because what is on disk is unknown.
    #[error("log {partition} is poisoned after a failed flush and refuses writes: {reason}")]
    Poisoned {
        /// The partition.
        partition: TopicPartition,
        /// The original failure.
        reason: String,
    },
    /// The log was closed or deleted.
    #[error("log {0} is closed")]
    Closed(TopicPartition),
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> StorageError {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    /// True for an I/O error that free space will not cure: a media error, a filesystem
    /// remounted read-only, files gone from under the log. Kafka takes the log directory
    /// offline for these; a full disk (`ENOSPC`, `EDQUOT`) is not one of them, since appends
    /// succeed again once space returns.
    pub fn is_disk_failure(&self) -> bool {
        let recoverable = [
            rustix::io::Errno::NOSPC.raw_os_error(),
            rustix::io::Errno::DQUOT.raw_os_error(),
        ];
        matches!(self, StorageError::Io { source, .. }
            if source.raw_os_error().is_some_and(|c| !recoverable.contains(&c)))
    }

    /// The file or directory an I/O error concerns.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            StorageError::Io { path, .. } | StorageError::Corrupt { path, .. } => Some(path),
            _ => None,
        }
    }

    /// True when the error concerns the log or disk rather than the request (Kafka's
    /// KAFKA_STORAGE_ERROR family): retrying the same request elsewhere may succeed.
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            StorageError::Io { .. }
                | StorageError::Corrupt { .. }
                | StorageError::Poisoned { .. }
                | StorageError::Closed(_)
        )
    }
}
