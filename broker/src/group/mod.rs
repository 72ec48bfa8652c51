//! Consumer groups: the classic protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and
//! committed offsets, persisted in the compacted internal topic `__consumer_offsets`.
//!
//! This node coordinates the groups whose `__consumer_offsets` partition it leads. Each such
//! partition is one [`GroupShard`], a state machine in the shape of Kafka's coordinator
//! runtime: it takes a request and returns the records to append and the answer. The
//! [`GroupCoordinator`] runtime appends the records, waits until the ISR has them, and only
//! then answers. Offsets and group metadata (generation, protocol, leader, members with their
//! assignments) are persisted in Kafka's record formats and replayed when this node becomes
//! the partition's leader, so a coordinator move does not force a rejoin where Kafka would
//! not. Timers (session expiry, rebalance deadlines, the initial rebalance delay) run per
//! shard from [`GroupCoordinator::tick`].
//!
//! Layout:
//! - `coordinator.rs`: `GroupCoordinator`, the runtime: shard map, append and await
//!   replication, timers.
//! - `load.rs`: taking on and giving up partitions as leadership moves (`Load`).
//! - `shard.rs`: `GroupShard` (one partition's groups and offsets), `Effect`, replay, list,
//!   describe, delete.
//! - `membership.rs`: JoinGroup, SyncGroup, Heartbeat, LeaveGroup on a shard; static members.
//! - `offsets.rs`: OffsetCommit, OffsetFetch, OffsetDelete on a shard.
//! - `state.rs`: one group's state and members (`Group`, `Member`, `GroupState`).
//! - `error.rs`: `GroupError`, what the coordinator refuses (mapped in `error_map`).
//! - `records.rs`: `__consumer_offsets` record codecs, with every length bounded.

pub mod coordinator;
pub mod error;
pub mod load;
pub mod membership;
pub mod offsets;
pub mod records;
pub mod shard;
pub mod state;

pub use crate::config::GroupConfig;
pub use coordinator::GroupCoordinator;
pub use error::GroupError;
pub use load::Load;
pub use membership::{JoinParams, SyncParams};
pub use offsets::{CommitParams, CommitResults};
pub use shard::{Effect, FetchedOffset, GroupDescription, GroupShard, Now, Pending};

/// The internal offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[cfg(test)]
mod coordinator_tests;
#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod tests;
