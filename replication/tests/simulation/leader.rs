//! The leader side: answering followers' fetches and OffsetForLeaderEpoch (broker/src/
//! handlers/fetch.rs, offset_for_leader_epoch.rs), acks=all produces
//! (`ReplicaManager::append`, `Appended::replicated`), consumer reads, and proposing ISR
//! changes to the controller with the send/retry loop of broker/src/cluster/reconcile.rs
//! (`isr_updates`, `alter_isr`).

use sluice_replication::follower::EpochEndOffset;
use sluice_replication::isr::{self, acks_all, AcksAll};
use sluice_replication::pending_isr::{AfterAnswer, AlterIsrAnswer, PendingIsr};
use sluice_replication::quorum::service::{ControllerRequest, ControllerResponse};
use sluice_storage::{LeaderEpoch, Offset};

use crate::broker::Broker;
use crate::config::Config;
use crate::fetcher::FETCH_MAX_RECORDS;
use crate::history::{Ack, Event, History};
use crate::net::{Envelope, FetchData, Msg, CLIENT, CONTROLLER};
use crate::partition::{codes, FollowerFetch};

/// reconcile.rs `RETRY_FIRST`, scaled.
const RETRY_FIRST_MS: i64 = 50;
/// reconcile.rs `RETRY_MAX`, scaled.
const RETRY_MAX_MS: i64 = 1_000;

/// One `alter_isr` task: an ISR change being sent until an answer settles it.
#[derive(Debug, Clone)]
pub struct AlterTask {
    /// Partition.
    pub partition: i32,
    /// The change.
    pub change: PendingIsr,
    /// The broker epoch each proposed follower fetched with (KIP-903).
    pub broker_epochs: Vec<(i32, i64)>,
    /// The attempt in flight and when it times out.
    pub waiting: Option<(u64, i64)>,
    /// When to send next.
    pub next_send: i64,
    /// Whether it was sent already (then a resend first checks it is still pending).
    pub sent: bool,
    /// The current backoff.
    pub backoff: i64,
}

/// An acks=all produce appended here, waiting for the ISR (`Appended`).
#[derive(Debug, Clone)]
pub struct PendingProduce {
    /// The client's request id and incarnation route.
    pub req: u64,
    /// Partition.
    pub partition: i32,
    /// The leader epoch it was appended at.
    pub leader_epoch: i32,
    /// Offsets.
    pub first: i64,
    /// Last offset.
    pub last: i64,
    /// Payload ids.
    pub payloads: Vec<u64>,
    /// When the producer stops waiting.
    pub deadline: i64,
}

impl Broker {
    /// handlers/fetch.rs for a follower: `on_follower_fetch`, then a read from the fetch
    /// offset up to the log end (OFFSET_OUT_OF_RANGE outside the log).
    pub fn on_follower_fetch(
        &mut self,
        now: i64,
        cfg: &Config,
        i: i32,
        fetch: &FollowerFetch,
    ) -> Msg {
        let registered = self.image.brokers.get(&fetch.replica).map(|b| b.epoch);
        let node = self.id;
        let Some(p) = self.parts.get_mut(&i) else {
            return Msg::FetchReply {
                partition: i,
                result: Err((codes::NOT_LEADER_OR_FOLLOWER, -1)),
            };
        };
        if let Err(code) = p.on_follower_fetch(node, fetch, registered, now, &cfg.mutations) {
            return Msg::FetchReply {
                partition: i,
                result: Err((code, -1)),
            };
        }
        let (start, end) = (p.log.log_start(), p.log.log_end());
        if fetch.fetch_offset > end || fetch.fetch_offset < start {
            return Msg::FetchReply {
                partition: i,
                result: Err((codes::OFFSET_OUT_OF_RANGE, start)),
            };
        }
        let records = p
            .log
            .range(fetch.fetch_offset, fetch.fetch_offset + FETCH_MAX_RECORDS)
            .to_vec();
        Msg::FetchReply {
            partition: i,
            result: Ok(FetchData {
                records,
                high_watermark: p.log.high_watermark(),
                log_start: start,
            }),
        }
    }

    /// handlers/offset_for_leader_epoch.rs.
    pub fn on_epoch_query(&self, i: i32, current_leader_epoch: i32, leader_epoch: i32) -> Msg {
        let none = EpochEndOffset {
            leader_epoch: LeaderEpoch(-1),
            end_offset: Offset(-1),
        };
        let (error, answer) = match self.parts.get(&i) {
            None => (codes::NOT_LEADER_OR_FOLLOWER, none),
            Some(p) => match p.leader_epoch_for(self.id, current_leader_epoch) {
                Err(code) => (code, none),
                Ok(_) => (
                    0,
                    p.log
                        .end_offset_for_epoch(LeaderEpoch(leader_epoch))
                        .map_or(none, |(e, end)| EpochEndOffset {
                            leader_epoch: e,
                            end_offset: end,
                        }),
                ),
            },
        };
        Msg::EpochReply {
            partition: i,
            error,
            answer,
        }
    }

