//! This node's membership of the cluster: the metadata quorum (a voter or a learner), its
//! requests to the active controller, and the metadata image every handler answers from.
//!
//! A single node is a cluster of one: it is the only voter, so the same code path serves
//! `sluice broker` with no arguments and a three-node deployment.

pub mod admin;
pub mod fetcher;
pub mod lifecycle;
pub mod peer;
pub mod reconcile;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_replication::image::MetadataImage;
use sluice_replication::quorum::client::ControllerClient;
use sluice_replication::quorum::service::{
    ControllerRequest, ControllerResponse, Service, ServiceConfig,
};
use sluice_replication::quorum::{QuorumConfig, QuorumNode};
use sluice_storage::ProducerId;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::error::BrokerError;

/// Directory under the first log dir holding the metadata quorum's log and snapshot.
pub const METADATA_DIR: &str = "__cluster_metadata";
/// How long a metadata request may take, elections included.
const REQUEST_WITHIN: Duration = Duration::from_secs(15);
/// Producer ids are taken from the controller in blocks.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// This node in the cluster.
pub struct Cluster {
    /// `node.id`.
    pub node_id: i32,
    /// The metadata quorum member.
    pub quorum: Arc<QuorumNode>,
    /// Whether this node votes.
    pub voter: bool,
    /// This node's Raft address as others reach it.
    pub raft_addr: String,
    /// Raft addresses of the voters: where the active controller may be.
    voters: Vec<String>,
    /// The address that last answered as the active controller.
    controller_hint: parking_lot::Mutex<Option<String>>,
    broker_epoch: AtomicI64,
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    reconciled_image: watch::Sender<Arc<MetadataImage>>,
}

impl Cluster {
    /// Joins (or forms) the metadata quorum. Voters start the controller service and
    /// bootstrap the quorum on first start.
    pub async fn start(config: &BrokerConfig) -> Result<Arc<Cluster>, BrokerError> {
        let node_id = config.node_id;
        let settings = &config.cluster;
        let (bind, voters) = if settings.enabled() {
            let l = settings
                .controller_listener
                .as_ref()
                .ok_or_else(|| BrokerError::InvalidConfig("no CONTROLLER listener".into()))?;
            (
                format!("{}:{}", bind_host(&l.host), l.port),
                settings.voters.clone(),
            )
        } else {
            // A cluster of one: nobody else dials the Raft port, so any free loopback port does.
            (String::from("127.0.0.1:0"), Vec::new())
        };
        let listener = TcpListener::bind(&bind).await.map_err(|e| {
            BrokerError::InvalidConfig(format!(
                "cannot listen for the metadata quorum on {bind}: {e}"
            ))
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| BrokerError::InvalidConfig(e.to_string()))?;
        let voters: BTreeMap<u64, String> = if voters.is_empty() {
            BTreeMap::from([(node_id as u64, local.to_string())])
        } else {
            voters
                .iter()
                .map(|(id, a)| (*id as u64, a.clone()))
                .collect()
        };
        let voter = voters.contains_key(&(node_id as u64));
        let raft_addr = match (
            voters.get(&(node_id as u64)),
            &settings.advertised_controller,
        ) {
            (Some(a), _) => a.clone(),
            (None, Some(l)) => format!("{}:{}", l.host, l.port),
            (None, None) => local.to_string(),
        };
        let dir = config.log_dirs[0].join(METADATA_DIR);
        let quorum_config = QuorumConfig::default();
        let (node, inbox) = QuorumNode::start(node_id as u64, &dir, listener, &quorum_config)
            .await
            .map_err(|e| BrokerError::Metadata(format!("{}: {e}", dir.display())))?;
        let node = Arc::new(node);
        Service::spawn(
            Arc::clone(&node),
            inbox,
            ServiceConfig {
                session_timeout: Duration::from_millis(settings.session_timeout_ms),
                check_interval: Duration::from_millis(
                    (settings.session_timeout_ms / 10).clamp(10, 500),
                ),
                leader_rebalance: settings.leader_rebalance.then_some((
                    Duration::from_secs(settings.leader_imbalance_check_interval_s),
                    settings.leader_imbalance_pct,
                )),
            },
        );
        if voter {
            node.bootstrap(&voters)
                .await
                .map_err(|e| BrokerError::Metadata(format!("forming the metadata quorum: {e}")))?;
        }
        let (reconciled_image, _) = watch::channel(Arc::new(MetadataImage::default()));
        Ok(Arc::new(Cluster {
            node_id,
            quorum: node,
            voter,
            raft_addr,
            voters: voters.values().cloned().collect(),
            controller_hint: parking_lot::Mutex::new(None),
            broker_epoch: AtomicI64::new(-1),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            reconciled_image,
        }))
    }

    /// The image the replica manager last reconciled: what this broker serves.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.reconciled_image.borrow().clone()
    }

