//! One run: the cluster (controller, brokers, client) on the simulated network and clock,
//! stepped 10 ms at a time. Each step: faults from the seeded scheduler, due messages
//! delivered in (time, send order), every node's periodic work, random flushes, then the
//! checker. After the fault phase every fault heals and the cluster settles.

use std::collections::BTreeMap;

use crate::broker::Broker;
use crate::client::Client;
use crate::config::Config;
use crate::controller::{Controller, TOPIC};
use crate::history::{Event, History};
use crate::invariants::{Checker, Violation};
use crate::net::{Envelope, Msg, Net, CLIENT, CONTROLLER};
use crate::rng::Rng;

/// Simulated milliseconds per step.
pub const STEP_MS: i64 = 10;

/// A timed action of the scheduler.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Restore the link.
    Heal(i32, i32),
}

/// What a run ended with.
#[derive(Debug)]
pub struct Outcome {
    /// The first invariant violated, if any.
    pub violation: Option<Violation>,
    /// Hash of the whole event trace.
    pub trace_hash: u64,
    /// Events recorded.
    pub events: usize,
    /// Records acknowledged.
    pub acks: usize,
    /// The last events, for a report.
    pub tail: String,
}

/// The simulated cluster.
#[derive(Debug)]
pub struct World {
    /// The run's configuration.
    pub cfg: Config,
    /// Simulated time, ms.
    pub now: i64,
    /// The scheduler's randomness.
    pub rng: Rng,
    /// The network.
    pub net: Net,
    /// The active controller.
    pub controller: Controller,
    /// Brokers 1..=n at index id-1.
    pub brokers: Vec<Broker>,
    /// The client.
    pub client: Client,
    /// What happened.
    pub history: History,
    /// Brokers that lost unflushed records in a crash and have not rejoined every ISR as
    /// their new incarnation since, with the broker epoch they crashed at.
    pub dirty: BTreeMap<i32, i64>,
    /// When each (partition, leader epoch) was first committed.
    pub epoch_started: BTreeMap<(i32, i32), i64>,
    /// When each broker last crashed or stopped.
    pub last_down: BTreeMap<i32, i64>,
    /// Whether faults have healed.
    pub healed: bool,
    actions: BTreeMap<(i64, u64), Action>,
    action_seq: u64,
    /// Records consumers read, for the checker: (partition, records).
    pub consumed: Vec<(i32, Vec<crate::log::Record>)>,
}

impl World {
    /// A cluster for `seed` with every broker starting.
    pub fn new(seed: u64, cfg: Config, echo: bool) -> World {
        let mut rng = Rng::new(seed);
        let net = Net::new(rng.fork(), cfg.faults.loss, cfg.faults.max_delay_ms);
        let mut w = World {
            controller: Controller::new(&cfg),
            brokers: (1..=cfg.nodes).map(Broker::new).collect(),
            client: Client::new(),
            history: History::new(echo),
            cfg,
            now: 0,
            rng,
            net,
            dirty: BTreeMap::new(),
            epoch_started: BTreeMap::new(),
            last_down: BTreeMap::new(),
            healed: false,
            actions: BTreeMap::new(),
            action_seq: 0,
            consumed: Vec::new(),
        };
        for b in 0..w.brokers.len() {
            let bits = w.rng.next_u64();
            w.brokers[b].start(0, &w.cfg, &mut w.history, bits);
        }
        w
    }

    /// Broker `id`.
    pub fn broker(&self, id: i32) -> &Broker {
        &self.brokers[(id - 1) as usize]
    }

    fn broker_mut(&mut self, id: i32) -> &mut Broker {
        &mut self.brokers[(id - 1) as usize]
    }

    /// Schedules `action` at `at`.
    pub fn schedule(&mut self, at: i64, action: Action) {
        self.action_seq += 1;
        self.actions.insert((at, self.action_seq), action);
    }

    /// Runs to the end; the first violation ends it early.
    pub fn run(mut self) -> Outcome {
        let mut checker = Checker::default();
        let end = self.cfg.fault_phase_ms + self.cfg.settle_ms;
        let mut violation = None;
        while self.now <= end {
            self.step();
            if let Err(v) = checker.on_step(&mut self) {
                violation = Some(v);
                break;
            }
            self.now += STEP_MS;
        }
        if violation.is_none() {
            violation = checker.at_end(&self).err();
        }
        if let Some(v) = &violation {
            self.history.push(
                self.now,
                Event::Violation(format!("{}: {}", v.invariant, v.detail)),
            );
        }
        Outcome {
            violation,
            trace_hash: self.history.trace_hash(),
            events: self.history.len(),
            acks: self.history.acks.len(),
            tail: self.history.tail(60),
        }
    }

