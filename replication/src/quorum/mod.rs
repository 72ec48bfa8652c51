//! The controller quorum: one openraft group whose log holds [`MetadataRecord`]s and whose
//! state machine is the [`MetadataImage`].
//!
//! openraft is used through this module only (its 0.10 line is an alpha, so an upgrade
//! should touch one place). Terms use the standard leader id: one leader per term.

pub mod client;
pub mod log_store;
mod messages;
pub mod network;
pub mod service;
pub mod state_machine;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::impls::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::image::MetadataImage;
use crate::record::MetadataRecord;

/// What applying a record did: `None` when it applied, else why it changed nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Why the record did not apply.
    pub error: Option<String>,
}

openraft::declare_raft_types!(
    /// openraft's types for the metadata quorum.
    pub TypeConfig:
        D = MetadataRecord,
        R = Applied,
        NodeId = u64,
        Node = openraft::impls::BasicNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<Self::Term, Self::NodeId>,
);

/// A log id of the metadata log.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// An entry of the metadata log.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A vote.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// The Raft handle of the metadata quorum.
pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;

/// Timing of the quorum.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// How often the leader heartbeats followers and learners.
    pub heartbeat_interval: Duration,
    /// A follower that hears nothing for a random time in this range stands for election.
    pub election_timeout: (Duration, Duration),
    /// Entries after which a snapshot is taken and the log before it purged.
    pub snapshot_after: u64,
}

impl Default for QuorumConfig {
    fn default() -> QuorumConfig {
        QuorumConfig {
            heartbeat_interval: Duration::from_millis(250),
            election_timeout: (Duration::from_millis(1000), Duration::from_millis(2000)),
            snapshot_after: 1000,
        }
    }
}

/// Why a proposal was not committed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This node does not lead the quorum; `leader` does, if known.
    #[error("not the active controller (the leader is {leader:?})")]
    NotLeader {
        /// The current leader's id and address.
        leader: Option<(u64, String)>,
    },
    /// Committed, but the record did not fit the image (the image is unchanged).
    #[error("record not applied: {0}")]
    Rejected(String),
    /// The quorum failed (shut down, or storage broke).
    #[error("quorum failure: {0}")]
    Failed(String),
}

