//! Per-log configuration under Kafka's topic-level key names, with Kafka's defaults.

use std::collections::BTreeMap;

use crate::error::{Result, StorageError};
use crate::types::TimestampType;

/// `cleanup.policy`: what happens to old segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Delete segments past retention.
    #[default]
    Delete,
    /// Keep the latest record per key.
    Compact,
    /// Both: compact, and delete past retention.
    CompactDelete,
}

impl CleanupPolicy {
    /// True when log compaction runs for this policy.
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
    /// True when time and size retention delete segments for this policy.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
    fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// `compression.type`: the codec a topic stores its batches in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopicCompression {
    /// `producer`: each batch as the producer compressed it.
    #[default]
    Producer,
    /// Every batch recompressed by the leader to this codec (`uncompressed` is `None`).
    Codec(crate::compression::Compression),
}

impl TopicCompression {
    fn parse(s: &str) -> Option<TopicCompression> {
        use crate::compression::Compression;
        Some(match s {
            "producer" => TopicCompression::Producer,
            "uncompressed" => TopicCompression::Codec(Compression::None),
            "gzip" => TopicCompression::Codec(Compression::Gzip),
            "snappy" => TopicCompression::Codec(Compression::Snappy),
            "lz4" => TopicCompression::Codec(Compression::Lz4),
            "zstd" => TopicCompression::Codec(Compression::Zstd),
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        use crate::compression::Compression;
        match self {
            TopicCompression::Producer => "producer",
            TopicCompression::Codec(Compression::None) => "uncompressed",
            TopicCompression::Codec(c) => c.name(),
        }
    }
}

/// `min.cleanable.dirty.ratio`: a fraction in [0, 1] (always finite, so equality is exact).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirtyRatio(f64);

impl Eq for DirtyRatio {}

impl DirtyRatio {
    /// The fraction.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// Configuration of one partition log. Keys and defaults are Kafka's topic-level ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when it would grow past this. Default 1 GiB.
    pub segment_bytes: u32,
    /// `segment.ms`: roll the active segment when its first batch is this old. Default 7 days.
    pub segment_ms: i64,
    /// `segment.index.bytes`: size preallocated for each index of the active segment. Default 10 MiB.
    pub segment_index_bytes: u32,
    /// `index.interval.bytes`: bytes of log between two index entries. Default 4096.
    pub index_interval_bytes: u32,
    /// `retention.ms`: delete segments whose newest record is older. -1 = forever. Default 7 days.
    pub retention_ms: i64,
    /// `retention.bytes`: delete old segments while the log is larger. -1 = no limit (default).
    pub retention_bytes: i64,
    /// `cleanup.policy`. Default `delete`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long tombstones survive compaction. Default 1 day.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted. Default 0.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a log whose oldest uncompacted segment began this long ago
    /// is compacted whatever its dirty ratio. Default: never (`i64::MAX`).
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: compact a log once this fraction of its cleanable bytes
    /// was written since the last pass. Default 0.5.
    pub min_cleanable_dirty_ratio: DirtyRatio,
    /// `message.timestamp.before.max.ms`: a producer's CreateTime record older than this
    /// (against the broker's clock) is refused with INVALID_TIMESTAMP. Default: no bound.
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: likewise for a timestamp this far in the future.
    pub message_timestamp_after_max_ms: i64,
    /// `max.message.bytes`: largest record batch accepted. Default 1048588.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`. Default `CreateTime`.
    pub message_timestamp_type: TimestampType,
    /// `compression.type`. Default `producer`.
    pub compression_type: TopicCompression,
    /// `compression.gzip.level`: -1 (the codec's default) or 1-9.
    pub compression_gzip_level: i32,
    /// `compression.lz4.level`: 1-17. Default 9.
    pub compression_lz4_level: i32,
    /// `compression.zstd.level`: -131072 to 22. Default 3.
    pub compression_zstd_level: i32,
    /// `flush.messages`: flush after this many records. Default: never (`i64::MAX`), as Kafka,
    /// which relies on replication for durability.
    ///
    /// Setting this or `flush.ms` also changes how appends reach the file: with a flush policy
    /// they are written with `pwrite(2)` (each flush then writes back only the blocks appended
    /// since the last one); without one they are copied into the mapped, preallocated segment,
    /// with transparent huge pages while the partition is written at 1 MiB/s or more.
    pub flush_messages: i64,
    /// `flush.ms`: flush when unflushed data is this old. Default: never (`i64::MAX`). See
    /// [`LogConfig::flush_messages`] for its effect on the write path.
    pub flush_ms: i64,
    /// `file.delete.delay.ms`: how long a deleted segment's files stay renamed `.deleted`
    /// before housekeeping unlinks them (readers never need them: they read the mapping a
    /// segment pins when deleted). Default 60000, as Kafka.
    pub file_delete_delay_ms: i64,
    /// `producer.id.expiration.ms`: an idempotent producer that wrote nothing to this log for
    /// this long (by its batches' max timestamp) is forgotten by housekeeping, so producer
    /// state and its snapshots stay bounded; its next batch then starts it afresh with any
    /// sequence (KIP-360). A broker setting in Kafka, per log here. Default 86400000 (1 day).
    pub producer_id_expiration_ms: i64,
    /// `preallocate`: Kafka's flag. Sluice always preallocates the active segment in chunks
    /// (see [`LogConfig::preallocate_chunk_bytes`]); this is accepted and reported only.
    pub preallocate: bool,
    /// `sluice.segment.preallocate.bytes`: chunk by which the active segment's file grows with
    /// `fallocate`. Default 16 MiB: large enough to amortize the call, small enough that an
    /// idle partition does not hold much disk.
    pub preallocate_chunk_bytes: u32,
    /// The broker's `log.cleaner.dedupe.buffer.size`: memory for the key map of one
    /// compaction pass; a pass maps as much of the dirty section as fits and cleans up to
    /// there. Default 128 MiB, as Kafka (which shares it among its cleaner threads; Sluice
    /// compacts one log at a time per housekeeping loop). Not a topic configuration.
    pub cleaner_dedupe_buffer_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: DirtyRatio(0.5),
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            compression_type: TopicCompression::Producer,
            compression_gzip_level: -1,
            compression_lz4_level: 9,
            compression_zstd_level: 3,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            file_delete_delay_ms: 60_000,
            producer_id_expiration_ms: 24 * 3600 * 1000,
            preallocate: false,
            preallocate_chunk_bytes: 16 * 1024 * 1024,
            cleaner_dedupe_buffer_bytes: 128 << 20,
        }
    }
}

