//! `sluice-broker`: a Kafka wire-protocol broker over `sluice-storage`, replicated with
//! `sluice-replication` (every broker is a member of the metadata quorum; a single node is a
//! cluster of one).
//!
//! # Layout
//!
//! - `config`: [`config::BrokerConfig`], Kafka key names, file/env/flag layering.
//! - `server`: [`server::Server`], joining the cluster, listeners, connection limit,
//!   housekeeping, ordered shutdown.
//! - `connection`: frames, decoding, in-order responses, back-pressure.
//! - `tools`: the `sluice` command-line tools (topic, produce, consume, group, cluster, bench).
//! - `wire`: request decoding (pure, fuzzed).
//! - `handlers`: the API registry and one module per API.
//! - `group`: the consumer-group coordinator and its `__consumer_offsets` records.
//! - `replica_manager`: hosted partitions, their replica roles and high watermarks, and the
//!   topic catalogue as committed metadata says (an engine: domain types only).
//! - `cluster`: membership of the metadata quorum, requests to the active controller,
//!   applying committed metadata, follower fetching.
//! - `observability`: Prometheus `/metrics` and `/health`.
//! - `error`, `error_map`: domain errors and the one mapping to Kafka error codes.

pub mod cluster;
pub mod config;
pub mod connection;
pub mod error;
pub mod error_map;
pub mod group;
pub mod handlers;
pub mod observability;
pub mod replica_manager;
pub mod server;
pub mod tools;
pub mod wire;