/// One member of the metadata quorum (a voter or a learner) with its Raft listener.
pub struct QuorumNode {
    /// The openraft handle.
    pub raft: Raft,
    /// The image after every applied batch of committed records.
    pub image: watch::Receiver<Arc<MetadataImage>>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl QuorumNode {
    /// Starts node `id` with its log and state under `dir`, answering Raft RPCs on `listener`.
    /// A node that has been part of a quorum before resumes from its log and snapshot.
    /// Brokers' controller requests arriving on the listener come out of the returned inbox
    /// (see [`service::Service`]).
    pub async fn start(
        id: u64,
        dir: &Path,
        listener: TcpListener,
        config: &QuorumConfig,
    ) -> std::io::Result<(QuorumNode, tokio::sync::mpsc::Receiver<service::Envelope>)> {
        let raft_config = openraft::Config {
            cluster_name: "sluice-metadata".into(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: config.election_timeout.0.as_millis() as u64,
            election_timeout_max: config.election_timeout.1.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_after),
            max_in_snapshot_log_to_keep: config.snapshot_after,
            ..Default::default()
        }
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let log = log_store::LogStore::open(&dir.join("log"))?;
        let (sm, image) = state_machine::StateMachine::open(&dir.join("state"))?;
        let raft = Raft::new(id, Arc::new(raft_config), network::NetworkFactory, log, sm)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let (inbox_tx, inbox) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(network::serve(raft.clone(), listener, stopped, inbox_tx));
        Ok((
            QuorumNode {
                raft,
                image,
                addr,
                stop,
            },
            inbox,
        ))
    }

    /// The address this node answers Raft RPCs on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forms a new quorum of `voters` (id to Raft address) the first time; does nothing on a
    /// node that is already part of one.
    pub async fn bootstrap(&self, voters: &BTreeMap<u64, String>) -> Result<(), ProposeError> {
        if self.raft.is_initialized().await.map_err(failed)? {
            return Ok(());
        }
        let members: BTreeMap<u64, BasicNode> = voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another voter bootstrapped first: the same quorum, nothing to do.
            Err(openraft::error::RaftError::APIError(
                openraft::error::InitializeError::NotAllowed(_),
            )) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }

    /// The current leader's id and Raft address, if known.
    pub async fn leader(&self) -> Option<(u64, String)> {
        let id = self.raft.current_leader().await?;
        use openraft::async_runtime::watch::WatchReceiver;
        let metrics = self.raft.metrics().borrow_watched().clone();
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Some((id, addr))
    }

    /// Commits `records` as one entry (as the leader) and returns once it is applied here and
    /// the image showing it is published. Several records go as one
    /// [`MetadataRecord::Batch`]: applied whole or not at all.
    pub async fn propose(&self, mut records: Vec<MetadataRecord>) -> Result<(), ProposeError> {
        let entry = match records.len() {
            0 => return Ok(()),
            1 => records.remove(0),
            _ => MetadataRecord::Batch(records),
        };
        match self.raft.client_write(entry).await {
            Ok(resp) => match resp.data.error {
                Some(e) => Err(ProposeError::Rejected(e)),
                None => Ok(()),
            },
            Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(f),
            )) => Err(ProposeError::NotLeader {
                leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
            }),
            Err(e) => Err(failed(e)),
        }
    }

    /// Confirms with a majority that this node leads now (Raft's ReadIndex) and waits until
    /// its image holds every record committed before, its own term's first entry included,
    /// so nothing is decided over a state a newer controller has moved past, nor before the
    /// previous terms are replayed. Returns the term.
    pub async fn confirm_leadership(&self) -> Result<u64, ProposeError> {
        match self
            .raft
            .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
            .await
        {
            Ok(read) => Ok(read.committed_leader_id().term),
            Err(openraft::error::RaftError::APIError(
                openraft::error::LinearizableReadError::ForwardToLeader(f),
            )) => Err(ProposeError::NotLeader {
                leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
            }),
            Err(e) => Err(failed(e)),
        }
    }

    /// Adds node `id` at `addr` as a learner (a broker that follows the metadata log without
    /// voting); returns once it has caught up.
    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<(), ProposeError> {
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::error::RaftError::APIError(
                    openraft::error::ClientWriteError::ForwardToLeader(f),
                ) => ProposeError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
                },
                e => failed(e),
            })
    }

    /// The current leader's id, as last seen here (no waiting).
    pub fn leader_id(&self) -> Option<u64> {
        use openraft::async_runtime::watch::WatchReceiver;
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The index of the last record applied to the image here.
    pub fn applied_index(&self) -> u64 {
        use openraft::async_runtime::watch::WatchReceiver;
        self.raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map_or(0, |l| l.index)
    }

    /// The ids of every member of the quorum (voters and learners).
    pub fn members(&self) -> Vec<u64> {
        use openraft::async_runtime::watch::WatchReceiver;
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect()
    }

    /// As the leader, hands leadership to the most caught-up voter and waits (up to
    /// `within`) until another node leads, so the quorum need not wait out an election
    /// timeout after this node stops (Kafka's leader resigns with EndQuorumEpoch).
    pub async fn resign(&self, within: Duration) {
        use openraft::async_runtime::watch::WatchReceiver;
        let metrics = self.raft.metrics().borrow_watched().clone();
        if metrics.current_leader != Some(metrics.id) {
            return;
        }
        let voters = voters(&self.raft);
        let successor = metrics
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != metrics.id && voters.contains(id))
            .max_by_key(|(_, matched)| matched.map(|l| l.index))
            .map(|(id, _)| *id);
        let Some(to) = successor else { return };
        if let Err(e) = self.raft.trigger().transfer_leader(to).await {
            tracing::warn!(error = %e, "cannot hand over leadership of the quorum");
            return;
        }
        let mut metrics = self.raft.metrics();
        let id = metrics.borrow_watched().id;
        let moved = async {
            while metrics.borrow_watched().current_leader == Some(id) {
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(within, moved).await.is_err() {
            tracing::warn!(to, "leadership of the quorum did not move in time");
        } else {
            tracing::info!(to, "handed leadership of the quorum over");
        }
    }

    /// Stops the node: Raft tasks and the RPC listener.
    pub async fn shutdown(&self) {
        // Fails only if the listener is already gone, which is what was asked.
        let _ = self.stop.send(true);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

fn failed(e: impl std::fmt::Display) -> ProposeError {
    ProposeError::Failed(e.to_string())
}

/// The voter ids of the quorum as this node knows them.
pub fn voters(raft: &Raft) -> BTreeSet<u64> {
    raft.voter_ids().collect()
}
