//! One broker process: its life in the cluster (registration, heartbeats, controlled
//! shutdown, as broker/src/cluster/lifecycle.rs), the images it reconciles
//! (broker/src/cluster/reconcile.rs `run`, `ReplicaManager::apply_image`), and the dispatch
//! of what arrives to its leader side (leader.rs) and follower side (fetcher.rs).
//!
//! A crash ends the process: replica state, fetchers, pending ISR changes and produces are
//! gone; logs stay, less what was not flushed. A restart is a new incarnation that
//! registers again.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_replication::image::{MetadataImage, NO_LEADER};
use sluice_replication::quorum::service::{ControllerRequest, ControllerResponse};
use uuid::Uuid;

use crate::config::Config;
use crate::fetcher::FetchState;
use crate::history::{Event, History};
use crate::leader::{AlterTask, PendingProduce};
use crate::log::SimLog;
use crate::net::{Envelope, Msg, CONTROLLER};
use crate::partition::Partition;

/// Backoff between registration attempts (lifecycle.rs `backoff`, scaled).
const REGISTER_BACKOFF_MS: i64 = 100;
/// How long a controlled shutdown may take before the broker stops anyway.
const SHUTDOWN_WITHIN_MS: i64 = 1_500;

/// Where the lifecycle task (lifecycle.rs `run`, `controlled_shutdown`) stands.
#[derive(Debug, Clone)]
pub enum Life {
    /// Asking for a new incarnation epoch.
    Registering,
    /// Registered: heartbeating.
    Heartbeating {
        /// Broker epoch.
        epoch: i64,
        /// The metadata offset to reach before saying "caught up".
        caught_up_at: u64,
        /// The fencing the last answer reported (lifecycle.rs logs its changes).
        #[allow(dead_code)]
        fenced: bool,
    },
    /// A controlled shutdown in progress.
    ShuttingDown {
        /// Broker epoch.
        epoch: i64,
        /// It stops by then regardless.
        deadline: i64,
    },
}

/// One broker.
#[derive(Debug)]
pub struct Broker {
    /// `node.id`.
    pub id: i32,
    /// Whether the process runs.
    pub alive: bool,
    /// Process incarnation counter (a restart bumps it).
    pub incarnation: u64,
    incarnation_id: Uuid,
    /// `Cluster::broker_epoch`.
    pub broker_epoch: Option<i64>,
    /// The lifecycle.
    pub life: Life,
    /// The lifecycle's request in flight and when it times out.
    life_waiting: Option<(u64, i64)>,
    life_next_at: i64,
    /// The reconciled image (`Cluster::image`).
    pub image: Arc<MetadataImage>,
    /// Its metadata offset.
    pub applied: u64,
    /// Hosted partitions by index.
    pub parts: BTreeMap<i32, Partition>,
    /// Follower fetch state per partition.
    pub fetch: BTreeMap<i32, FetchState>,
    /// AlterIsr send/retry loops.
    pub alters: Vec<AlterTask>,
    /// acks=all produces waiting for the ISR.
    pub produces: Vec<PendingProduce>,
    next_req: u64,
    /// Next ISR check (reconcile.rs `isr_updates` tick).
    pub next_isr_check: i64,
    /// A slow disk: appends wait this long, until then.
    pub slow_disk: Option<(i64, i64)>,
    /// A slow metadata learner: images reach it this much later, until then.
    pub metadata_lag: Option<(i64, i64)>,
    /// When a stopped broker is to start again.
    pub restart_at: Option<i64>,
}

impl Broker {
    /// A broker that has never run.
    pub fn new(id: i32) -> Broker {
        Broker {
            id,
            alive: false,
            incarnation: 0,
            incarnation_id: Uuid::nil(),
            broker_epoch: None,
            life: Life::Registering,
            life_waiting: None,
            life_next_at: 0,
            image: Arc::new(MetadataImage::default()),
            applied: 0,
            parts: BTreeMap::new(),
            fetch: BTreeMap::new(),
            alters: Vec::new(),
            produces: Vec::new(),
            next_req: 0,
            next_isr_check: 0,
            slow_disk: None,
            metadata_lag: None,
            restart_at: None,
        }
    }

