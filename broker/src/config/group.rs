//! The group coordinator's settings. Here rather than in `group`, so that the configuration
//! depends on no engine (the engines read it).

/// Group coordinator settings, Kafka's keys and defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions` (50).
    pub offsets_partitions: i32,
    /// `group.initial.rebalance.delay.ms` (3000).
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` (6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000).
    pub max_session_timeout_ms: i32,
    /// `offset.metadata.max.bytes` (4096): longer commit metadata is refused with
    /// OFFSET_METADATA_TOO_LARGE. At most `i16::MAX`, what the record schema holds.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes` (10080, seven days), in ms: how long the committed
    /// offsets of a group with no members (or of one that only commits) are kept.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms` (600000): how often offsets expire.
    pub offsets_retention_check_interval_ms: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_partitions: 50,
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
        }
    }
}
