//! The checker can fail: each test breaks the simulation's glue on purpose (a switch in
//! [`Mutations`], never in `replication/src`) and expects some seed of a small range to be
//! caught by the invariant that guards against that bug.

use crate::config::{Config, Mutations};
use crate::run_config;

/// Runs seeds until one violates something; returns (seed, invariant) of the first.
fn first_caught(
    mutations: Mutations,
    seeds: std::ops::Range<u64>,
    tweak: &impl Fn(&mut Config),
) -> Option<(u64, &'static str)> {
    seeds.into_iter().find_map(|seed| {
        let mut cfg = Config::for_seed(seed, mutations);
        tweak(&mut cfg);
        let o = run_config(seed, cfg, false);
        o.violation.map(|v| (seed, v.invariant))
    })
}

fn expect_caught(mutations: Mutations, seeds: std::ops::Range<u64>, expected: &[&str]) {
    expect_caught_with(mutations, seeds, expected, |_| {})
}

fn expect_caught_with(
    mutations: Mutations,
    seeds: std::ops::Range<u64>,
    expected: &[&str],
    tweak: impl Fn(&mut Config),
) {
    let caught = first_caught(mutations, seeds.clone(), &tweak);
    eprintln!("{mutations:?}: first caught by {caught:?}");
    let Some((seed, invariant)) = caught else {
        panic!("no seed in {seeds:?} caught {mutations:?}");
    };
    assert!(
        expected.contains(&invariant),
        "seed {seed} was caught by {invariant}, expected one of {expected:?}"
    );
    // The mutation, not the configuration, is what fails: unmutated, the seed passes.
    let mut cfg = Config::for_seed(seed, Mutations::default());
    tweak(&mut cfg);
    let clean = run_config(seed, cfg, false);
    assert!(
        clean.violation.is_none(),
        "seed {seed} fails without {mutations:?} too: {}",
        crate::report(seed, &clean)
    );
}

#[test]
fn counting_an_unknown_follower_end_as_caught_up_is_caught() {
    expect_caught(
        Mutations {
            unknown_follower_counts_as_caught_up: true,
            ..Mutations::default()
        },
        0..300,
        &["high_watermark", "acked_writes"],
    );
}

#[test]
fn skipping_truncation_is_caught() {
    expect_caught(
        Mutations {
            skip_truncation: true,
            ..Mutations::default()
        },
        0..300,
        &["committed_prefix"],
    );
}

#[test]
fn forgetting_a_pending_isr_change_on_timeout_is_caught() {
    // The bug needs a committed change whose answer comes too late while the leader's
    // image lags and the joining follower falls behind: answers timing out after 20 ms on
    // a network delaying up to 40 ms, with slow disks and slow learners, make that common.
    expect_caught_with(
        Mutations {
            forget_pending_isr_on_timeout: true,
            ..Mutations::default()
        },
        0..300,
        &["high_watermark", "acked_writes"],
        |cfg| {
            cfg.stress();
            cfg.faults.loss = 0.02;
            cfg.faults.max_delay_ms = 40;
            cfg.request_timeout_ms = 20;
        },
    );
}

#[test]
fn brokers_that_never_catch_up_leave_partitions_leaderless() {
    expect_caught(
        Mutations {
            never_caught_up: true,
            ..Mutations::default()
        },
        0..300,
        &["leader_elected"],
    );
}

#[test]
fn a_follower_fetching_at_a_stale_epoch_is_stuck() {
    expect_caught(
        Mutations {
            fetch_at_first_epoch: true,
            ..Mutations::default()
        },
        0..300,
        &["followers_catch_up"],
    );
}