/// One configuration entry as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Kafka key.
    pub name: String,
    /// Current value, rendered as Kafka renders it.
    pub value: String,
    /// True when the value equals the default.
    pub is_default: bool,
}

/// Smallest `segment.bytes` accepted: a segment must hold at least one batch header.
const MIN_SEGMENT_BYTES: i64 = 14;

impl LogConfig {
    /// The codec and level a leader recompresses client batches to, when the topic says.
    pub(crate) fn recompression(&self) -> Option<(crate::compression::Compression, Option<i32>)> {
        use crate::compression::Compression;
        let TopicCompression::Codec(codec) = self.compression_type else {
            return None;
        };
        let level = match codec {
            Compression::Gzip => {
                (self.compression_gzip_level > 0).then_some(self.compression_gzip_level)
            }
            Compression::Lz4 => Some(self.compression_lz4_level),
            Compression::Zstd => Some(self.compression_zstd_level),
            Compression::None | Compression::Snappy => None,
        };
        Some((codec, level))
    }

    /// Every key a `LogConfig` understands.
    pub const KEYS: &'static [&'static str] = &[
        "cleanup.policy",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.type",
        "compression.zstd.level",
        "delete.retention.ms",
        "file.delete.delay.ms",
        "flush.messages",
        "flush.ms",
        "index.interval.bytes",
        "max.compaction.lag.ms",
        "max.message.bytes",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.type",
        "min.cleanable.dirty.ratio",
        "min.compaction.lag.ms",
        "preallocate",
        "producer.id.expiration.ms",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.index.bytes",
        "segment.ms",
        "sluice.segment.preallocate.bytes",
    ];

    /// Builds a config from defaults overridden by `props`; an unknown key or bad value is an error.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<LogConfig> {
        let mut config = LogConfig::default();
        for (k, v) in props {
            config.set(k, v)?;
        }
        Ok(config)
    }

    /// Sets one key from its string form, validating it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |reason: &str| StorageError::InvalidConfig {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let int = |min: i64, max: i64| -> Result<i64> {
            let n: i64 = value.trim().parse().map_err(|_| bad("not an integer"))?;
            if n < min || n > max {
                return Err(bad(&format!("must be between {min} and {max}")));
            }
            Ok(n)
        };
        match key {
            "cleanup.policy" => {
                let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
                parts.sort_unstable();
                parts.dedup();
                self.cleanup_policy = match parts.as_slice() {
                    ["delete"] => CleanupPolicy::Delete,
                    ["compact"] => CleanupPolicy::Compact,
                    ["compact", "delete"] => CleanupPolicy::CompactDelete,
                    _ => return Err(bad("expected delete, compact or compact,delete")),
                }
            }
            "compression.type" => {
                self.compression_type = TopicCompression::parse(value.trim()).ok_or_else(|| {
                    bad("expected uncompressed, zstd, lz4, snappy, gzip or producer")
                })?
            }
            "compression.gzip.level" => {
                let l = int(-1, 9)?;
                if l == 0 {
                    return Err(bad("must be -1 or between 1 and 9"));
                }
                self.compression_gzip_level = l as i32;
            }
            "compression.lz4.level" => self.compression_lz4_level = int(1, 17)? as i32,
            "compression.zstd.level" => self.compression_zstd_level = int(-131_072, 22)? as i32,
            "delete.retention.ms" => self.delete_retention_ms = int(0, i64::MAX)?,
            "file.delete.delay.ms" => self.file_delete_delay_ms = int(0, i64::MAX)?,
            "flush.messages" => self.flush_messages = int(1, i64::MAX)?,
            "flush.ms" => self.flush_ms = int(0, i64::MAX)?,
            "index.interval.bytes" => self.index_interval_bytes = int(0, i32::MAX as i64)? as u32,
            "max.message.bytes" => self.max_message_bytes = int(0, i32::MAX as i64)? as u32,
            "message.timestamp.type" => {
                self.message_timestamp_type = match value.trim() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(bad("expected CreateTime or LogAppendTime")),
                }
            }
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = int(0, i64::MAX)?,
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = int(1, i64::MAX)?,
            "min.cleanable.dirty.ratio" => {
                let r: f64 = value.trim().parse().map_err(|_| bad("not a number"))?;
                if !(0.0..=1.0).contains(&r) {
                    return Err(bad("must be between 0 and 1"));
                }
                self.min_cleanable_dirty_ratio = DirtyRatio(r);
            }
            "message.timestamp.before.max.ms" => {
                self.message_timestamp_before_max_ms = int(0, i64::MAX)?
            }
            "message.timestamp.after.max.ms" => {
                self.message_timestamp_after_max_ms = int(0, i64::MAX)?
            }
            "preallocate" => {
                self.preallocate = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("expected true or false")),
                }
            }
            "producer.id.expiration.ms" => self.producer_id_expiration_ms = int(1, i64::MAX)?,
            "retention.bytes" => self.retention_bytes = int(-1, i64::MAX)?,
            "retention.ms" => self.retention_ms = int(-1, i64::MAX)?,
            "segment.bytes" => self.segment_bytes = int(MIN_SEGMENT_BYTES, i32::MAX as i64)? as u32,
            "segment.index.bytes" => self.segment_index_bytes = int(4096, i32::MAX as i64)? as u32,
            "segment.ms" => self.segment_ms = int(1, i64::MAX)?,
            "sluice.segment.preallocate.bytes" => {
                self.preallocate_chunk_bytes = int(4096, 1 << 30)? as u32
            }
            _ => return Err(bad("unknown topic configuration")),
        }
        Ok(())
    }

    /// The value of `key` rendered as Kafka renders it, or `None` for an unknown key.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "cleanup.policy" => self.cleanup_policy.as_str().to_string(),
            "compression.type" => self.compression_type.as_str().to_string(),
            "compression.gzip.level" => self.compression_gzip_level.to_string(),
            "compression.lz4.level" => self.compression_lz4_level.to_string(),
            "compression.zstd.level" => self.compression_zstd_level.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "file.delete.delay.ms" => self.file_delete_delay_ms.to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => match self.message_timestamp_type {
                TimestampType::CreateTime => "CreateTime".to_string(),
                TimestampType::LogAppendTime => "LogAppendTime".to_string(),
            },
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "min.cleanable.dirty.ratio" => format!("{:?}", self.min_cleanable_dirty_ratio.0),
            "message.timestamp.before.max.ms" => self.message_timestamp_before_max_ms.to_string(),
            "message.timestamp.after.max.ms" => self.message_timestamp_after_max_ms.to_string(),
            "preallocate" => self.preallocate.to_string(),
            "producer.id.expiration.ms" => self.producer_id_expiration_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "sluice.segment.preallocate.bytes" => self.preallocate_chunk_bytes.to_string(),
            _ => return None,
        })
    }

    /// Every key with its current value and whether it is the default (for DescribeConfigs).
    pub fn describe(&self) -> Vec<ConfigEntry> {
        let defaults = LogConfig::default();
        LogConfig::KEYS
            .iter()
            .filter_map(|k| {
                let value = self.get(k)?;
                Some(ConfigEntry {
                    name: (*k).to_string(),
                    is_default: defaults.get(k).as_deref() == Some(value.as_str()),
                    value,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_through_get_and_set() {
        let config = LogConfig::default();
        for key in LogConfig::KEYS {
            let value = config.get(key).expect("known key");
            let mut copy = LogConfig::default();
            copy.set(key, &value).expect("own value accepted");
            assert_eq!(copy, config, "{key}");
        }
        assert!(config.describe().iter().all(|e| e.is_default));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_naming_the_key() {
        let mut c = LogConfig::default();
        let err = c.set("retention.mss", "1").unwrap_err().to_string();
        assert!(err.contains("retention.mss"), "{err}");
        let err = c.set("segment.bytes", "ten").unwrap_err().to_string();
        assert!(err.contains("segment.bytes"), "{err}");
        assert!(c.set("cleanup.policy", "delete,compact").is_ok());
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert!(c.set("cleanup.policy", "shred").is_err());
    }
}