    /// handlers/fetch.rs for a consumer: records from the fetch offset below the high
    /// watermark, from the leader only.
    pub fn on_consumer_fetch(&self, i: i32, fetch_offset: i64) -> Msg {
        let empty = |epoch| Msg::ConsumerReply {
            partition: i,
            leader_epoch: epoch,
            records: Vec::new(),
        };
        let Some(p) = self.parts.get(&i) else {
            return empty(-1);
        };
        let Ok(epoch) = p.leader_epoch_for(self.id, -1) else {
            return empty(-1);
        };
        let hw = p.log.high_watermark();
        Msg::ConsumerReply {
            partition: i,
            leader_epoch: epoch,
            records: p
                .log
                .range(fetch_offset, hw.min(fetch_offset + FETCH_MAX_RECORDS))
                .to_vec(),
        }
    }

    /// `ReplicaManager::append` with acks=all: refused (the error code returned) or
    /// appended and left waiting for the ISR.
    pub fn on_produce(
        &mut self,
        now: i64,
        cfg: &Config,
        req: u64,
        i: i32,
        payloads: Vec<u64>,
        h: &mut History,
    ) -> Option<i16> {
        let node = self.id;
        let Some(p) = self.parts.get_mut(&i) else {
            return Some(codes::NOT_LEADER_OR_FOLLOWER);
        };
        match p.append_as_leader(node, &payloads, cfg.min_insync, &cfg.mutations) {
            Err(code) => Some(code),
            Ok((epoch, last)) => {
                let first = last + 1 - payloads.len() as i64;
                h.push(
                    now,
                    Event::Appended {
                        broker: node,
                        partition: i,
                        epoch,
                        last,
                    },
                );
                self.produces.push(PendingProduce {
                    req,
                    partition: i,
                    leader_epoch: epoch,
                    first,
                    last,
                    payloads,
                    deadline: now + cfg.produce_timeout_ms,
                });
                None
            }
        }
    }

    /// `Appended::replicated` for every waiting produce: answered once the high watermark
    /// passes it per `acks_all`, failed if leadership moved, the ISR is below
    /// `min.insync.replicas`, or it waited too long.
    pub fn complete_produces(
        &mut self,
        now: i64,
        cfg: &Config,
        h: &mut History,
        out: &mut Vec<Envelope>,
    ) {
        let mut still = Vec::new();
        for w in std::mem::take(&mut self.produces) {
            let error = match self.parts.get(&w.partition) {
                None => Some(codes::NOT_LEADER_OR_FOLLOWER),
                Some(p) if p.r.leader != self.id || p.r.leader_epoch != w.leader_epoch => {
                    Some(codes::NOT_LEADER_OR_FOLLOWER)
                }
                Some(p) => match acks_all(
                    Offset(w.last),
                    Offset(p.log.high_watermark()),
                    p.r.isr.len(),
                    cfg.min_insync,
                ) {
                    AcksAll::Done => Some(0),
                    AcksAll::NotEnoughReplicas => Some(codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND),
                    AcksAll::Waiting if now >= w.deadline => Some(codes::REQUEST_TIMED_OUT),
                    AcksAll::Waiting => None,
                },
            };
            match error {
                None => still.push(w),
                Some(error) => {
                    if error == 0 {
                        h.push(
                            now,
                            Event::Acked {
                                broker: self.id,
                                partition: w.partition,
                                epoch: w.leader_epoch,
                                first: w.first,
                                payloads: w.payloads.clone(),
                            },
                        );
                        for (k, payload) in w.payloads.iter().enumerate() {
                            h.acks.push(Ack {
                                partition: w.partition,
                                offset: w.first + k as i64,
                                payload: *payload,
                                at_ms: now,
                            });
                        }
                    }
                    out.push(self.reply_to(&(CLIENT, 0, w.req), Msg::ProduceReply { error }));
                }
            }
        }
        self.produces = still;
    }

