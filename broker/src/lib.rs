//! `sluice-broker`: a Kafka wire-protocol broker over `sluice-storage`, replicated with
//! `sluice-replication` (every broker is a member of the metadata quorum; a single node is a
//! cluster of one). The `sluice` binary and its tools are the `sluice-cli` crate.
//!
//! # Layout
//!
//! - `config`: [`config::BrokerConfig`], Kafka key names, file/env/flag layering.
//! - `clock`: the one wall clock (deadlines use tokio's, which tests pause).
//! - `server`: [`server::Server`], joining the cluster, listeners, connection limit,
//!   housekeeping, ordered shutdown.
//! - `connection`: frames, decoding, in-order responses, back-pressure.
//! - `delayed`: requests that wait on partitions (acks=all, Fetch long poll, DeleteRecords).
//! - `wire`: request decoding (pure, fuzzed).
//! - `handlers`: the API registry (`handlers::registry`) and one module per API.
//! - `group`: the consumer-group coordinator and its `__consumer_offsets` records.
//! - `replica_manager`: hosted partitions, their replica roles and high watermarks, and the
//!   topic catalogue as committed metadata says (an engine: domain types only).
//! - `cluster`: membership of the metadata quorum, requests to the active controller,
//!   applying committed metadata, follower fetching (over its own peer connections).
//! - `observability`: Prometheus `/metrics` and `/health`.
//! - `security`: the session a connection authenticates to (principal, listener, address),
//!   and how each listener gets there: its protocol, TLS (rustls, reloading stores, DN to
//!   principal), SASL/PLAIN (a pure exchange plus the pre-authentication socket loop).
//! - `log_dirs`: each log directory's health (failing writes, free space), logged and measured.
//! - `error`, `error_map`: domain errors and the one mapping to Kafka error codes.

pub mod clock;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod delayed;
pub mod error;
pub mod error_map;
pub mod group;
pub mod handlers;
pub mod log_dirs;
pub mod observability;
pub mod replica_manager;
pub mod security;
pub mod server;
pub mod wire;
