//! The active controller: answers brokers' requests (registration, heartbeats, topic
//! creation, ISR changes, controlled shutdown) by deciding with [`crate::controller`] over
//! the committed image and proposing the records to the quorum, and fences brokers whose
//! lease ran out. Every quorum node runs one; only the leader's acts, the others answer
//! "not the controller" with the leader's address.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use super::{ProposeError, QuorumNode};
use crate::controller::{self, ControllerError};
use crate::lease::Leases;
use crate::record::{Endpoint, MetadataRecord};

/// A broker's request to the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// A broker process starts: it gets a new incarnation epoch and starts fenced.
    RegisterBroker {
        /// `node.id`.
        id: i32,
        /// Advertised listeners.
        endpoints: Vec<Endpoint>,
        /// `broker.rack`.
        rack: Option<String>,
    },
    /// A broker is alive; once it has caught up with the metadata log it is unfenced. With
    /// `shutting_down`, its leaderships are moved away first.
    Heartbeat {
        /// The broker.
        id: i32,
        /// Its incarnation.
        epoch: i64,
        /// Whether it has applied the metadata log up to what the controller had when it
        /// registered.
        caught_up: bool,
        /// Whether it asks for a controlled shutdown.
        shutting_down: bool,
    },
    /// CreateTopics.
    CreateTopic {
        /// Name.
        name: String,
        /// Partitions.
        partitions: i32,
        /// Replication factor.
        replication_factor: i16,
        /// Topic configs.
        configs: BTreeMap<String, String>,
    },
    /// DeleteTopics.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// CreatePartitions: grow the topic to `total` partitions.
    CreatePartitions {
        /// Name.
        name: String,
        /// The new partition count.
        total: i32,
    },
    /// AlterConfigs / IncrementalAlterConfigs: set (`Some`) or remove (`None`) topic configs.
    AlterTopicConfigs {
        /// Name.
        name: String,
        /// The changes.
        changes: Vec<(String, Option<String>)>,
    },
    /// A block of producer ids for InitProducerId.
    AllocateProducerIds {
        /// The broker asking.
        broker: i32,
        /// How many.
        count: i64,
    },
    /// A broker outside the voters follows the metadata log as a Raft learner.
    AddLearner {
        /// `node.id`.
        id: i32,
        /// Its Raft address.
        addr: String,
    },
    /// ElectLeaders (PREFERRED): move leadership to each partition's first replica where it is
    /// live and in sync. `None` means every partition.
    ElectPreferred {
        /// (topic, partition) pairs.
        partitions: Option<Vec<(String, i32)>>,
    },
    /// ElectLeaders (UNCLEAN): give each offline partition a leader, from outside the ISR if
    /// need be. `None` means every partition.
    ElectUnclean {
        /// (topic, partition) pairs.
        partitions: Option<Vec<(String, i32)>>,
    },
    /// AlterPartitionReassignments: (topic, partition, target replicas or `None` to cancel).
    AlterReassignments {
        /// The partitions.
        partitions: Vec<(String, i32, Option<Vec<i32>>)>,
    },
    /// AlterPartition (KIP-497) from a partition leader.
    AlterIsr {
        /// The leader asking.
        leader: i32,
        /// Topic id.
        topic: Uuid,
        /// Partition.
        partition: i32,
        /// The leader epoch it leads at.
        leader_epoch: i32,
        /// The partition epoch it knows.
        partition_epoch: i32,
        /// The ISR it proposes.
        isr: Vec<i32>,
    },
}

/// The active controller's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerResponse {
    /// Registered with this incarnation epoch.
    Registered {
        /// The broker's new epoch.
        epoch: i64,
        /// The metadata log index the controller had applied: a broker that has applied up
        /// to here has caught up.
        metadata_offset: u64,
    },
    /// Heartbeat answered.
    Heartbeat {
        /// Whether the broker is fenced (may not lead or be in ISRs).
        fenced: bool,
        /// With a controlled shutdown asked: whether it leads nothing any more.
        shutdown_ready: bool,
    },
    /// A topic was created.
    Created {
        /// Its id.
        id: Uuid,
    },
    /// The ISR change is committed.
    Altered,
    /// The request's records are committed.
    Done,
    /// Per partition of an AlterReassignments request: Kafka error code (0 for none) and why.
    Reassigned {
        /// In request order.
        results: Vec<(i16, String)>,
    },
    /// A block of producer ids.
    ProducerIds {
        /// The first id.
        first: i64,
        /// How many.
        count: i64,
    },
    /// Refused, with a Kafka error code.
    Error {
        /// Kafka error code.
        code: i16,
        /// Why.
        message: String,
    },
    /// This node is not the active controller; the leader is, if known.
    NotController {
        /// Leader id and Raft address.
        leader: Option<(u64, String)>,
    },
}