    /// reconcile.rs `isr_updates`: every tick, each led partition's ISR change (if any) is
    /// marked pending and an `alter_isr` loop starts sending it. Eligibility is read from
    /// this broker's image: unfenced, not shutting down, fetching as the registered
    /// incarnation (KIP-841, KIP-903).
    pub fn isr_tick(&mut self, now: i64, cfg: &Config, h: &mut History, out: &mut Vec<Envelope>) {
        if now < self.next_isr_check {
            return;
        }
        self.next_isr_check = now + cfg.isr_check_ms;
        let image = std::sync::Arc::clone(&self.image);
        let eligible = |broker: i32, fetched_epoch: Option<i64>| {
            image.brokers.get(&broker).is_some_and(|b| {
                !b.fenced
                    && !b.shutting_down
                    && isr::broker_epoch_eligible(fetched_epoch, Some(b.epoch))
            })
        };
        for i in self.led() {
            let p = self.parts.get_mut(&i).expect("led partition");
            let Some(change) = p.isr_change_to_propose(now, eligible) else {
                continue;
            };
            let broker_epochs =
                p.r.followers
                    .as_ref()
                    .map(|t| {
                        change
                            .isr
                            .iter()
                            .filter_map(|r| t.broker_epoch(*r).map(|e| (*r, e)))
                            .collect()
                    })
                    .unwrap_or_default();
            h.push(
                now,
                Event::IsrProposed {
                    broker: self.id,
                    partition: i,
                    isr: change.isr.clone(),
                },
            );
            self.alters.push(AlterTask {
                partition: i,
                change,
                broker_epochs,
                waiting: None,
                next_send: now,
                sent: false,
                backoff: RETRY_FIRST_MS,
            });
        }
        self.alter_tick(now, cfg, h, out);
    }

    /// reconcile.rs `alter_isr`, the sending side: send when due; an attempt unanswered in
    /// time counts as `AlterIsrAnswer::Unanswered`. Before a resend, a change no longer
    /// pending (the image settled it) ends the loop.
    pub fn alter_tick(&mut self, now: i64, cfg: &Config, h: &mut History, out: &mut Vec<Envelope>) {
        let timed_out: Vec<u64> = self
            .alters
            .iter()
            .filter_map(|t| t.waiting.filter(|(_, d)| now >= *d).map(|(r, _)| r))
            .collect();
        for req in timed_out {
            self.on_alter_isr_answer(
                now,
                cfg,
                req,
                ControllerResponse::NotController { leader: None },
                h,
            );
        }
        let topic = self
            .image
            .topic_by_name(crate::controller::TOPIC)
            .map(|t| t.id);
        let mut k = 0;
        while k < self.alters.len() {
            let t = &self.alters[k];
            if t.waiting.is_some() || now < t.next_send {
                k += 1;
                continue;
            }
            let still_pending = self.parts.get(&t.partition).is_some_and(|p| {
                p.r.pending_isr
                    .as_ref()
                    .is_some_and(|c| c.id == t.change.id)
            });
            let Some(topic) = topic.filter(|_| !t.sent || still_pending) else {
                self.alters.remove(k);
                continue;
            };
            let req = self.req();
            let t = &mut self.alters[k];
            t.sent = true;
            t.waiting = Some((req, now + cfg.request_timeout_ms));
            let request = ControllerRequest::AlterIsr {
                leader: self.id,
                topic,
                partition: t.partition,
                leader_epoch: t.change.leader_epoch,
                partition_epoch: t.change.partition_epoch,
                isr: t.change.isr.clone(),
                broker_epochs: t.broker_epochs.clone(),
            };
            out.push(self.envelope(CONTROLLER, req, Msg::ToController(request)));
            k += 1;
        }
    }

    /// reconcile.rs `alter_isr`, the answering side: what `isr_change_answered` says
    /// decides between retrying with backoff and ending.
    pub fn on_alter_isr_answer(
        &mut self,
        now: i64,
        cfg: &Config,
        req: u64,
        answer: ControllerResponse,
        h: &mut History,
    ) {
        let Some(k) = self
            .alters
            .iter()
            .position(|t| t.waiting.is_some_and(|(r, _)| r == req))
        else {
            return;
        };
        let answer = match answer {
            ControllerResponse::Altered => AlterIsrAnswer::Altered,
            ControllerResponse::Error(e) => AlterIsrAnswer::Refused(e),
            _ => AlterIsrAnswer::Unanswered,
        };
        let (i, id) = (self.alters[k].partition, self.alters[k].change.id);
        let after = match self.parts.get_mut(&i) {
            Some(p) => p.isr_change_answered(id, answer.clone(), &cfg.mutations),
            None => AfterAnswer::Ignore,
        };
        h.push(
            now,
            Event::IsrAnswered {
                broker: self.id,
                partition: i,
                what: format!("{answer:?} -> {after:?}"),
            },
        );
        match after {
            AfterAnswer::Retry => {
                let t = &mut self.alters[k];
                t.waiting = None;
                t.next_send = now + t.backoff;
                t.backoff = (t.backoff * 2).min(RETRY_MAX_MS);
            }
            AfterAnswer::Ignore | AfterAnswer::AwaitImage | AfterAnswer::Revert => {
                self.alters.remove(k);
            }
        }
    }
}