    fn step(&mut self) {
        let now = self.now;
        if now < self.cfg.fault_phase_ms {
            crate::scheduler::inject(self);
        } else if !self.healed {
            self.heal_all();
        }
        while let Some((&key, _)) = self.actions.first_key_value() {
            if key.0 > now {
                break;
            }
            if let Some(Action::Heal(a, b)) = self.actions.remove(&key) {
                self.net.heal(a, b);
                self.history
                    .push(now, Event::Fault(format!("link {a}-{b} restored")));
            }
        }
        for b in 1..=self.cfg.nodes {
            let br = self.broker(b);
            if !br.alive && br.restart_at.is_some_and(|t| t <= now) {
                let bits = self.rng.next_u64();
                let (cfg, h) = (&self.cfg, &mut self.history);
                self.brokers[(b - 1) as usize].start(now, cfg, h, bits);
            }
        }
        while let Some(env) = self.net.next_due(now) {
            self.deliver(env);
        }
        let mut out = Vec::new();
        self.controller
            .tick(now, &self.cfg, &mut self.history, &mut out);
        for b in 1..=self.cfg.nodes {
            let (cfg, h) = (&self.cfg, &mut self.history);
            let br = &mut self.brokers[(b - 1) as usize];
            if br.alive && br.tick(now, cfg, h, &mut out) {
                self.stop_broker(b);
            }
        }
        self.client
            .tick(now, &self.brokers, &mut self.rng, &mut out);
        self.send_all(out);
        for b in 0..self.brokers.len() {
            if !self.brokers[b].alive {
                continue;
            }
            for p in self.brokers[b].parts.values_mut() {
                if self.rng.chance(self.cfg.faults.flush) {
                    p.log.flush();
                }
            }
        }
        if let Some(t) = self.controller.image.topic_by_name(TOPIC) {
            for (i, p) in t.partitions.iter().enumerate() {
                self.epoch_started
                    .entry((i as i32, p.leader_epoch.0))
                    .or_insert(now);
            }
        }
        self.clear_dirty();
        self.net.lossless = !self.dirty.is_empty();
    }

    /// Sends what nodes produced, metadata late to slow learners.
    pub fn send_all(&mut self, out: Vec<Envelope>) {
        for env in out {
            let lag = match env.msg {
                Msg::Metadata { .. } => self
                    .broker(env.to)
                    .metadata_lag
                    .filter(|(until, _)| self.now < *until)
                    .map_or(0, |(_, lag)| lag),
                _ => 0,
            };
            self.net.send_late(self.now, env, lag);
        }
    }

    fn deliver(&mut self, mut env: Envelope) {
        let now = self.now;
        let mut out = Vec::new();
        match env.to {
            CONTROLLER => {
                if let Msg::ToController(request) = env.msg {
                    let answer = self.controller.handle(
                        now,
                        &self.cfg,
                        request,
                        &mut self.history,
                        &mut out,
                    );
                    out.push(Envelope {
                        from: CONTROLLER,
                        from_incarnation: 0,
                        to: env.from,
                        to_incarnation: Some(env.from_incarnation),
                        req: env.req,
                        deferred: false,
                        msg: Msg::FromController(answer),
                    });
                }
            }
            CLIENT => {
                if let Some(read) = self.client.on_reply(env.msg) {
                    self.consumed.push(read);
                }
            }
            b => {
                let br = &mut self.brokers[(b - 1) as usize];
                if !br.alive || env.to_incarnation.is_some_and(|i| i != br.incarnation) {
                    return;
                }
                if let Some((until, delay)) = br.slow_disk {
                    let appends = match &env.msg {
                        Msg::Produce { .. } => true,
                        Msg::FetchReply {
                            partition,
                            result: Ok(data),
                        } if !data.records.is_empty() => {
                            // The fetcher waits for its append, however long the disk takes.
                            if let Some(st) = br.fetch.get_mut(partition) {
                                if let Some(w) = st.waiting.as_mut() {
                                    w.1 = w.1.max(now + delay + STEP_MS);
                                }
                            }
                            true
                        }
                        _ => false,
                    };
                    if appends && now < until && !env.deferred {
                        env.deferred = true;
                        self.net.enqueue(now + delay, env);
                        return;
                    }
                }
                let (cfg, h) = (&self.cfg, &mut self.history);
                if br.on_message(now, cfg, env, h, &mut out) {
                    self.stop_broker(b);
                }
            }
        }
        self.send_all(out);
    }

