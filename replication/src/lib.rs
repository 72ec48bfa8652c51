//! `sluice-replication`: cluster metadata and the rules of replication.
//!
//! - [`image`]: the metadata image (brokers, topics, partitions with replicas, leader,
//!   leader epoch and ISR) and the deterministic application of [`record`]s, the entries of
//!   the controller quorum's log.
//! - [`acl`]: ACL bindings as the log stores them, their validation and filters.
//! - [`controller`]: what the active controller proposes: topic creation with
//!   [`placement`], clean (and, where a topic allows it, unclean) leader election when a
//!   broker is fenced, controlled shutdown, KIP-497 ISR changes, preferred-leader election.
//! - [`follower`]: a follower's truncation to its new leader's log (OffsetForLeaderEpoch).
//! - [`isr`]: a partition leader's tracking of its followers: high watermark, lagging and
//!   caught-up replicas, acks=all answers.
//! - [`pending_isr`]: what the answer to an ISR change sent to the controller means for the
//!   leader's pending change (keep, retry, revert).
//! - [`lease`]: broker leases as the active controller keeps them.
//! - [`quorum`]: the controller quorum on openraft: a journaled log store, the image as its
//!   snapshotting state machine, Raft RPCs over TCP, and the active controller
//!   ([`quorum::service`]) that brokers reach through any quorum node
//!   ([`quorum::client`]).
//!
//! The rules are pure and tested without a network; the quorum is tested with three nodes
//! and a learner over loopback. Not built yet: the broker side (registering and
//! heartbeating, answering Metadata from the image, follower fetching and the high
//! watermark, acks=all over the ISR), so `sluice broker` still runs a single node.

pub mod acl;
pub mod controller;
pub mod follower;
pub mod image;
pub mod isr;
pub mod lease;
pub mod pending_isr;
pub mod placement;
pub mod quorum;
pub mod record;
