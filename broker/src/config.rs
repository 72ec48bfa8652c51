//! `BrokerConfig`: the broker's settings under Kafka's key names.
//!
//! Layering, lowest first: defaults, the `--config` file (Java properties or TOML), `SLUICE_*`
//! environment variables (`SLUICE_LOG_DIRS` is `log.dirs`), then command-line flags and
//! `--override key=value`. Unknown keys and bad values are refused naming the key.
//!
//! Over 600 lines because `BrokerConfig::set` is the one table of every key Sluice takes;
//! it stays whole until keys are declared one by one (name, type, default, dynamic or not)
//! with the topic and broker configs work.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_storage::LogConfig;

mod authorizer;
use crate::security::settings::SecuritySettings;

mod group;
mod listeners;

pub use authorizer::{AuthorizerConfig, AUTHORIZER_CLASSES};
pub use group::GroupConfig;
pub use listeners::{Listener, ListenerSettings, CONTROLLER};

/// A configuration error, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {key}={value:?}: {reason}")]
pub struct ConfigError {
    /// The key.
    pub key: String,
    /// The offending value.
    pub value: String,
    /// Why.
    pub reason: String,
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// The broker's validated configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`.
    pub node_id: i32,
    /// `listeners`, `advertised.listeners` (but the CONTROLLER's, in `cluster`), their
    /// security protocols and the inter-broker listener.
    pub listeners: ListenerSettings,
    /// The `ssl.*`, `sasl.*` and `listener.name.<listener>.*` keys, read by the listeners
    /// that use them.
    pub security: SecuritySettings,
    /// `log.dirs`.
    pub log_dirs: Vec<PathBuf>,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// `queued.max.request.bytes`: memory for requests being processed, over all connections.
    pub queued_max_request_bytes: usize,
    /// `max.connections`.
    pub max_connections: usize,
    /// `cluster.id` (Sluice-specific default).
    pub cluster_id: String,
    /// `sluice.metrics.listener`: address of the Prometheus `/metrics` and `/health` endpoint
    /// (default 127.0.0.1:9644; empty disables it).
    pub metrics_listener: Option<SocketAddr>,
    /// Topic defaults derived from the `log.*` broker keys.
    pub log_defaults: LogConfig,
    /// Group coordinator settings (`offsets.topic.num.partitions`, `group.*`).
    pub groups: GroupConfig,
    /// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: AuthorizerConfig,
    /// Cluster and replication settings.
    pub cluster: ClusterSettings,
}

