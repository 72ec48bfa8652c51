//! `sluice-client`: an async Rust producer, consumer and admin client for the Kafka protocol.
//!
//! Not written yet: the crate exists so the workspace has its final shape. Until it lands,
//! Sluice is exercised with third-party clients (kcat, confluent-kafka, kafka-python, aiokafka).
