//! The controller quorum: one openraft group whose log holds [`MetadataRecord`]s and whose
//! state machine is the [`MetadataImage`].
//!
//! openraft is used through this module only (its 0.10 line is an alpha, so an upgrade
//! should touch one place). Terms use the standard leader id: one leader per term.

pub mod log_store;
pub mod network;
pub mod state_machine;

use serde::{Deserialize, Serialize};

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
