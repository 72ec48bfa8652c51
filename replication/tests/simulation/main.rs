//! A deterministic simulation of the cluster's replication (issue 21): a controller,
//! 3 or 5 brokers and a client on a simulated network and clock, driven by one seed, over
//! the real pure state machines of `sluice_replication` (controller decisions, leases, ISR
//! tracking, pending ISR changes, follower truncation). The broker glue that calls them is
//! mirrored here, each function naming the broker function it mirrors.
//!
//! Runs:
//! - `cargo test -p sluice-replication --test simulation`: `SIM_SEEDS` seeds (default
//!   [`DEFAULT_SEEDS`]) from `SIM_FIRST_SEED` (default 0).
//! - `SIM_SEED=n`: replays seed `n` alone, printing every event.
//! - Before a release: `SIM_SEEDS=100000 cargo test -p sluice-replication --test simulation
//!   -- --nocapture` (see README.md next to this file for its duration).
//!
//! Layout: [`world`] steps the cluster; [`scheduler`] injects faults; [`net`] carries
//! messages; [`controller`], [`broker`] (lifecycle and reconcile), [`partition`] (the
//! replica state), [`leader`] and [`fetcher`] mirror the cluster's code; [`log`] is the
//! in-memory replica log; [`client`] produces and consumes; [`history`] records; and
//! [`invariants`] checks, one file per invariant. [`mutations`] proves each can fail.

mod broker;
mod client;
mod config;
mod controller;
mod fetcher;
mod history;
mod invariants;
mod leader;
mod log;
mod mutations;
mod net;
mod partition;
mod rng;
mod scheduler;
mod world;

use config::{Config, Mutations};
use world::{Outcome, World};

/// Seeds of the default run.
const DEFAULT_SEEDS: u64 = 2_500;

/// Runs one seed; with `SIM_STRESS` set, on a lossy network with frequent slow disks and
/// slow learners; with `SIM_UNCLEAN` set, with unclean election allowed and triggered.
pub fn run_seed(seed: u64, mutations: Mutations, echo: bool) -> Outcome {
    let mut cfg = Config::for_seed(seed, mutations);
    if std::env::var_os("SIM_STRESS").is_some() {
        cfg.stress();
    }
    if std::env::var_os("SIM_UNCLEAN").is_some() {
        cfg.allow_unclean();
    }
    run_config(seed, cfg, echo)
}

/// Runs one seed with a configuration of the caller's.
pub fn run_config(seed: u64, cfg: Config, echo: bool) -> Outcome {
    World::new(seed, cfg, echo).run()
}

/// A failing seed's report: the seed, the invariant, the replay command, the last events.
pub fn report(seed: u64, o: &Outcome) -> String {
    let v = o.violation.as_ref().expect("a violation");
    format!(
        "seed {seed} violates {} at {} ms: {}\nreplay: SIM_SEED={seed} cargo test -p sluice-replication --test simulation -- --nocapture simulation\nlast events:\n{}",
        v.invariant, v.at_ms, v.detail, o.tail
    )
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The mutation `SIM_MUTATION` names (a field of [`Mutations`]), or none.
fn env_mutations() -> Mutations {
    std::env::var("SIM_MUTATION").map_or(Mutations::default(), |name| {
        Mutations::named(&name).unwrap_or_else(|| panic!("no mutation named {name:?}"))
    })
}

#[test]
fn simulation() {
    let mutations = env_mutations();
    if let Some(seed) = env_u64("SIM_SEED") {
        let cfg = Config::for_seed(seed, mutations);
        println!("seed {seed}: {cfg:?} (SIM_STRESS adds loss and slow disks)");
        let o = run_seed(seed, mutations, true);
        println!(
            "seed {seed}: {} events, {} records acknowledged, trace hash {:016x}",
            o.events, o.acks, o.trace_hash
        );
        if o.violation.is_some() {
            panic!("{}", report(seed, &o));
        }
        return;
    }
    let first = env_u64("SIM_FIRST_SEED").unwrap_or(0);
    let count = env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut acks = 0;
    for seed in first..first + count {
        let o = run_seed(seed, mutations, false);
        acks += o.acks;
        if o.violation.is_some() {
            eprintln!("{}", report(seed, &o));
            failures.push(seed);
            if failures.len() >= 5 {
                break;
            }
        }
    }
    println!(
        "{count} seeds from {first}: {acks} records acknowledged in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 11] {
        let a = run_seed(seed, Mutations::default(), false);
        let b = run_seed(seed, Mutations::default(), false);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.events, b.events, "seed {seed}");
        assert!(a.events > 100, "seed {seed} did something");
    }
    let other = run_seed(4, Mutations::default(), false);
    assert_ne!(
        other.trace_hash,
        run_seed(3, Mutations::default(), false).trace_hash
    );
}
