//! The controller quorum as one logical active controller, mirroring
//! replication/src/quorum/service.rs (`Service::handle`, `Service::check`) over the real
//! decisions of `sluice_replication::controller` and the real `Leases`. Each decision's
//! records commit as one batch, applied with `MetadataImage::apply`; brokers learn committed
//! images only through the network (delayed, lost, cut), so they act on stale ones.
//! A quorum failover is modelled as a pause: no decisions, requests answered
//! NotController, and leases restarted in full by the "new" leader (a new term).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_replication::controller;
use sluice_replication::image::MetadataImage;
use sluice_replication::lease::Leases;
use sluice_replication::quorum::service::{ControllerRequest, ControllerResponse};
use sluice_replication::record::MetadataRecord;
use uuid::Uuid;

use crate::config::Config;
use crate::history::{Event, History};
use crate::net::{Envelope, Msg, CONTROLLER};

/// The topic every run creates.
pub const TOPIC: &str = "sim";

/// The active controller.
#[derive(Debug)]
pub struct Controller {
    /// The committed image.
    pub image: MetadataImage,
    /// The latest committed image, shared with the messages carrying it.
    pub published: Arc<MetadataImage>,
    /// Metadata log offset: one per committed decision.
    pub offset: u64,
    leases: Leases,
    /// Decisions pause until then (a failover).
    pub paused_until: i64,
    term: u64,
    leases_term: Option<u64>,
    placement_start: usize,
    next_check: i64,
    next_push: i64,
    /// The topic once created.
    pub topic: Option<Uuid>,
    /// A decision that did not apply to the image it was decided over.
    pub failed_commit: Option<String>,
}

fn error(e: controller::ControllerError) -> ControllerResponse {
    ControllerResponse::Error(e)
}

impl Controller {
    /// A controller with an empty image.
    pub fn new(cfg: &Config) -> Controller {
        Controller {
            image: MetadataImage::default(),
            published: Arc::new(MetadataImage::default()),
            offset: 0,
            leases: Leases::new(cfg.session_timeout_ms),
            paused_until: 0,
            term: 1,
            leases_term: None,
            placement_start: 0,
            next_check: 0,
            next_push: 0,
            topic: None,
            failed_commit: None,
        }
    }

    /// Whether incarnation `epoch` of broker `id` holds a lease lasting at least until
    /// `until`.
    pub fn lease_holds(&self, id: i32, epoch: i64, until: i64) -> bool {
        !self.leases.expired_for(id, epoch, until)
    }

    /// Whether decisions are paused at `now`.
    pub fn paused(&self, now: i64) -> bool {
        now < self.paused_until
    }

    /// A failover: nothing is decided until `until`, then a new term starts.
    pub fn pause(&mut self, until: i64) {
        self.paused_until = self.paused_until.max(until);
        self.term += 1;
    }

    /// `Service::lead`: on the first decision of a term, every live broker's lease starts
    /// afresh.
    fn lead(&mut self, now: i64) -> bool {
        if self.paused(now) {
            return false;
        }
        if self.leases_term != Some(self.term) {
            self.leases
                .restart_all(self.image.live_brokers().map(|b| (b.id, b.epoch)), now);
            self.leases_term = Some(self.term);
        }
        true
    }

    /// Commits one decision's records as one batch (`apply_all` in tests/common) and sends
    /// the new image towards every broker.
    fn commit(
        &mut self,
        now: i64,
        mut records: Vec<MetadataRecord>,
        h: &mut History,
        out: &mut Vec<Envelope>,
        brokers: i32,
    ) -> bool {
        if records.is_empty() {
            return true;
        }
        let record = if records.len() == 1 {
            records.remove(0)
        } else {
            MetadataRecord::Batch(records)
        };
        let text = record.to_string();
        if let Err(e) = self.image.apply(&record) {
            let what = format!("{text}: {e}");
            h.push(now, Event::CommitFailed(what.clone()));
            self.failed_commit.get_or_insert(what);
            return false;
        }
        self.offset += 1;
        self.published = Arc::new(self.image.clone());
        h.push(
            now,
            Event::Commit {
                offset: self.offset,
                records: text,
            },
        );
        self.push_image(out, brokers);
        true
    }

    fn push_image(&self, out: &mut Vec<Envelope>, brokers: i32) {
        for b in 1..=brokers {
            out.push(Envelope {
                from: CONTROLLER,
                from_incarnation: 0,
                to: b,
                to_incarnation: None,
                req: 0,
                deferred: false,
                msg: Msg::Metadata {
                    offset: self.offset,
                    image: Arc::clone(&self.published),
                },
            });
        }
    }

