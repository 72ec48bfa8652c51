//! The active controller: answers brokers' requests (registration, heartbeats, topic
//! creation, ISR changes, controlled shutdown) by deciding with [`crate::controller`] over
//! the committed image and proposing the records to the quorum, and fences brokers whose
//! lease ran out. Every quorum node runs one; only the leader's acts, the others answer
//! "not the controller" with the leader's address.
//!
//! Ordering rules, each a way an earlier version went wrong:
//! - Every decision first confirms with a majority that this node leads and waits until its
//!   image holds every committed record ([`Quorum::confirm_leadership`]): a deposed
//!   controller answers nothing from its stale image, and a new one decides nothing before it
//!   has replayed its predecessors' records.
//! - Decisions are taken one at a time, each over the image its predecessor's commit left
//!   (the decision lock is held across the commit); a decision's records commit as one batch.
//! - Leases live outside the decision lock: a heartbeat renews its broker's lease the moment
//!   it arrives, even while a decision waits for its commit, and a lease is checked again
//!   right before its broker is fenced.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use super::{ProposeError, QuorumNode};
use crate::controller::{self, ControllerError};
use crate::image::MetadataImage;
use crate::lease::Leases;
use crate::record::MetadataRecord;

pub use super::messages::{ControllerRequest, ControllerResponse};

/// How long a proposal may wait for the quorum to commit it.
const PROPOSE_WITHIN: Duration = Duration::from_secs(8);
/// How long confirming leadership may take: a leader cut off from its quorum answers
/// "not the controller" within this, and the broker asks another node.
const CONFIRM_WITHIN: Duration = Duration::from_secs(2);

/// A request with the channel its answer goes back on.
pub type Envelope = (ControllerRequest, oneshot::Sender<ControllerResponse>);

/// What the controller needs of the metadata quorum. [`QuorumNode`] is the real one; tests
/// drive races deterministically with a scripted one.
pub trait Quorum: Send + Sync + 'static {
    /// The image as applied on this node.
    fn image(&self) -> Arc<MetadataImage>;
    /// Confirms with a majority that this node leads, and waits until the image holds every
    /// record committed before; returns the term.
    fn confirm_leadership(&self) -> impl Future<Output = Result<u64, ProposeError>> + Send;
    /// The current leader's id and address, if known.
    fn leader(&self) -> impl Future<Output = Option<(u64, String)>> + Send;
    /// Commits `records` as one batch and returns once the image showing them is published.
    fn propose(
        &self,
        records: Vec<MetadataRecord>,
    ) -> impl Future<Output = Result<(), ProposeError>> + Send;
    /// Adds a learner and returns once it has caught up.
    fn add_learner(
        &self,
        id: u64,
        addr: &str,
    ) -> impl Future<Output = Result<(), ProposeError>> + Send;
    /// The index of the last record applied here.
    fn applied_index(&self) -> u64;
}

impl Quorum for QuorumNode {
    fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    fn confirm_leadership(&self) -> impl Future<Output = Result<u64, ProposeError>> + Send {
        QuorumNode::confirm_leadership(self)
    }

    fn leader(&self) -> impl Future<Output = Option<(u64, String)>> + Send {
        QuorumNode::leader(self)
    }

    fn propose(
        &self,
        records: Vec<MetadataRecord>,
    ) -> impl Future<Output = Result<(), ProposeError>> + Send {
        QuorumNode::propose(self, records)
    }

    fn add_learner(
        &self,
        id: u64,
        addr: &str,
    ) -> impl Future<Output = Result<(), ProposeError>> + Send {
        QuorumNode::add_learner(self, id, addr)
    }

    fn applied_index(&self) -> u64 {
        QuorumNode::applied_index(self)
    }
}

