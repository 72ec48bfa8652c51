//! What a run looks like: cluster shape, timings (simulated milliseconds, scaled down from
//! the broker's defaults so a run covers many leader changes), which faults are on and how
//! often, and the test-only mutations that break the glue on purpose.

use crate::rng::Rng;

/// Deliberate bugs in the simulation's copy of the broker glue, to prove the checker fails.
/// Never in `replication/src`: these switch the glue in this test target only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mutations {
    /// The old item-1 bug: the leader counts a follower whose log end it has not seen as
    /// caught up (an unknown end as the leader's end) for the high watermark.
    pub unknown_follower_counts_as_caught_up: bool,
    /// A follower of a new leader epoch skips the OffsetForLeaderEpoch truncation.
    pub skip_truncation: bool,
    /// An ISR change whose AlterIsr went unanswered is forgotten (reverted) instead of kept
    /// pending and sent again.
    pub forget_pending_isr_on_timeout: bool,
    /// Restarted brokers never say they caught up with the metadata log: they stay fenced.
    pub never_caught_up: bool,
    /// A follower keeps fetching (and asking OffsetForLeaderEpoch) at the leader epoch it
    /// first followed a partition at, as a fetcher that read the epoch once would.
    pub fetch_at_first_epoch: bool,
}

impl Mutations {
    /// The mutation named `name` (a field name), for `SIM_MUTATION` replays.
    pub fn named(name: &str) -> Option<Mutations> {
        let mut m = Mutations::default();
        match name {
            "unknown_follower_counts_as_caught_up" => m.unknown_follower_counts_as_caught_up = true,
            "skip_truncation" => m.skip_truncation = true,
            "forget_pending_isr_on_timeout" => m.forget_pending_isr_on_timeout = true,
            "never_caught_up" => m.never_caught_up = true,
            "fetch_at_first_epoch" => m.fetch_at_first_epoch = true,
            _ => return None,
        }
        Some(m)
    }
}

/// Probabilities (per 10 ms step, over the fault phase) and bounds of each fault.
#[derive(Debug, Clone)]
pub struct Faults {
    /// A broker crashes (kill -9).
    pub crash: f64,
    /// Of crashes that may lose data (see `World::lossy_crash_allowed`), the share that drop
    /// records above the last flush.
    pub lossy: f64,
    /// A broker starts a controlled shutdown, then restarts.
    pub shutdown: f64,
    /// A link between two nodes (or between a broker and the controller) is cut.
    pub partition: f64,
    /// A broker is cut from every other node and the controller.
    pub isolate: f64,
    /// A broker's disk turns slow: appends take long.
    pub slow_disk: f64,
    /// The controller stops deciding for a while (a quorum failover).
    pub controller_pause: f64,
    /// A broker's metadata replay falls behind (a slow learner): committed images reach it
    /// late for a while.
    pub metadata_lag: f64,
    /// The controller moves leadership back to preferred replicas.
    pub preferred_election: f64,
    /// Unclean election (the topic allows it); only with `Config::unclean`.
    pub unclean_election: f64,
    /// Messages lost.
    pub loss: f64,
    /// Largest message delay, ms (each message draws its own: reordering).
    pub max_delay_ms: i64,
    /// How often a log is flushed (per partition, per step).
    pub flush: f64,
}

/// One run's configuration, drawn from its seed.
#[derive(Debug, Clone)]
pub struct Config {
    /// Brokers 1..=nodes.
    pub nodes: i32,
    /// Partitions of the one topic.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i16,
    /// `min.insync.replicas`.
    pub min_insync: usize,
    /// `unclean.leader.election.enable` on the topic: acked-write and committed-prefix
    /// checks are off for such a run.
    pub unclean: bool,
    /// Faults are injected until this time; then all heal.
    pub fault_phase_ms: i64,
    /// After healing, how long a partition may stay without a leader.
    pub leader_bound_ms: i64,
    /// After healing, how long a replica may take to reach its leader's end.
    pub catch_up_bound_ms: i64,
    /// The run ends at `fault_phase_ms` plus this.
    pub settle_ms: i64,
    /// Fault rates.
    pub faults: Faults,
    /// Deliberate bugs.
    pub mutations: Mutations,
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// Controller check interval.
    pub check_interval_ms: i64,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_ms: i64,
    /// `replica.lag.time.max.ms`.
    pub lag_max_ms: i64,
    /// How often a leader looks for ISR changes (reconcile.rs `isr_updates` tick).
    pub isr_check_ms: i64,
    /// How long a request waits for its answer.
    pub request_timeout_ms: i64,
    /// `replica.fetch.backoff.ms`.
    pub fetch_backoff_ms: i64,
    /// How long an acks=all produce waits for the ISR.
    pub produce_timeout_ms: i64,
}

impl Config {
    /// The configuration of `seed`: mostly 3 brokers with RF 3 and min ISR 2, some runs with
    /// 5 brokers, RF 5 and min ISR 3; fault rates vary per run.
    pub fn for_seed(seed: u64, mutations: Mutations) -> Config {
        let mut rng = Rng::new(seed ^ 0xc0f1_6000);
        let five = rng.chance(0.25);
        let (nodes, rf, min_insync) = if five { (5, 5, 3) } else { (3, 3, 2) };
        let faults = Faults {
            crash: rng.range(0, 30) as f64 / 10_000.0,
            lossy: rng.range(0, 100) as f64 / 100.0,
            shutdown: rng.range(0, 15) as f64 / 10_000.0,
            partition: rng.range(0, 30) as f64 / 10_000.0,
            isolate: rng.range(0, 10) as f64 / 10_000.0,
            slow_disk: rng.range(0, 20) as f64 / 10_000.0,
            controller_pause: rng.range(0, 10) as f64 / 10_000.0,
            metadata_lag: rng.range(0, 10) as f64 / 10_000.0,
            preferred_election: rng.range(0, 20) as f64 / 10_000.0,
            unclean_election: 0.0,
            loss: rng.range(0, 50) as f64 / 1000.0,
            max_delay_ms: rng.range(1, 40),
            flush: rng.range(1, 50) as f64 / 1000.0,
        };
        Config {
            nodes,
            partitions: rng.range(1, 2) as i32,
            replication_factor: rf,
            min_insync,
            unclean: false,
            fault_phase_ms: 6_000,
            leader_bound_ms: 3_000,
            catch_up_bound_ms: 4_000,
            settle_ms: 4_500,
            faults,
            mutations,
            session_timeout_ms: 600,
            check_interval_ms: 50,
            heartbeat_ms: 100,
            lag_max_ms: 500,
            isr_check_ms: 50,
            request_timeout_ms: 300,
            fetch_backoff_ms: 50,
            produce_timeout_ms: 800,
        }
    }

    /// The stress profile (`SIM_STRESS`): 15% message loss, frequent slow disks and slow
    /// metadata learners, so requests go unanswered, followers fall behind and leaders act
    /// on old images often.
    pub fn stress(&mut self) {
        self.faults.loss = 0.15;
        self.faults.slow_disk = 0.01;
        self.faults.metadata_lag = 0.005;
    }

    /// `SIM_UNCLEAN`: the topic allows unclean election and the controller is asked for
    /// one now and then. Acknowledged writes may then be lost by design, so only leader
    /// election and catching up are checked.
    pub fn allow_unclean(&mut self) {
        self.unclean = true;
        self.faults.unclean_election = 0.002;
    }
}
