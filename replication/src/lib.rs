//! `sluice-replication`: cluster metadata and the rules of replication.
//!
//! - [`image`]: the metadata image (brokers, topics, partitions with replicas, leader,
//!   leader epoch and ISR) and the deterministic application of [`record`]s, the entries of
//!   the controller quorum's log.
//! - [`controller`]: what the active controller proposes: topic creation with
//!   [`placement`], clean (and, where a topic allows it, unclean) leader election when a
//!   broker is fenced, controlled shutdown, KIP-497 ISR changes, preferred-leader election.
//! - [`isr`]: a partition leader's tracking of its followers: high watermark, lagging and
//!   caught-up replicas, acks=all answers.
//!
//! All of it is pure and tested without a network. Not built yet: the openraft quorum that
//! replicates the records, its network layer, broker registration and heartbeats, and the
//! broker's follower fetching (see the README's "Not yet").

pub mod controller;
pub mod image;
pub mod isr;
pub mod lease;
pub mod placement;
pub mod quorum;
pub mod record;