/// The keys of a replicated cluster. Without `controller.quorum.voters` the broker runs as a
/// single node and these are unused (except the topic defaults).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `controller.quorum.voters`: `id@host:port` of every voter of the metadata quorum.
    pub voters: Vec<(i32, String)>,
    /// `process.roles` as given (checked against the voters).
    pub roles: Option<String>,
    /// The `CONTROLLER://host:port` entry of `listeners`: where this node answers Raft RPCs.
    pub controller_listener: Option<Listener>,
    /// The `CONTROLLER://` entry of `advertised.listeners` (a learner's Raft address).
    pub advertised_controller: Option<Listener>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `broker.session.timeout.ms` (9000).
    pub session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms` (2000).
    pub heartbeat_interval_ms: u64,
    /// `replica.lag.time.max.ms` (30000).
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.wait.max.ms` (500).
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.max.bytes` (1048576).
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.backoff.ms` (1000).
    pub replica_fetch_backoff_ms: u64,
    /// `min.insync.replicas` (1), the topic default.
    pub min_insync_replicas: i32,
    /// `offsets.topic.replication.factor`, when set (see [`ClusterSettings::offsets_rf`]).
    pub offsets_replication_factor: Option<i16>,
    /// `auto.leader.rebalance.enable` (true).
    pub leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds` (300).
    pub leader_imbalance_check_interval_s: u64,
    /// `leader.imbalance.per.broker.percentage` (10).
    pub leader_imbalance_pct: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            voters: Vec::new(),
            roles: None,
            controller_listener: None,
            advertised_controller: None,
            rack: None,
            session_timeout_ms: 9000,
            heartbeat_interval_ms: 2000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1 << 20,
            replica_fetch_backoff_ms: 1000,
            min_insync_replicas: 1,
            offsets_replication_factor: None,
            leader_rebalance: true,
            leader_imbalance_check_interval_s: 300,
            leader_imbalance_pct: 10,
        }
    }
}

impl ClusterSettings {
    /// `offsets.topic.replication.factor`: as set, else Kafka's 3 in a cluster and 1 on a
    /// single node (where 3 could never be satisfied).
    pub fn offsets_rf(&self) -> i16 {
        self.offsets_replication_factor
            .unwrap_or(if self.enabled() { 3 } else { 1 })
    }

    /// Whether this node is part of a replicated cluster.
    pub fn enabled(&self) -> bool {
        !self.voters.is_empty()
    }
}

/// Parses `controller.quorum.voters`: `1@host:9093,2@host:9093`.
fn parse_voters(key: &str, value: &str) -> Result<Vec<(i32, String)>, ConfigError> {
    let mut out: Vec<(i32, String)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| bad(key, value, "expected ID@HOST:PORT[,ID@HOST:PORT...]"))?;
        let id: i32 = id
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| bad(key, value, format!("{id:?} is not a node id")))?;
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(bad(key, value, format!("{addr:?} is not HOST:PORT")));
        }
        if out.iter().any(|(seen, _)| *seen == id) {
            return Err(bad(key, value, format!("node {id} is listed twice")));
        }
        out.push((id, addr.to_string()));
    }
    Ok(out)
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listeners: ListenerSettings::default(),
            security: SecuritySettings::default(),
            log_dirs: vec![PathBuf::from("./data")],
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics: true,
            socket_request_max_bytes: 104_857_600,
            queued_max_request_bytes: 512 << 20,
            max_connections: 10_000,
            cluster_id: "sluice-cluster".into(),
            metrics_listener: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            log_defaults: LogConfig::default(),
            groups: GroupConfig::default(),
            authorizer: AuthorizerConfig::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

/// Broker keys that map to a topic-level key, as Kafka names them.
const LOG_KEYS: &[(&str, &str)] = &[
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("log.index.size.max.bytes", "segment.index.bytes"),
    ("log.index.interval.bytes", "index.interval.bytes"),
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.cleanup.policy", "cleanup.policy"),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    ("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms"),
    (
        "log.cleaner.min.cleanable.ratio",
        "min.cleanable.dirty.ratio",
    ),
    (
        "log.message.timestamp.before.max.ms",
        "message.timestamp.before.max.ms",
    ),
    (
        "log.message.timestamp.after.max.ms",
        "message.timestamp.after.max.ms",
    ),
    ("message.max.bytes", "max.message.bytes"),
    ("log.message.timestamp.type", "message.timestamp.type"),
    ("compression.type", "compression.type"),
    ("compression.gzip.level", "compression.gzip.level"),
    ("compression.lz4.level", "compression.lz4.level"),
    ("compression.zstd.level", "compression.zstd.level"),
    ("log.flush.interval.messages", "flush.messages"),
    ("log.flush.interval.ms", "flush.ms"),
    ("log.preallocate", "preallocate"),
    ("producer.id.expiration.ms", "producer.id.expiration.ms"),
];

impl BrokerConfig {
    /// Applies one `key=value`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.trim();
        let int = |min: i64, max: i64| -> Result<i64, ConfigError> {
            let n: i64 = v.parse().map_err(|_| bad(key, value, "not an integer"))?;
            if n < min || n > max {
                return Err(bad(key, value, format!("must be between {min} and {max}")));
            }
            Ok(n)
        };
        let boolean = || match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad(key, value, "expected true or false")),
        };
        match key {
            "node.id" | "broker.id" => self.node_id = int(0, i32::MAX as i64)? as i32,
            "listeners" => {
                let (controller, kafka) = listeners::parse_list(key, v)?
                    .into_iter()
                    .partition::<Vec<_>, _>(|l| l.name == CONTROLLER);
                self.cluster.controller_listener = controller.into_iter().next();
                self.listeners.kafka = kafka;
            }
            "advertised.listeners" => {
                let (controller, kafka) = listeners::parse_list(key, v)?
                    .into_iter()
                    .partition::<Vec<_>, _>(|l| l.name == CONTROLLER);
                self.cluster.advertised_controller = controller.into_iter().next();
                self.listeners.advertised = kafka;
            }
            "listener.security.protocol.map" => {
                self.listeners.protocol_map = Some(listeners::parse_protocol_map(key, v)?)
            }
            "inter.broker.listener.name" => {
                self.listeners.inter_broker_listener_name =
                    (!v.is_empty()).then(|| v.to_ascii_uppercase())
            }
            "security.inter.broker.protocol" => {
                self.listeners.security_inter_broker_protocol =
                    Some(v.parse().map_err(|e: String| bad(key, value, e))?)
            }
            "controller.quorum.voters" => self.cluster.voters = parse_voters(key, v)?,
            "controller.listener.names" => {
                if v != "CONTROLLER" {
                    return Err(bad(
                        key,
                        value,
                        "the controller listener is named CONTROLLER",
                    ));
                }
            }
            "process.roles" => {
                let mut roles: Vec<&str> = v.split(',').map(str::trim).collect();
                roles.sort_unstable();
                if roles != ["broker"] && roles != ["broker", "controller"] {
                    return Err(bad(
                        key,
                        value,
                        "every node serves clients: expected broker or broker,controller",
                    ));
                }
                self.cluster.roles = Some(roles.join(","));
            }
            "broker.rack" => self.cluster.rack = (!v.is_empty()).then(|| v.to_string()),
            "broker.session.timeout.ms" => {
                self.cluster.session_timeout_ms = int(100, i32::MAX as i64)? as u64
            }
            "broker.heartbeat.interval.ms" => {
                self.cluster.heartbeat_interval_ms = int(10, i32::MAX as i64)? as u64
            }
            "replica.lag.time.max.ms" => {
                self.cluster.replica_lag_time_max_ms = int(1, i32::MAX as i64)?
            }
            "replica.fetch.wait.max.ms" => {
                self.cluster.replica_fetch_wait_max_ms = int(0, i32::MAX as i64)? as i32
            }
            "replica.fetch.max.bytes" => {
                self.cluster.replica_fetch_max_bytes = int(1, i32::MAX as i64)? as i32
            }
            "replica.fetch.backoff.ms" => {
                self.cluster.replica_fetch_backoff_ms = int(0, i32::MAX as i64)? as u64
            }
            "min.insync.replicas" => {
                self.cluster.min_insync_replicas = int(1, i16::MAX as i64)? as i32
            }
            "auto.leader.rebalance.enable" => self.cluster.leader_rebalance = boolean()?,
            "leader.imbalance.check.interval.seconds" => {
                self.cluster.leader_imbalance_check_interval_s = int(1, i32::MAX as i64)? as u64
            }
            "leader.imbalance.per.broker.percentage" => {
                self.cluster.leader_imbalance_pct = int(0, 100)? as u32
            }
            "offsets.topic.replication.factor" => {
                self.cluster.offsets_replication_factor = Some(int(1, i16::MAX as i64)? as i16)
            }
            "log.dirs" | "log.dir" => {
                self.log_dirs = v
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect();
                if self.log_dirs.is_empty() {
                    return Err(bad(key, value, "at least one directory is required"));
                }
            }
            "num.partitions" => self.num_partitions = int(1, 100_000)? as i32,
            "default.replication.factor" => {
                self.default_replication_factor = int(1, i16::MAX as i64)? as i16
            }
            "auto.create.topics.enable" => self.auto_create_topics = boolean()?,
            "socket.request.max.bytes" => {
                self.socket_request_max_bytes = int(1024, i32::MAX as i64)? as usize
            }
            "queued.max.request.bytes" => {
                self.queued_max_request_bytes = match int(-1, i64::MAX)? {
                    -1 => 512 << 20,
                    n => n as usize,
                }
            }
            "max.connections" => self.max_connections = int(1, i32::MAX as i64)? as usize,
            "cluster.id" => self.cluster_id = v.to_string(),
            "offsets.topic.num.partitions" => {
                self.groups.offsets_partitions = int(1, 10_000)? as i32
            }
            "group.initial.rebalance.delay.ms" => {
                self.groups.initial_rebalance_delay_ms = int(0, i32::MAX as i64)? as u64
            }
            "group.min.session.timeout.ms" => {
                self.groups.min_session_timeout_ms = int(0, i32::MAX as i64)? as i32
            }
            "group.max.session.timeout.ms" => {
                self.groups.max_session_timeout_ms = int(0, i32::MAX as i64)? as i32
            }
            "offset.metadata.max.bytes" => {
                self.groups.offset_metadata_max_bytes = int(0, i16::MAX as i64)? as usize
            }
            "offsets.retention.minutes" => {
                self.groups.offsets_retention_ms = int(1, i32::MAX as i64)? * 60_000
            }
            "offsets.retention.check.interval.ms" => {
                self.groups.offsets_retention_check_interval_ms = int(1, i64::MAX)? as u64
            }
            "sluice.metrics.listener" => {
                self.metrics_listener = if v.is_empty() {
                    None
                } else {
                    Some(
                        v.parse()
                            .map_err(|_| bad(key, value, "expected HOST:PORT"))?,
                    )
                }
            }
            "log.cleaner.dedupe.buffer.size" => {
                // Kafka's lower bound: a map that holds a useful share of a segment's keys.
                self.log_defaults.cleaner_dedupe_buffer_bytes = int(1 << 20, i64::MAX)? as usize
            }
            "log.retention.hours" => self.set_log(
                "retention.ms",
                &(int(-1, i64::MAX / 3_600_000)? * 3_600_000).to_string(),
                key,
                value,
            )?,
            "log.retention.minutes" => self.set_log(
                "retention.ms",
                &(int(-1, i64::MAX / 60_000)? * 60_000).to_string(),
                key,
                value,
            )?,
            "log.roll.hours" => self.set_log(
                "segment.ms",
                &(int(1, i64::MAX / 3_600_000)? * 3_600_000).to_string(),
                key,
                value,
            )?,
            k if SecuritySettings::claims(k) => self.security.set(k, v)?,
            _ => match LOG_KEYS.iter().find(|(k, _)| *k == key) {
                Some((_, topic_key)) => self.set_log(topic_key, v, key, value)?,
                None => {
                    if !self
                        .authorizer
                        .set(key, v)
                        .map_err(|e| bad(key, value, e))?
                    {
                        return Err(bad(key, value, "unknown configuration key"));
                    }
                }
            },
        }
        Ok(())
    }

    fn set_log(
        &mut self,
        topic_key: &str,
        v: &str,
        key: &str,
        value: &str,
    ) -> Result<(), ConfigError> {
        self.log_defaults
            .set(topic_key, v)
            .map_err(|e| bad(key, value, e.to_string()))
    }

    /// Applies a Java properties or TOML file (TOML when the name ends in `.toml`).
    pub fn apply_file(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("--config", &path.display().to_string(), e.to_string()))?;
        let toml = path.extension().is_some_and(|e| e == "toml");
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with('!')
                || (toml && line.starts_with('['))
            {
                continue;
            }
            let sep = if toml {
                '='
            } else {
                line.find(['=', ':'])
                    .map_or('=', |i| line.as_bytes()[i] as char)
            };
            let (k, v) = line.split_once(sep).ok_or_else(|| {
                bad(
                    &format!("{}:{}", path.display(), n + 1),
                    line,
                    "expected key=value",
                )
            })?;
            let k = k.trim().trim_matches('"');
            let v = v.trim();
            let v = if toml { v.trim_matches('"') } else { v };
            self.set(k, v)?;
        }
        Ok(())
    }

    /// Applies `SLUICE_*` environment variables: `SLUICE_LOG_DIRS` sets `log.dirs`.
    pub fn apply_env(
        &mut self,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (k, v) in vars {
            if let Some(rest) = k.strip_prefix("SLUICE_") {
                let key = rest.to_ascii_lowercase().replace('_', ".");
                self.set(&key, &v)?;
            }
        }
        Ok(())
    }

    /// A new topic's partition count and replication factor, -1 meaning the broker default
    /// (`num.partitions`, `default.replication.factor`).
    pub fn topic_shape(&self, partitions: i32, replication_factor: i16) -> (i32, i16) {
        (
            if partitions == -1 {
                self.num_partitions
            } else {
                partitions
            },
            if replication_factor == -1 {
                self.default_replication_factor
            } else {
                replication_factor
            },
        )
    }

    /// Checks settings that only make sense together (run once every layer is applied).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        self.listeners
            .check(c.controller_listener.as_ref(), c.enabled())?;
        let voter = c.voters.iter().any(|(id, _)| *id == self.node_id);
        if let Some(roles) = &c.roles {
            if !c.enabled() {
                return Err(bad(
                    "process.roles",
                    roles,
                    "a cluster needs controller.quorum.voters",
                ));
            }
            if roles.contains("controller") != voter {
                return Err(bad(
                    "process.roles",
                    roles,
                    format!(
                        "node {} is {}in controller.quorum.voters",
                        self.node_id,
                        if voter { "" } else { "not " }
                    ),
                ));
            }
        }
        if c.enabled() && c.controller_listener.is_none() {
            return Err(bad(
                "listeners",
                &self.listeners.describe(None),
                "a cluster node needs a CONTROLLER://HOST:PORT listener for the metadata quorum",
            ));
        }
        if c.enabled() && !voter && c.advertised_controller.is_none() {
            let wildcard = c
                .controller_listener
                .as_ref()
                .is_some_and(|l| matches!(l.host.as_str(), "" | "0.0.0.0" | "::"));
            if wildcard {
                return Err(bad(
                    "advertised.listeners",
                    "",
                    "a node outside the voters binding CONTROLLER to a wildcard must advertise a CONTROLLER address",
                ));
            }
        }
        Ok(())
    }

    /// Every effective broker-level setting, for DescribeConfigs on the broker resource.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("node.id".into(), self.node_id.to_string());
        m.insert(
            "listeners".into(),
            self.listeners
                .describe(self.cluster.controller_listener.as_ref()),
        );
        m.insert(
            "inter.broker.listener.name".into(),
            self.listeners.inter_broker_listener(),
        );
        m.insert(
            "log.dirs".into(),
            self.log_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        m.insert("num.partitions".into(), self.num_partitions.to_string());
        m.insert(
            "default.replication.factor".into(),
            self.default_replication_factor.to_string(),
        );
        m.insert(
            "auto.create.topics.enable".into(),
            self.auto_create_topics.to_string(),
        );
        m.insert(
            "socket.request.max.bytes".into(),
            self.socket_request_max_bytes.to_string(),
        );
        let c = &self.cluster;
        m.insert(
            "min.insync.replicas".into(),
            c.min_insync_replicas.to_string(),
        );
        m.insert(
            "replica.lag.time.max.ms".into(),
            c.replica_lag_time_max_ms.to_string(),
        );
        m.insert(
            "broker.session.timeout.ms".into(),
            c.session_timeout_ms.to_string(),
        );
        if !c.voters.is_empty() {
            let voters: Vec<String> = c.voters.iter().map(|(i, a)| format!("{i}@{a}")).collect();
            m.insert("controller.quorum.voters".into(), voters.join(","));
        }
        if let Some(rack) = &c.rack {
            m.insert("broker.rack".into(), rack.clone());
        }
        m.insert(
            "log.cleaner.dedupe.buffer.size".into(),
            self.log_defaults.cleaner_dedupe_buffer_bytes.to_string(),
        );
        for (broker_key, topic_key) in LOG_KEYS {
            if let Some(v) = self.log_defaults.get(topic_key) {
                m.insert((*broker_key).into(), v);
            }
        }
        m
    }
}

#[cfg(test)]
mod tests;
