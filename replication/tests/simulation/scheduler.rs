//! The seeded fault scheduler: at each step of the fault phase, each kind of fault starts
//! with its configured probability, on nodes the seed picks. Faults that could make an
//! acknowledged write's loss legitimate (see `World::lossy_crash_allowed`) wait while a
//! broker is dirty.

use crate::history::Event;
use crate::world::{Action, World};

/// Starts this step's faults.
pub fn inject(w: &mut World) {
    let now = w.now;
    let f = w.cfg.faults.clone();
    let n = w.cfg.nodes;
    if w.rng.chance(f.crash) && w.dirty.is_empty() {
        let up: Vec<i32> = (1..=n).filter(|b| w.broker(*b).alive).collect();
        if let Some(b) = w.rng.pick(&up) {
            let lossy = w.rng.chance(f.lossy) && w.lossy_crash_allowed(b);
            w.crash(b, lossy);
        }
    }
    if w.rng.chance(f.shutdown) && w.dirty.is_empty() {
        let up: Vec<i32> = (1..=n)
            .filter(|b| w.broker(*b).alive && !w.broker(*b).shutting_down())
            .collect();
        if let Some(b) = w.rng.pick(&up) {
            if w.brokers[(b - 1) as usize].begin_shutdown(now) {
                w.history.push(
                    now,
                    Event::Fault(format!("broker {b} begins a controlled shutdown")),
                );
            }
        }
    }
    if w.rng.chance(f.partition) && w.dirty.is_empty() {
        let a = w.rng.range(0, n as i64) as i32;
        let b = w.rng.range(0, n as i64) as i32;
        if a != b {
            let until = now + w.rng.range(100, 2_000);
            w.net.cut(a, b);
            w.schedule(until, Action::Heal(a, b));
            w.history
                .push(now, Event::Fault(format!("link {a}-{b} cut until {until}")));
        }
    }
    if w.rng.chance(f.isolate) && w.dirty.is_empty() {
        let b = w.rng.range(1, n as i64) as i32;
        let until = now + w.rng.range(100, 2_000);
        for other in (0..=n).filter(|o| *o != b) {
            w.net.cut(b, other);
            w.schedule(until, Action::Heal(b, other));
        }
        w.history.push(
            now,
            Event::Fault(format!("broker {b} isolated until {until}")),
        );
    }
    if w.rng.chance(f.slow_disk) {
        let b = w.rng.range(1, n as i64) as i32;
        let until = now + w.rng.range(200, 2_000);
        let delay = w.rng.range(20, 400);
        w.brokers[(b - 1) as usize].slow_disk = Some((until, delay));
        w.history.push(
            now,
            Event::Fault(format!("broker {b} disk slow ({delay} ms) until {until}")),
        );
    }
    if w.rng.chance(f.metadata_lag) {
        let b = w.rng.range(1, n as i64) as i32;
        let until = now + w.rng.range(200, 2_000);
        let lag = w.rng.range(100, 1_000);
        w.brokers[(b - 1) as usize].metadata_lag = Some((until, lag));
        w.history.push(
            now,
            Event::Fault(format!(
                "broker {b} replays metadata {lag} ms late until {until}"
            )),
        );
    }
    if w.rng.chance(f.controller_pause) {
        let until = now + w.rng.range(100, 1_500);
        w.controller.pause(until);
        w.history.push(
            now,
            Event::Fault(format!("controller fails over until {until}")),
        );
    }
    let mut out = Vec::new();
    if w.rng.chance(f.preferred_election) {
        w.history
            .push(now, Event::Fault("preferred leader election".into()));
        w.controller
            .elect_preferred(now, &w.cfg, &mut w.history, &mut out);
    }
    if w.cfg.unclean && w.rng.chance(f.unclean_election) {
        w.history
            .push(now, Event::Fault("unclean leader election".into()));
        w.controller
            .elect_unclean(now, &w.cfg, &mut w.history, &mut out);
    }
    w.send_all(out);
}