    pub(crate) fn publish_reconciled(&self, image: Arc<MetadataImage>) {
        self.reconciled_image.send_replace(image);
    }

    /// Waits until the reconciled image satisfies `done`, up to `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        mut done: impl FnMut(&MetadataImage) -> bool,
    ) -> bool {
        let mut rx = self.reconciled_image.subscribe();
        let wait = async {
            loop {
                if done(&rx.borrow_and_update()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(within, wait).await.is_ok() && done(&self.image())
    }

    /// Whether this broker's state reflects the metadata log up to `index`: the quorum
    /// member applied it and the replica manager took the resulting image.
    pub fn caught_up_to(&self, index: u64) -> bool {
        let latest = self.quorum.image.borrow().clone();
        self.applied_index() >= index && Arc::ptr_eq(&latest, &self.image())
    }

    /// Whether this broker is registered (in its current incarnation) and unfenced.
    pub fn serving(&self, image: &MetadataImage) -> bool {
        self.broker_epoch().is_some_and(|epoch| {
            image
                .brokers
                .get(&self.node_id)
                .is_some_and(|b| b.epoch == epoch && !b.fenced)
        })
    }

    /// This broker's registration epoch, once registered.
    pub fn broker_epoch(&self) -> Option<i64> {
        Some(self.broker_epoch.load(Ordering::Acquire)).filter(|e| *e >= 0)
    }

    pub(crate) fn set_broker_epoch(&self, epoch: i64) {
        self.broker_epoch.store(epoch, Ordering::Release);
    }

    /// The quorum leader's node id, the cluster's active controller.
    pub fn controller_id(&self) -> Option<i32> {
        self.quorum.leader_id().map(|l| l as i32)
    }

    /// The index of the last metadata record this node applied.
    pub fn applied_index(&self) -> u64 {
        self.quorum.applied_index()
    }

    /// Sends `req` to the active controller. Refusals come back as `Ok(Error { .. })`.
    ///
    /// Each request has its own connection: one waiting out an election never holds up
    /// another (a heartbeat behind a slow topic creation could miss its lease).
    pub async fn request(&self, req: ControllerRequest) -> Result<ControllerResponse, BrokerError> {
        let hint = self.controller_hint.lock().clone();
        let mut client =
            ControllerClient::new(self.voters.clone(), Duration::from_secs(5)).with_leader(hint);
        let answer = client.send(&req, REQUEST_WITHIN).await;
        if let Some(leader) = client.leader() {
            *self.controller_hint.lock() = Some(leader.to_string());
        }
        answer.map_err(|e| BrokerError::ControllerUnavailable(e.to_string()))
    }

    /// Sends `req` and turns a refusal into the matching error.
    pub async fn decide(&self, req: ControllerRequest) -> Result<ControllerResponse, BrokerError> {
        match self.request(req).await? {
            ControllerResponse::Error(e) => Err(BrokerError::Controller(e)),
            ControllerResponse::NotController { .. } => Err(BrokerError::ControllerUnavailable(
                "no active controller".into(),
            )),
            other => Ok(other),
        }
    }

    /// A producer id no other broker hands out, from blocks the controller allocates.
    pub async fn next_producer_id(&self) -> Result<ProducerId, BrokerError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            match self
                .decide(ControllerRequest::AllocateProducerIds {
                    broker: self.node_id,
                    count: PRODUCER_ID_BLOCK,
                })
                .await?
            {
                ControllerResponse::ProducerIds { first, count } => {
                    *ids = (first.0, first.0 + count)
                }
                other => {
                    return Err(BrokerError::Metadata(format!(
                        "unexpected controller answer {other:?}"
                    )))
                }
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(ProducerId(id))
    }

    /// Hands leadership of the metadata quorum to another voter if this node has it, so the
    /// cluster has a controller again without waiting out an election timeout.
    pub async fn resign(&self, within: std::time::Duration) {
        self.quorum.resign(within).await;
    }

    /// Stops the quorum member.
    pub async fn shutdown(&self) {
        self.quorum.shutdown().await;
    }
}

/// Kafka's empty host means every interface.
fn bind_host(host: &str) -> &str {
    if host.is_empty() {
        "0.0.0.0"
    } else {
        host
    }
}