/// How long a proposal may wait for the quorum to commit it.
const PROPOSE_WITHIN: Duration = Duration::from_secs(8);

/// A request with the channel its answer goes back on.
pub type Envelope = (ControllerRequest, oneshot::Sender<ControllerResponse>);

/// Timing of the active controller.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `broker.session.timeout.ms`: a broker not heard from for this long is fenced.
    pub session_timeout: Duration,
    /// How often leases are checked.
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

struct State {
    leases: Leases,
    /// The Raft term in which leases were last (re)started: a new leader starts them afresh.
    term: Option<u64>,
    /// Rotates where new topics' first replicas go.
    placement_start: usize,
}

/// The controller logic of one quorum node.
pub struct Service {
    node: Arc<QuorumNode>,
    state: Mutex<State>,
    epoch0: Instant,
}

fn unknown_topic(name: &str) -> ControllerResponse {
    ControllerResponse::Error {
        code: controller::codes::UNKNOWN_TOPIC_OR_PARTITION,
        message: format!("topic {name:?} does not exist"),
    }
}

fn from_controller(e: ControllerError) -> ControllerResponse {
    ControllerResponse::Error {
        code: e.code,
        message: e.message,
    }
}

impl Service {
    /// Runs the controller of `node`: answers what arrives on `inbox` and checks leases, until
    /// the inbox closes (the node shut down).
    pub fn spawn(
        node: Arc<QuorumNode>,
        mut inbox: mpsc::Receiver<Envelope>,
        config: ServiceConfig,
    ) {
        let service = Arc::new(Service {
            node,
            state: Mutex::new(State {
                leases: Leases::new(config.session_timeout.as_millis() as i64),
                term: None,
                placement_start: 0,
            }),
            epoch0: Instant::now(),
        });
        let checker = Arc::clone(&service);
        let check = tokio::spawn(async move {
            let mut tick = tokio::time::interval(config.check_interval);
            let mut last_rebalance = Instant::now();
            loop {
                tick.tick().await;
                checker.check_leases().await;
                if let Some((every, pct)) = config.leader_rebalance {
                    if last_rebalance.elapsed() >= every {
                        last_rebalance = Instant::now();
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

    fn now_ms(&self) -> i64 {
        self.epoch0.elapsed().as_millis() as i64
    }

    /// Whether this node leads; on the first call in a new term, leases restart in full.
    fn leading(&self, state: &mut State) -> bool {
        let metrics = {
            use openraft::async_runtime::watch::WatchReceiver;
            self.node.raft.metrics().borrow_watched().clone()
        };
        let leads = metrics.current_leader == Some(metrics.id);
        if leads && state.term != Some(metrics.current_term) {
            let image = self.node.image.borrow().clone();
            state
                .leases
                .restart_all(image.live_brokers().map(|b| (b.id, b.epoch)), self.now_ms());
            state.term = Some(metrics.current_term);
        }
        leads
    }

    async fn not_controller(&self) -> ControllerResponse {
        ControllerResponse::NotController {
            leader: self.node.leader().await,
        }
    }

    async fn propose(&self, records: Vec<MetadataRecord>) -> Result<(), ControllerResponse> {
        if records.is_empty() {
            return Ok(());
        }
        // A leader cut off from its quorum cannot commit; it answers within a bound
        // rather than holding every other request behind this one.
        let proposed = tokio::time::timeout(PROPOSE_WITHIN, self.node.propose(records)).await;
        let Ok(proposed) = proposed else {
            return Err(ControllerResponse::Error {
                code: controller::codes::REQUEST_TIMED_OUT,
                message: format!("not committed within {PROPOSE_WITHIN:?}"),
            });
        };
        match proposed {
            Ok(()) => Ok(()),
            Err(ProposeError::NotLeader { leader }) => {
                Err(ControllerResponse::NotController { leader })
            }
            Err(ProposeError::Rejected(m)) => Err(ControllerResponse::Error {
                code: -1,
                message: m,
            }),
            Err(ProposeError::Failed(m)) => Err(ControllerResponse::Error {
                code: controller::codes::BROKER_NOT_AVAILABLE,
                message: m,
            }),
        }
    }

    async fn handle(&self, request: ControllerRequest) -> ControllerResponse {
        // One decision at a time, each over the image its predecessor left.
        let mut state = self.state.lock().await;
        if !self.leading(&mut state) {
            return self.not_controller().await;
        }
        let image = self.node.image.borrow().clone();
        let result = match request {
            ControllerRequest::RegisterBroker {
                id,
                endpoints,
                rack,
            } => {
                let epoch = image.brokers.get(&id).map_or(0, |b| b.epoch) + 1;
                self.propose(vec![MetadataRecord::RegisterBroker {
                    id,
                    epoch,
                    endpoints,
                    rack,
                }])
                .await
                .map(|()| {
                    state.leases.heartbeat(id, epoch, self.now_ms());
                    ControllerResponse::Registered {
                        epoch,
                        metadata_offset: self.applied_index(),
                    }
                })
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
                state.leases.heartbeat(id, epoch, self.now_ms());
                let records = if shutting_down && !b.shutting_down {
                    controller::begin_shutdown(&image, id, epoch)
                } else if !shutting_down && b.fenced && caught_up {
                    controller::unfence_broker(&image, id, epoch)
                } else {
                    Ok(Vec::new())
                };
                match records {
                    Err(e) => Err(from_controller(e)),
                    Ok(records) => self.propose(records).await.map(|()| {
                        let after = self.node.image.borrow().clone();
                        let fenced = after.brokers.get(&id).is_none_or(|b| b.fenced);
                        let leads_nothing = after
                            .topics
                            .values()
                            .all(|t| t.partitions.iter().all(|p| p.leader != id));
                        ControllerResponse::Heartbeat {
                            fenced,
                            shutdown_ready: shutting_down && leads_nothing,
                        }
                    }),
                }
            }
            ControllerRequest::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => {
                let id = Uuid::new_v4();
                state.placement_start = state.placement_start.wrapping_add(1);
                match controller::create_topic(
                    &image,
                    id,
                    &name,
                    partitions,
                    replication_factor,
                    configs,
                    state.placement_start,
                ) {
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
            ControllerRequest::CreatePartitions { name, total } => {
                state.placement_start = state.placement_start.wrapping_add(1);
                match controller::create_partitions(&image, &name, total, state.placement_start) {
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
                let node = Arc::clone(&self.node);
                // Adding waits for the learner to catch up; other requests must not wait.
                drop(state);
                return match node.add_learner(id as u64, &addr).await {
                    Ok(()) => ControllerResponse::Done,
                    Err(ProposeError::NotLeader { leader }) => {
                        ControllerResponse::NotController { leader }
                    }
                    Err(e) => ControllerResponse::Error {
                        code: controller::codes::BROKER_NOT_AVAILABLE,
                        message: e.to_string(),
                    },
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
                    let image = self.node.image.borrow().clone();
                    let decided = controller::alter_reassignment(
                        &image,
                        &topic,
                        partition,
                        target.as_deref(),
                    );
                    results.push(match decided {
                        Err(e) => (e.code, e.message),
                        Ok(records) => match self.propose(records).await {
                            Ok(()) => (0, String::new()),
                            Err(ControllerResponse::Error { code, message }) => (code, message),
                            Err(other) => return other,
                        },
                    });
                }
                Ok(ControllerResponse::Reassigned { results })
            }
            ControllerRequest::AlterIsr {
                leader,
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => match controller::alter_isr(
                &image,
                leader,
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                &isr,
            ) {
                Err(e) => Err(from_controller(e)),
                Ok(records) => match self.propose(records).await {
                    Ok(()) => {
                        // A replica joining the ISR may complete a reassignment.
                        let after = self.node.image.borrow().clone();
                        let done = controller::complete_reassignments(&after);
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

    fn applied_index(&self) -> u64 {
        use openraft::async_runtime::watch::WatchReceiver;
        self.node
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map_or(0, |l| l.index)
    }

    /// Moves leadership back to preferred replicas where brokers are out of balance.
    async fn rebalance_leaders(&self, pct: u32) {
        let mut state = self.state.lock().await;
        if !self.leading(&mut state) {
            return;
        }
        let image = self.node.image.borrow().clone();
        let records = controller::rebalance_leaders(&image, pct);
        if !records.is_empty() {
            tracing::info!(changes = records.len(), "rebalancing partition leaders");
            if let Err(e) = self.propose(records).await {
                tracing::warn!(answer = ?e, "leader rebalance did not commit");
            }
        }
    }

    /// Fences brokers whose lease ran out (as the leader only).
    async fn check_leases(&self) {
        let mut state = self.state.lock().await;
        if !self.leading(&mut state) {
            return;
        }
        for (id, epoch) in state.leases.expired(self.now_ms()) {
            // Each fence moves leaderships: decide the next over the image the last one left.
            let image = self.node.image.borrow().clone();
            let current = image.brokers.get(&id);
            if current.is_some_and(|b| b.epoch == epoch && !b.fenced) {
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
            state.leases.remove(id);
        }
    }
}

/// The partition changes among `records` for the `wanted` (topic name, partition) pairs, or
/// all of them when `None`.
fn only_wanted(
    image: &crate::image::MetadataImage,
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