    /// `Service::handle` for the requests brokers send here.
    pub fn handle(
        &mut self,
        now: i64,
        cfg: &Config,
        request: ControllerRequest,
        h: &mut History,
        out: &mut Vec<Envelope>,
    ) -> ControllerResponse {
        if let ControllerRequest::Heartbeat { id, epoch, .. } = &request {
            self.leases.heartbeat(*id, *epoch, now);
        }
        if !self.lead(now) {
            return ControllerResponse::NotController { leader: None };
        }
        let n = cfg.nodes;
        match request {
            ControllerRequest::RegisterBroker {
                id,
                endpoints,
                rack,
                incarnation,
            } => {
                let session_valid = self
                    .image
                    .brokers
                    .get(&id)
                    .is_some_and(|b| !b.fenced && !self.leases.expired_for(id, b.epoch, now));
                match controller::register_broker(
                    &self.image,
                    id,
                    incarnation,
                    endpoints,
                    rack,
                    session_valid,
                ) {
                    Err(e) => error(e),
                    Ok(reg) => {
                        self.commit(now, reg.records, h, out, n);
                        self.leases.heartbeat(id, reg.epoch, now);
                        ControllerResponse::Registered {
                            epoch: reg.epoch,
                            metadata_offset: self.offset,
                        }
                    }
                }
            }
            ControllerRequest::Heartbeat {
                id,
                epoch,
                caught_up,
                shutting_down,
            } => {
                let b = match controller::registered(&self.image, id, Some(epoch)) {
                    Ok(b) => b.clone(),
                    Err(e) => return error(e),
                };
                let records = if shutting_down && !b.shutting_down {
                    controller::begin_shutdown(&self.image, id, epoch)
                } else if shutting_down {
                    controller::finish_shutdown(&self.image, id, epoch)
                } else if b.fenced && caught_up {
                    controller::unfence_broker(&self.image, id, epoch)
                } else {
                    Ok(Vec::new())
                };
                match records {
                    Err(e) => error(e),
                    Ok(records) => {
                        self.commit(now, records, h, out, n);
                        let fenced = self.image.brokers.get(&id).is_none_or(|b| b.fenced);
                        ControllerResponse::Heartbeat {
                            fenced,
                            shutdown_ready: shutting_down
                                && controller::leads_nothing(&self.image, id),
                        }
                    }
                }
            }
            ControllerRequest::AlterIsr {
                leader,
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
                broker_epochs,
            } => {
                let decided =
                    controller::check_isr_epochs(&self.image, &broker_epochs).and_then(|()| {
                        controller::alter_isr(
                            &self.image,
                            leader,
                            topic,
                            partition,
                            leader_epoch,
                            partition_epoch,
                            &isr,
                        )
                    });
                match decided {
                    Err(e) => error(e),
                    Ok(records) => {
                        self.commit(now, records, h, out, n);
                        let done = controller::complete_reassignments(&self.image);
                        self.commit(now, done, h, out, n);
                        ControllerResponse::Altered
                    }
                }
            }
            other => error(controller::ControllerError::QuorumFailed(format!(
                "not simulated: {other:?}"
            ))),
        }
    }

    /// The periodic work: `Service::check` (expired leases fenced, then `repair`), creating
    /// the topic once every broker is up, and re-sending the latest image (a learner that
    /// missed entries gets them again).
    pub fn tick(&mut self, now: i64, cfg: &Config, h: &mut History, out: &mut Vec<Envelope>) {
        if now >= self.next_push {
            self.next_push = now + 100;
            self.push_image(out, cfg.nodes);
        }
        if now < self.next_check {
            return;
        }
        self.next_check = now + cfg.check_interval_ms;
        if !self.lead(now) {
            return;
        }
        self.check(now, cfg, h, out);
        if self.topic.is_none() && self.image.live_brokers().count() >= cfg.nodes as usize {
            self.create_topic(now, cfg, h, out);
        }
    }

    /// `Service::check`.
    fn check(&mut self, now: i64, cfg: &Config, h: &mut History, out: &mut Vec<Envelope>) {
        for (id, epoch) in self.leases.expired(now) {
            if !self.leases.expired_for(id, epoch, now) {
                continue;
            }
            if self
                .image
                .brokers
                .get(&id)
                .is_some_and(|b| b.epoch == epoch && !b.fenced)
            {
                h.push(
                    now,
                    Event::Fault(format!("lease of broker {id} epoch {epoch} expired")),
                );
                if let Ok(records) = controller::fence_broker(&self.image, id) {
                    if !self.commit(now, records, h, out, cfg.nodes) {
                        return;
                    }
                }
            }
            self.leases.remove_epoch(id, epoch);
        }
        for records in controller::repair(&self.image) {
            if !self.commit(now, records, h, out, cfg.nodes) {
                return;
            }
        }
    }

    /// CreateTopics as `Service::handle` decides it: one topic over every broker.
    fn create_topic(&mut self, now: i64, cfg: &Config, h: &mut History, out: &mut Vec<Envelope>) {
        let id = Uuid::from_u64_pair(0x5105, 0x1ce);
        self.placement_start = self.placement_start.wrapping_add(1);
        let mut configs = BTreeMap::new();
        configs.insert(
            "min.insync.replicas".to_string(),
            cfg.min_insync.to_string(),
        );
        if cfg.unclean {
            configs.insert(
                "unclean.leader.election.enable".to_string(),
                "true".to_string(),
            );
        }
        if let Ok(records) = controller::create_topic(
            &self.image,
            id,
            TOPIC,
            controller::TopicShape::placed(cfg.partitions, cfg.replication_factor),
            configs,
            self.placement_start,
        ) {
            if self.commit(now, records, h, out, cfg.nodes) {
                self.topic = Some(id);
            }
        }
    }

    /// ElectLeaders (PREFERRED) for every partition.
    pub fn elect_preferred(
        &mut self,
        now: i64,
        cfg: &Config,
        h: &mut History,
        out: &mut Vec<Envelope>,
    ) {
        if self.lead(now) {
            let records = controller::elect_preferred(&self.image);
            self.commit(now, records, h, out, cfg.nodes);
        }
    }

    /// ElectLeaders (UNCLEAN) for every partition.
    pub fn elect_unclean(
        &mut self,
        now: i64,
        cfg: &Config,
        h: &mut History,
        out: &mut Vec<Envelope>,
    ) {
        if self.lead(now) {
            let records = controller::elect_unclean(&self.image);
            self.commit(now, records, h, out, cfg.nodes);
        }
    }
}
