//! `sluice-client`: an async Rust producer, consumer and admin client for the Kafka protocol.
//!
//! It talks to any Kafka-compatible broker (Sluice, Apache Kafka, Redpanda, ...) over the
//! wire protocol, negotiating API versions per connection. No librdkafka.
//!
//! ```no_run
//! use sluice_client::{ClientConfig, Producer, ProducerConfig, ProducerRecord};
//! # async fn demo() -> sluice_client::Result<()> {
//! let producer = Producer::new(ProducerConfig {
//!     client: ClientConfig::new("localhost:9092"),
//!     ..ProducerConfig::default()
//! })
//! .await?;
//! let delivery = producer.send(ProducerRecord::new("events", "hello").key("k")).await?;
//! let written = delivery.await?;
//! println!("written at offset {} of partition {}", written.offset, written.partition);
//! # Ok(()) }
//! ```

pub mod acls;
pub mod admin;
pub mod assignor;
pub mod cluster;
pub mod connection;
pub mod consumer;
mod error;
pub mod offsets;
pub mod partitioner;
pub mod producer;
mod protocol;
pub mod records;

pub use admin::Admin;
pub use assignor::{Assignor, TopicPartition};
pub use cluster::{ClientConfig, Cluster};
pub use consumer::{Consumer, ConsumerConfig, Offset, OffsetReset, RebalanceListener};
pub use error::{Error, Result};
pub use producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
pub use records::{Compression, ConsumerRecord, Header, TimestampType};

// Applications run clients inside spawned tasks, so they and their futures must be `Send`.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Admin>();
    send_sync::<Consumer>();
    send_sync::<Producer>();
};