/// Timing of the active controller.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `broker.session.timeout.ms`: a broker not heard from for this long is fenced.
    pub session_timeout: Duration,
    /// How often leases are checked (and fences, reassignments and unclean elections
    /// finished).
    pub check_interval: Duration,
    /// `auto.leader.rebalance.enable` with `leader.imbalance.check.interval.seconds` and
    /// `leader.imbalance.per.broker.percentage`.
    pub leader_rebalance: Option<(Duration, u32)>,
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig {
            session_timeout: Duration::from_secs(9),
            check_interval: Duration::from_millis(500),
            leader_rebalance: Some((Duration::from_secs(300), 10)),
        }
    }
}

/// What decisions share; held across each decision's commit.
struct Decisions {
    /// The Raft term in which leases were last (re)started: a new leader starts them afresh.
    term: Option<u64>,
    /// Rotates where new topics' first replicas go.
    placement_start: usize,
}

/// The controller logic of one quorum node.
pub struct Service<Q: Quorum = QuorumNode> {
    quorum: Arc<Q>,
    leases: std::sync::Mutex<Leases>,
    decisions: Mutex<Decisions>,
    epoch0: tokio::time::Instant,
}

fn unknown_topic(name: &str) -> ControllerResponse {
    ControllerResponse::Error(ControllerError::UnknownTopicOrPartition(format!(
        "topic {name:?} does not exist"
    )))
}

fn from_controller(e: ControllerError) -> ControllerResponse {
    ControllerResponse::Error(e)
}

