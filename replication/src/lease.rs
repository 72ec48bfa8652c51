//! Broker leases, as the active controller keeps them: a broker that has not heartbeated for
//! `broker.session.timeout.ms` is to be fenced. Pure state over a clock given by the caller.

use std::collections::BTreeMap;

/// The last heartbeat of each broker incarnation.
#[derive(Debug, Clone)]
pub struct Leases {
    timeout_ms: i64,
    last: BTreeMap<i32, (i64, i64)>,
}

impl Leases {
    /// Leases lasting `timeout_ms` from each heartbeat.
    pub fn new(timeout_ms: i64) -> Leases {
        Leases {
            timeout_ms,
            last: BTreeMap::new(),
        }
    }

    /// A heartbeat from broker `id` incarnation `epoch` at `now_ms`. A heartbeat from an
    /// older incarnation than one already seen is ignored (and `false` returned).
    pub fn heartbeat(&mut self, id: i32, epoch: i64, now_ms: i64) -> bool {
        match self.last.get(&id) {
            Some((seen, _)) if *seen > epoch => false,
            _ => {
                self.last.insert(id, (epoch, now_ms));
                true
            }
        }
    }

    /// Broker incarnations whose lease ran out by `now_ms`.
    pub fn expired(&self, now_ms: i64) -> Vec<(i32, i64)> {
        self.last
            .iter()
            .filter(|(_, (_, at))| now_ms - at > self.timeout_ms)
            .map(|(id, (epoch, _))| (*id, *epoch))
            .collect()
    }

    /// Whether incarnation `epoch` of broker `id` holds no lease at `now_ms`: it ran out,
    /// was never taken, or belongs to another incarnation now.
    pub fn expired_for(&self, id: i32, epoch: i64, now_ms: i64) -> bool {
        self.last
            .get(&id)
            .is_none_or(|(e, at)| *e != epoch || now_ms - at > self.timeout_ms)
    }

    /// Forgets broker `id` (fenced, or gone): it needs a heartbeat to hold a lease again.
    pub fn remove(&mut self, id: i32) {
        self.last.remove(&id);
    }

    /// Forgets incarnation `epoch` of broker `id`, leaving a newer incarnation's lease alone.
    pub fn remove_epoch(&mut self, id: i32, epoch: i64) {
        if self.last.get(&id).is_some_and(|(e, _)| *e == epoch) {
            self.last.remove(&id);
        }
    }

    /// Starts every known broker's lease afresh at `now_ms`: a newly elected controller does
    /// not know when brokers last heartbeated its predecessor, so it gives them a full lease.
    pub fn restart_all(&mut self, brokers: impl IntoIterator<Item = (i32, i64)>, now_ms: i64) {
        self.last = brokers
            .into_iter()
            .map(|(id, e)| (id, (e, now_ms)))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_run_out_without_heartbeats() {
        let mut l = Leases::new(9000);
        assert!(l.heartbeat(1, 1, 0));
        assert!(l.heartbeat(2, 1, 0));
        assert!(l.heartbeat(2, 1, 5000));
        assert!(l.expired(9000).is_empty());
        assert_eq!(l.expired(9001), vec![(1, 1)]);
        assert!(
            !l.heartbeat(2, 0, 9001),
            "an older incarnation does not renew"
        );
        assert!(l.heartbeat(2, 2, 9001), "a new incarnation does");
        l.remove(1);
        assert!(l.expired(100_000).iter().all(|(id, _)| *id == 2));
        l.restart_all([(3, 7)], 100_000);
        assert_eq!(l.expired(109_001), vec![(3, 7)]);
        assert!(!l.expired_for(3, 7, 109_000));
        assert!(l.expired_for(3, 7, 109_001));
        assert!(
            l.expired_for(3, 6, 100_000),
            "another incarnation holds no lease"
        );
        assert!(
            l.expired_for(4, 1, 100_000),
            "a broker never heard from holds none"
        );
        l.remove_epoch(3, 6);
        assert_eq!(
            l.expired(109_001),
            vec![(3, 7)],
            "a newer incarnation stays"
        );
        l.remove_epoch(3, 7);
        assert!(l.expired(109_001).is_empty());
    }
}
