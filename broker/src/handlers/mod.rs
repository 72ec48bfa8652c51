//! Request handlers, one module per API (or family of APIs), and what they share: the
//! [`Context`] a handler gets and the [`Reply`] it gives. [`registry`] declares which APIs
//! are served and routes each request to its handler.

mod acls;
mod alter_configs;
mod api_versions;
mod cluster_access;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_log_dirs;
mod elect_leaders;
mod fetch;
mod group_access;
mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod produce;
mod reassignments;
pub mod registry;
mod sasl;

use std::sync::Arc;

use futures::future::BoxFuture;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;

use sluice_replication::image::Broker;
use sluice_replication::record::Endpoint;

use crate::replica_manager::ReplicaManager;

pub use api_versions::unsupported_version_response;
pub use registry::{dispatch, versions};

/// What a handler answers.
pub enum Reply {
    /// A response, ready now. Boxed: responses are large and most replies are this variant.
    Now(Box<ResponseKind>),
    /// A response that needs waiting (long-poll fetch); resolved off the connection's task.
    Later(BoxFuture<'static, ResponseKind>),
    /// No response at all (produce with acks=0).
    Nothing,
    /// No response, and the connection closes for this reason (Kafka's answer to a request
    /// it cannot take: an API or version it does not serve).
    Refused(String),
}

impl Reply {
    /// A response ready now.
    pub fn now(r: ResponseKind) -> Reply {
        Reply::Now(Box::new(r))
    }
}

/// Everything a handler may use.
#[derive(Clone)]
pub struct Context {
    /// Partitions and topics.
    pub rm: Arc<ReplicaManager>,
    /// Who is asking, on which listener, from where.
    pub session: Arc<crate::security::Session>,
    /// API version of the request being handled.
    pub version: i16,
    /// The client's id from the request header.
    pub client_id: Option<String>,
    /// The group coordinator.
    pub groups: Arc<crate::group::GroupCoordinator>,
    /// The cluster: metadata image and controller.
    pub cluster: Arc<crate::cluster::Cluster>,
}

/// Every live broker's (id, host, port, rack) on `listener`, as Metadata and
/// DescribeCluster list them.
pub(crate) fn live_brokers(
    image: &sluice_replication::image::MetadataImage,
    listener: &str,
) -> Vec<(i32, String, i32, Option<String>)> {
    image
        .live_brokers()
        .filter_map(|b| {
            let e = endpoint(b, listener)?;
            Some((b.id, e.host.clone(), e.port as i32, b.rack.clone()))
        })
        .collect()
}

/// Broker `b`'s address on `listener` (its client address if it has none there).
pub(crate) fn endpoint<'a>(b: &'a Broker, listener: &str) -> Option<&'a Endpoint> {
    b.endpoints
        .iter()
        .find(|e| e.name == listener)
        .or(b.endpoints.first())
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