impl<Q: Quorum> Service<Q> {
    /// Runs the controller of `quorum`: answers what arrives on `inbox` and checks leases,
    /// until the inbox closes (the node shut down).
    pub fn spawn(quorum: Arc<Q>, mut inbox: mpsc::Receiver<Envelope>, config: ServiceConfig) {
        let service = Arc::new(Service::new(quorum, config.session_timeout));
        let checker = Arc::clone(&service);
        let check = tokio::spawn(async move {
            let mut tick = tokio::time::interval(config.check_interval);
            let mut last_rebalance = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                checker.check().await;
                if let Some((every, pct)) = config.leader_rebalance {
                    if last_rebalance.elapsed() >= every {
                        last_rebalance = tokio::time::Instant::now();
                        checker.rebalance_leaders(pct).await;
                    }
                }
            }
        });
        tokio::spawn(async move {
            while let Some((request, reply)) = inbox.recv().await {
                let service = Arc::clone(&service);
                tokio::spawn(async move {
                    // The requester may have given up; then nobody needs the answer.
                    let _ = reply.send(service.handle(request).await);
                });
            }
            check.abort();
        });
    }

    /// A controller over `quorum` whose brokers' leases last `session_timeout`; drive it with
    /// [`Service::handle`] and [`Service::check`] (what [`Service::spawn`] does).
    pub fn new(quorum: Arc<Q>, session_timeout: Duration) -> Service<Q> {
        Service {
            quorum,
            leases: std::sync::Mutex::new(Leases::new(session_timeout.as_millis() as i64)),
            decisions: Mutex::new(Decisions {
                term: None,
                placement_start: 0,
            }),
            epoch0: tokio::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.epoch0.elapsed().as_millis() as i64
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        // Leases hold plain data; a panic elsewhere leaves them usable.
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Confirms this node leads with an up-to-date image; on the first decision of a term,
    /// leases restart in full (the new controller does not know when brokers last
    /// heartbeated its predecessor).
    async fn lead(&self, d: &mut Decisions) -> Result<Arc<MetadataImage>, ControllerResponse> {
        let term =
            match tokio::time::timeout(CONFIRM_WITHIN, self.quorum.confirm_leadership()).await {
                Ok(Ok(term)) => term,
                Ok(Err(ProposeError::NotLeader { leader })) => {
                    return Err(ControllerResponse::NotController { leader })
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot confirm leadership of the quorum");
                    return Err(ControllerResponse::NotController { leader: None });
                }
                Err(_) => {
                    tracing::debug!("no majority confirmed this node's leadership in time");
                    return Err(ControllerResponse::NotController { leader: None });
                }
            };
        let image = self.quorum.image();
        if d.term != Some(term) {
            self.leases()
                .restart_all(image.live_brokers().map(|b| (b.id, b.epoch)), self.now_ms());
            d.term = Some(term);
        }
        Ok(image)
    }

    async fn propose(&self, records: Vec<MetadataRecord>) -> Result<(), ControllerResponse> {
        if records.is_empty() {
            return Ok(());
        }
        // A leader cut off from its quorum cannot commit; it answers within a bound
        // rather than holding every other request behind this one.
        let proposed = tokio::time::timeout(PROPOSE_WITHIN, self.quorum.propose(records)).await;
        let Ok(proposed) = proposed else {
            return Err(from_controller(ControllerError::NotCommitted(format!(
                "no commit within {PROPOSE_WITHIN:?}"
            ))));
        };
        match proposed {
            Ok(()) => Ok(()),
            Err(ProposeError::NotLeader { leader }) => {
                Err(ControllerResponse::NotController { leader })
            }
            Err(ProposeError::Rejected(m)) => {
                Err(from_controller(ControllerError::RecordsRejected(m)))
            }
            Err(ProposeError::Failed(m)) => Err(from_controller(ControllerError::QuorumFailed(m))),
        }
    }

    /// Answers one request.
    pub async fn handle(&self, request: ControllerRequest) -> ControllerResponse {
        if let ControllerRequest::Heartbeat { id, epoch, .. } = &request {
            // Renewed before waiting for the decision lock: a busy controller must not fence
            // a broker that keeps heartbeating.
            self.leases().heartbeat(*id, *epoch, self.now_ms());
        }
        // One decision at a time, each over the image its predecessor left.
        let mut d = self.decisions.lock().await;
        let image = match self.lead(&mut d).await {
            Ok(image) => image,
            Err(answer) => return answer,
        };
        let result = match request {
            ControllerRequest::RegisterBroker {
                id,
                endpoints,
                rack,
                incarnation,
            } => {
                let session_valid = image.brokers.get(&id).is_some_and(|b| {
                    !b.fenced && !self.leases().expired_for(id, b.epoch, self.now_ms())
                });
                match controller::register_broker(
                    &image,
                    id,
                    incarnation,
                    endpoints,
                    rack,
                    session_valid,
                ) {
                    Err(e) => Err(from_controller(e)),
                    Ok(reg) => self.propose(reg.records).await.map(|()| {
                        self.leases().heartbeat(id, reg.epoch, self.now_ms());
                        ControllerResponse::Registered {
                            epoch: reg.epoch,
                            metadata_offset: self.quorum.applied_index(),
                        }
                    }),
                }
            }
            ControllerRequest::Heartbeat {
                id,
                epoch,
                caught_up,
                shutting_down,
            } => {
                let b = match controller::registered(&image, id, Some(epoch)) {
                    Ok(b) => b,
                    Err(e) => return from_controller(e),
                };
                let records = if shutting_down && !b.shutting_down {
                    controller::begin_shutdown(&image, id, epoch)
                } else if shutting_down {
                    controller::finish_shutdown(&image, id, epoch)
                } else if b.fenced && caught_up {
                    controller::unfence_broker(&image, id, epoch)
                } else {
                    Ok(Vec::new())
                };
                match records {
                    Err(e) => Err(from_controller(e)),
                    Ok(records) => self.propose(records).await.map(|()| {
                        let after = self.quorum.image();
                        let fenced = after.brokers.get(&id).is_none_or(|b| b.fenced);
                        ControllerResponse::Heartbeat {
                            fenced,
                            shutdown_ready: shutting_down && controller::leads_nothing(&after, id),
                        }
                    }),
                }
            }
            ControllerRequest::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
                assignments,
            } => {
                let id = Uuid::new_v4();
                d.placement_start = d.placement_start.wrapping_add(1);
                let shape = controller::TopicShape {
                    partitions,
                    replication_factor,
                    assignments,
                };
                match controller::create_topic(&image, id, &name, shape, configs, d.placement_start)
                {
                    Err(e) => Err(from_controller(e)),
                    Ok(records) => self
                        .propose(records)
                        .await
                        .map(|()| ControllerResponse::Created { id }),
                }
            }
            ControllerRequest::DeleteTopic { name } => match image.topic_by_name(&name) {
                None => Err(unknown_topic(&name)),
                Some(t) => self
                    .propose(vec![MetadataRecord::DeleteTopic { id: t.id }])
                    .await
                    .map(|()| ControllerResponse::Done),
            },
            ControllerRequest::CreatePartitions {
                name,
                total,
                assignments,
            } => {
                d.placement_start = d.placement_start.wrapping_add(1);
                match controller::create_partitions(
                    &image,
                    &name,
                    total,
                    assignments.as_deref(),
                    d.placement_start,
                ) {
                    Err(e) => Err(from_controller(e)),
                    Ok(records) => self
                        .propose(records)
                        .await
                        .map(|()| ControllerResponse::Done),
                }
            }
            ControllerRequest::AlterTopicConfigs { name, changes } => {
                match image.topic_by_name(&name) {
                    None => Err(unknown_topic(&name)),
                    Some(t) => self
                        .propose(vec![MetadataRecord::AlterTopicConfigs {
                            id: t.id,
                            changes,
                        }])
                        .await
                        .map(|()| ControllerResponse::Done),
                }
            }
            ControllerRequest::AllocateProducerIds { broker, count } => {
                let first = image.next_producer_id;
                self.propose(vec![MetadataRecord::AllocateProducerIds {
                    broker,
                    first,
                    count,
                }])
                .await
                .map(|()| ControllerResponse::ProducerIds { first, count })
            }
            ControllerRequest::AddLearner { id, addr } => {
                // Adding waits for the learner to catch up; other requests must not wait.
                drop(d);
                return match self.quorum.add_learner(id as u64, &addr).await {
                    Ok(()) => ControllerResponse::Done,
                    Err(ProposeError::NotLeader { leader }) => {
                        ControllerResponse::NotController { leader }
                    }
                    Err(ProposeError::Rejected(m)) => {
                        from_controller(ControllerError::RecordsRejected(m))
                    }
                    Err(ProposeError::Failed(m)) => {
                        from_controller(ControllerError::QuorumFailed(m))
                    }
                };
            }
            ControllerRequest::ElectPreferred { partitions } => {
                let records = only_wanted(&image, controller::elect_preferred(&image), &partitions);
                self.propose(records)
                    .await
                    .map(|()| ControllerResponse::Done)
            }
            ControllerRequest::ElectUnclean { partitions } => {
                let records = only_wanted(&image, controller::elect_unclean(&image), &partitions);
                self.propose(records)
                    .await
                    .map(|()| ControllerResponse::Done)
            }
            ControllerRequest::AlterReassignments { partitions } => {
                let mut results = Vec::with_capacity(partitions.len());
                for (topic, partition, target) in partitions {
                    let image = self.quorum.image();
                    let decided = controller::alter_reassignment(
                        &image,
                        &topic,
                        partition,
                        target.as_deref(),
                    );
                    results.push(match decided {
                        Err(e) => Err(e),
                        Ok(records) => match self.propose(records).await {
                            Ok(()) => Ok(()),
                            Err(ControllerResponse::Error(e)) => Err(e),
                            Err(other) => return other,
                        },
                    });
                }
                Ok(ControllerResponse::Reassigned { results })
            }
            ControllerRequest::CreateAcls { acls } => {
                let (records, results) = controller::create_acls(&image, &acls, Uuid::new_v4);
                self.propose(records)
                    .await
                    .map(|()| ControllerResponse::AclsCreated { results })
            }
            ControllerRequest::DeleteAcls { filters } => {
                let (records, results) = controller::delete_acls(&image, &filters);
                self.propose(records)
                    .await
                    .map(|()| ControllerResponse::AclsDeleted { results })
            }
            ControllerRequest::AlterIsr {
                leader,
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
                broker_epochs,
            } => match controller::check_isr_epochs(&image, &broker_epochs).and_then(|()| {
                controller::alter_isr(
                    &image,
                    leader,
                    topic,
                    partition,
                    leader_epoch,
                    partition_epoch,
                    &isr,
                )
            }) {
                Err(e) => Err(from_controller(e)),
                Ok(records) => match self.propose(records).await {
                    Ok(()) => {
                        // A replica joining the ISR may complete a reassignment now rather
                        // than at the next check.
                        let done = controller::complete_reassignments(&self.quorum.image());
                        if let Err(e) = self.propose(done).await {
                            tracing::warn!(answer = ?e, "completing a reassignment did not commit");
                        }
                        Ok(ControllerResponse::Altered)
                    }
                    Err(e) => Err(e),
                },
            },
        };
        result.unwrap_or_else(|e| e)
    }

    /// Moves leadership back to preferred replicas where brokers are out of balance.
    async fn rebalance_leaders(&self, pct: u32) {
        let mut d = self.decisions.lock().await;
        let Ok(image) = self.lead(&mut d).await else {
            return;
        };
        let records = controller::rebalance_leaders(&image, pct);
        if !records.is_empty() {
            tracing::info!(changes = records.len(), "rebalancing partition leaders");
            if let Err(e) = self.propose(records).await {
                tracing::warn!(answer = ?e, "leader rebalance did not commit");
            }
        }
    }

    /// As the leader: fences brokers whose lease ran out, then finishes what the image asks
    /// for on its own ([`controller::repair`]).
    pub async fn check(&self) {
        let mut d = self.decisions.lock().await;
        if self.lead(&mut d).await.is_err() {
            return;
        }
        let expired = self.leases().expired(self.now_ms());
        for (id, epoch) in expired {
            // A fence before this one may have waited for its commit: the lease is looked at
            // again now, and the image the last fence left decides the next.
            if !self.leases().expired_for(id, epoch, self.now_ms()) {
                continue;
            }
            let image = self.quorum.image();
            if image
                .brokers
                .get(&id)
                .is_some_and(|b| b.epoch == epoch && !b.fenced)
            {
                tracing::warn!(broker = id, epoch, "broker lease expired; fencing it");
                match controller::fence_broker(&image, id) {
                    Ok(records) => {
                        if let Err(e) = self.propose(records).await {
                            tracing::warn!(broker = id, answer = ?e, "fencing did not commit");
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(broker = id, error = %e, "cannot fence"),
                }
            }
            self.leases().remove_epoch(id, epoch);
        }
        for records in controller::repair(&self.quorum.image()) {
            tracing::info!(
                changes = records.len(),
                "finishing partition changes the image asks for"
            );
            if let Err(e) = self.propose(records).await {
                tracing::warn!(answer = ?e, "a repair did not commit");
                return;
            }
        }
    }
}

/// The partition changes among `records` for the `wanted` (topic name, partition) pairs, or
/// all of them when `None`.
fn only_wanted(
    image: &MetadataImage,
    records: Vec<MetadataRecord>,
    wanted: &Option<Vec<(String, i32)>>,
) -> Vec<MetadataRecord> {
    records
        .into_iter()
        .filter(|r| match (wanted, r) {
            (None, _) => true,
            (Some(wanted), MetadataRecord::ChangePartition(c)) => {
                image.topics.get(&c.topic).is_some_and(|t| {
                    wanted
                        .iter()
                        .any(|(n, p)| *n == t.name && *p == c.partition)
                })
            }
            _ => false,
        })
        .collect()
}