    /// A new request id.
    pub fn req(&mut self) -> u64 {
        self.next_req += 1;
        (self.incarnation << 40) | self.next_req
    }

    /// A message from this broker's current process.
    pub fn envelope(&self, to: i32, req: u64, msg: Msg) -> Envelope {
        Envelope {
            from: self.id,
            from_incarnation: self.incarnation,
            to,
            to_incarnation: None,
            req,
            deferred: false,
            msg,
        }
    }

    /// Starts a process: a new incarnation with the logs on disk and the metadata image it
    /// had replayed (a learner keeps its copy of the metadata log), leading nothing until it
    /// registers (`MetadataImage::as_led_by`).
    pub fn start(&mut self, now: i64, cfg: &Config, h: &mut History, seed_bits: u64) {
        self.alive = true;
        self.incarnation += 1;
        self.incarnation_id =
            Uuid::from_u64_pair(((self.id as u64) << 32) | self.incarnation, seed_bits);
        self.broker_epoch = None;
        self.life = Life::Registering;
        self.life_waiting = None;
        self.life_next_at = now;
        self.fetch.clear();
        self.alters.clear();
        self.produces.clear();
        self.restart_at = None;
        let parts = std::mem::take(&mut self.parts);
        self.parts = parts
            .into_iter()
            .map(|(i, p)| (i, Partition::host(p.log)))
            .collect();
        h.push(
            now,
            Event::Fault(format!(
                "broker {} starts (incarnation {})",
                self.id, self.incarnation
            )),
        );
        let image = Arc::clone(&self.image);
        self.reconcile(now, cfg, image, h);
    }

    /// kill -9: the process is gone; each log keeps its records below `keep_to(partition)`
    /// (at least what was flushed).
    pub fn crash(&mut self, keep_to: impl Fn(i32, &SimLog) -> i64) {
        self.alive = false;
        for (i, p) in &mut self.parts {
            let keep = keep_to(*i, &p.log);
            p.log.crash(keep);
        }
    }

    /// A clean stop: every log flushed.
    pub fn stop(&mut self) {
        self.alive = false;
        for p in self.parts.values_mut() {
            p.log.flush();
        }
    }

    /// `reconcile::run` for one image: applied as led by this incarnation
    /// (`MetadataImage::as_led_by`) to every hosted replica (`ReplicaManager::apply_image`,
    /// `Partition::update`); partitions whose role changed restart their fetch state.
    pub fn reconcile(
        &mut self,
        now: i64,
        cfg: &Config,
        image: Arc<MetadataImage>,
        h: &mut History,
    ) {
        self.image = image;
        let view = self.image.as_led_by(self.id, self.broker_epoch);
        let Some(topic) = view.topic_by_name(crate::controller::TOPIC) else {
            return;
        };
        for (i, p) in topic.partitions.iter().enumerate() {
            let i = i as i32;
            if !p.replicas.contains(&self.id) {
                continue;
            }
            let part = self
                .parts
                .entry(i)
                .or_insert_with(|| Partition::host(SimLog::default()));
            if part.update(self.id, p, cfg.lag_max_ms, now, &cfg.mutations) {
                if !cfg.mutations.fetch_at_first_epoch {
                    self.fetch.remove(&i);
                }
                if p.leader == self.id {
                    h.push(
                        now,
                        Event::Leader {
                            broker: self.id,
                            partition: i,
                            epoch: p.leader_epoch.0,
                            log_end: part.log.log_end(),
                            hw: part.log.high_watermark(),
                        },
                    );
                } else {
                    h.push(
                        now,
                        Event::Follower {
                            broker: self.id,
                            partition: i,
                            leader: p.leader,
                            epoch: p.leader_epoch.0,
                        },
                    );
                }
            }
        }
    }

