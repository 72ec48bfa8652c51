//! `sluice-broker`: a Kafka wire-protocol broker over `sluice-storage`.
//!
//! # Layout
//!
//! - `config`: [`config::BrokerConfig`], Kafka key names, file/env/flag layering.
//! - `server`: [`server::Server`], listener, connection limit, housekeeping, shutdown.
//! - `connection`: frames, decoding, in-order responses, back-pressure.
//! - `tools`: `sluice bench produce`, a native load generator.
//! - `wire`: request decoding (pure, fuzzed).
//! - `handlers`: the API registry and one module per API.
//! - `group`: the consumer-group coordinator and its `__consumer_offsets` records.
//! - `replica_manager`: hosted partitions and the topic catalogue (an engine: domain types only).
//! - `cluster`: the metadata quorum, controller requests, partition replication.
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