    /// A controlled shutdown finished (or gave up): the process stops cleanly and starts
    /// again later.
    fn stop_broker(&mut self, b: i32) {
        let now = self.now;
        let downtime = if self.healed {
            20
        } else {
            self.rng.range(100, 1500)
        };
        let br = self.broker_mut(b);
        br.stop();
        br.restart_at = Some(now + downtime);
        self.last_down.insert(b, now);
        self.history.push(
            now,
            Event::Fault(format!("broker {b} stopped after controlled shutdown")),
        );
    }

    /// Kills broker `b`; a lossy crash drops a random part of each log's unflushed tail.
    pub fn crash(&mut self, b: i32, lossy: bool) {
        let now = self.now;
        let mut keep = BTreeMap::new();
        let mut lost = Vec::new();
        for (i, p) in &self.brokers[(b - 1) as usize].parts {
            let (flushed, end) = p.log.unflushed();
            let k = if lossy {
                self.rng.range(flushed, end)
            } else {
                end
            };
            if k < end {
                lost.push(format!("p{i} {k}..{end}"));
            }
            keep.insert(*i, k);
        }
        let epoch = self.controller.image.brokers.get(&b).map_or(0, |x| x.epoch);
        let downtime = self.rng.range(50, 1500);
        let br = self.broker_mut(b);
        br.crash(|i, log| keep.get(&i).copied().unwrap_or(log.log_end()));
        br.restart_at = Some(now + downtime);
        self.last_down.insert(b, now);
        if !lost.is_empty() {
            self.dirty.insert(b, epoch);
        }
        self.history.push(
            now,
            Event::Fault(format!("broker {b} crashes, losing [{}]", lost.join(", "))),
        );
    }

    /// Whether a crash of `b` may lose unflushed records without making an acknowledged
    /// write's loss legitimate: as in Kafka, acks=all does not wait for fsync, so the ISR
    /// must keep another member holding every acknowledged record until `b` is back in
    /// sync. So: no other fault in progress, every broker up, unfenced and holding a lease
    /// for a while yet, and every ISR of `b`'s partitions has another member. While `b` is
    /// dirty no other fault starts and no message is lost by chance (a lost heartbeat could
    /// fence the member holding the records, leaving `b` the last in-sync replica: the
    /// loss Kafka's KIP-966 addresses, not one of ours).
    pub fn lossy_crash_allowed(&self, b: i32) -> bool {
        if !self.dirty.is_empty() || !self.net.cuts().is_empty() || self.controller.paused(self.now)
        {
            return false;
        }
        let image = &self.controller.image;
        let until = self.now + self.cfg.session_timeout_ms / 2;
        let all_up = self.brokers.iter().all(|x| {
            x.alive
                && !x.shutting_down()
                && image
                    .brokers
                    .get(&x.id)
                    .is_some_and(|r| !r.fenced && self.controller.lease_holds(x.id, r.epoch, until))
        });
        all_up
            && image.topic_by_name(TOPIC).is_some_and(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.replicas.contains(&b))
                    .all(|p| p.isr.iter().any(|r| *r != b))
            })
    }

    /// A dirty broker is clean again once, as a newer incarnation, it is unfenced and in
    /// every ISR of its partitions: it then holds every acknowledged record again.
    fn clear_dirty(&mut self) {
        let image = &self.controller.image;
        let Some(t) = image.topic_by_name(TOPIC) else {
            return;
        };
        self.dirty.retain(|b, epoch| {
            let back = image
                .brokers
                .get(b)
                .is_some_and(|r| r.epoch > *epoch && !r.fenced);
            let in_sync = t
                .partitions
                .iter()
                .filter(|p| p.replicas.contains(b))
                .all(|p| p.isr.contains(b));
            !(back && in_sync)
        });
    }

    /// The end of the fault phase: links restored, no loss, short delays, disks fast, the
    /// controller deciding, every stopped broker restarting, producers stopping.
    fn heal_all(&mut self) {
        let now = self.now;
        self.healed = true;
        self.net.heal_all();
        self.actions.clear();
        self.net.loss = 0.0;
        self.net.max_delay_ms = self.net.max_delay_ms.min(10);
        self.controller.paused_until = self.controller.paused_until.min(now);
        self.client.producing = false;
        for br in &mut self.brokers {
            br.slow_disk = None;
            br.metadata_lag = None;
            if !br.alive {
                br.restart_at = Some(now);
            }
        }
        self.history
            .push(now, Event::Fault("all faults heal".into()));
    }
}