    /// Begins a controlled shutdown (lifecycle.rs `controlled_shutdown`); false if it is
    /// not registered (it then just stops).
    pub fn begin_shutdown(&mut self, now: i64) -> bool {
        let Some(epoch) = self.broker_epoch else {
            return false;
        };
        self.life = Life::ShuttingDown {
            epoch,
            deadline: now + SHUTDOWN_WITHIN_MS,
        };
        self.life_waiting = None;
        self.life_next_at = now;
        true
    }

    /// Whether a controlled shutdown is in progress.
    pub fn shutting_down(&self) -> bool {
        matches!(self.life, Life::ShuttingDown { .. })
    }

    /// The lifecycle loop's next step. Returns true when a controlled shutdown is over and
    /// the process is to stop.
    pub fn lifecycle_tick(&mut self, now: i64, cfg: &Config, out: &mut Vec<Envelope>) -> bool {
        if let Some((_, deadline)) = self.life_waiting {
            if now < deadline {
                return false;
            }
            // No answer in time: the request failed; back off and try again.
            self.life_waiting = None;
            self.life_next_at = now + REGISTER_BACKOFF_MS;
        }
        if now < self.life_next_at {
            return false;
        }
        let request = match self.life.clone() {
            Life::Registering => ControllerRequest::RegisterBroker {
                id: self.id,
                endpoints: Vec::new(),
                rack: None,
                incarnation: Some(self.incarnation_id),
            },
            Life::Heartbeating {
                epoch,
                caught_up_at,
                ..
            } => ControllerRequest::Heartbeat {
                id: self.id,
                epoch,
                caught_up: self.applied >= caught_up_at
                    && !(cfg.mutations.never_caught_up && self.incarnation > 1),
                shutting_down: false,
            },
            Life::ShuttingDown { epoch, deadline } => {
                if now >= deadline {
                    return true;
                }
                ControllerRequest::Heartbeat {
                    id: self.id,
                    epoch,
                    caught_up: true,
                    shutting_down: true,
                }
            }
        };
        let req = self.req();
        self.life_waiting = Some((req, now + cfg.request_timeout_ms));
        out.push(self.envelope(CONTROLLER, req, Msg::ToController(request)));
        false
    }

    /// The controller's answer to a lifecycle request. Returns true when a controlled
    /// shutdown is done and the process is to stop.
    fn on_lifecycle_answer(
        &mut self,
        now: i64,
        cfg: &Config,
        answer: ControllerResponse,
        h: &mut History,
    ) -> bool {
        self.life_waiting = None;
        match (self.life.clone(), answer) {
            (
                Life::Registering,
                ControllerResponse::Registered {
                    epoch,
                    metadata_offset,
                },
            ) => {
                self.broker_epoch = Some(epoch);
                h.push(
                    now,
                    Event::Registered {
                        broker: self.id,
                        epoch,
                    },
                );
                self.life = Life::Heartbeating {
                    epoch,
                    caught_up_at: metadata_offset,
                    fenced: true,
                };
                self.life_next_at = now;
            }
            (Life::Registering, _) => self.life_next_at = now + REGISTER_BACKOFF_MS,
            (
                Life::Heartbeating {
                    epoch,
                    caught_up_at,
                    ..
                },
                ControllerResponse::Heartbeat { fenced, .. },
            ) => {
                self.life = Life::Heartbeating {
                    epoch,
                    caught_up_at,
                    fenced,
                };
                // Faster until unfenced, as lifecycle.rs does.
                self.life_next_at = now
                    + if fenced {
                        cfg.heartbeat_ms / 2
                    } else {
                        cfg.heartbeat_ms
                    };
            }
            (Life::Heartbeating { .. }, ControllerResponse::Error(e)) if e.registration_lost() => {
                h.push(
                    now,
                    Event::Fault(format!("broker {} lost its registration", self.id)),
                );
                self.life = Life::Registering;
                self.life_next_at = now;
            }
            (Life::Heartbeating { .. }, _) => self.life_next_at = now + cfg.heartbeat_ms,
            (
                Life::ShuttingDown { .. },
                ControllerResponse::Heartbeat {
                    shutdown_ready: true,
                    ..
                },
            ) => return true,
            (Life::ShuttingDown { .. }, _) => self.life_next_at = now + 50,
        }
        false
    }

    /// Handles one delivered message. Returns true when the process is to stop (its
    /// controlled shutdown is done).
    pub fn on_message(
        &mut self,
        now: i64,
        cfg: &Config,
        env: Envelope,
        h: &mut History,
        out: &mut Vec<Envelope>,
    ) -> bool {
        let from = env.from;
        let req = env.req;
        match env.msg {
            Msg::Metadata { offset, image } => {
                if offset > self.applied {
                    self.applied = offset;
                    self.reconcile(now, cfg, image, h);
                }
            }
            Msg::FromController(answer) => {
                if self.life_waiting.is_some_and(|(r, _)| r == req) {
                    return self.on_lifecycle_answer(now, cfg, answer, h);
                }
                self.on_alter_isr_answer(now, cfg, req, answer, h);
            }
            Msg::Fetch {
                partition,
                broker_epoch,
                fetch_offset,
                log_start,
                current_leader_epoch,
            } => {
                let fetch = crate::partition::FollowerFetch {
                    replica: from,
                    broker_epoch,
                    fetch_offset,
                    log_start_offset: log_start,
                    current_leader_epoch,
                };
                let reply = self.on_follower_fetch(now, cfg, partition, &fetch);
                out.push(self.reply_to(&env_route(from, env.from_incarnation, req), reply));
            }
            Msg::EpochQuery {
                partition,
                current_leader_epoch,
                leader_epoch,
            } => {
                let reply = self.on_epoch_query(partition, current_leader_epoch, leader_epoch);
                out.push(self.reply_to(&env_route(from, env.from_incarnation, req), reply));
            }
            Msg::Produce {
                partition,
                payloads,
            } => {
                if let Some(error) = self.on_produce(now, cfg, req, partition, payloads, h) {
                    out.push(self.reply_to(
                        &env_route(from, env.from_incarnation, req),
                        Msg::ProduceReply { error },
                    ));
                }
            }
            Msg::ConsumerFetch {
                partition,
                fetch_offset,
            } => {
                let reply = self.on_consumer_fetch(partition, fetch_offset);
                out.push(self.reply_to(&env_route(from, env.from_incarnation, req), reply));
            }
            Msg::FetchReply { partition, result } => {
                self.on_fetch_reply(now, cfg, req, partition, result, h)
            }
            Msg::EpochReply {
                partition,
                error,
                answer,
            } => self.on_epoch_reply(now, cfg, req, partition, error, answer, h),
            Msg::ToController(_) | Msg::ProduceReply { .. } | Msg::ConsumerReply { .. } => {}
        }
        false
    }

    /// An answer to the request `route` describes.
    pub fn reply_to(&self, route: &(i32, u64, u64), msg: Msg) -> Envelope {
        Envelope {
            from: self.id,
            from_incarnation: self.incarnation,
            to: route.0,
            to_incarnation: Some(route.1),
            req: route.2,
            deferred: false,
            msg,
        }
    }

    /// The periodic work of a running broker: lifecycle, fetchers, ISR checks, AlterIsr
    /// retries, produce completions. Returns true when the process is to stop.
    pub fn tick(
        &mut self,
        now: i64,
        cfg: &Config,
        h: &mut History,
        out: &mut Vec<Envelope>,
    ) -> bool {
        if self.lifecycle_tick(now, cfg, out) {
            return true;
        }
        self.fetcher_tick(now, cfg, out);
        self.isr_tick(now, cfg, h, out);
        self.alter_tick(now, cfg, h, out);
        self.complete_produces(now, cfg, h, out);
        false
    }

    /// Partitions this broker leads (by its replica state, `ReplicaManager::led`).
    pub fn led(&self) -> Vec<i32> {
        self.parts
            .iter()
            .filter(|(_, p)| p.r.leader == self.id && p.r.leader != NO_LEADER)
            .map(|(i, _)| *i)
            .collect()
    }
}

/// (receiver, its incarnation, request id) of an answer.
fn env_route(from: i32, incarnation: u64, req: u64) -> (i32, u64, u64) {
    (from, incarnation, req)
}
