//! A partition leader's view of its followers: their log end offsets, whether they keep up,
//! the high watermark, and which ISR changes to propose to the controller. Pure state driven
//! by follower fetches and a clock, so the rules are tested deterministically.

use std::collections::BTreeMap;

use sluice_storage::Offset;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Follower {
    /// The follower's log end offset: the offset it last fetched from. `None` until it
    /// fetches from this leader (Kafka's -1): a new leader cannot know how far a follower got
    /// under the previous one, so an unknown end neither holds up nor advances anything.
    log_end_offset: Option<Offset>,
    /// The last time it was known to have everything the leader had.
    caught_up_ms: i64,
    /// The leader's log end offset at the follower's previous fetch, and when that was.
    previous_fetch: Option<(Offset, i64)>,
    /// The follower's log start offset as its last fetch said, -1 until it says.
    log_start_offset: Offset,
    /// The broker epoch (registration incarnation) its last fetch carried (Fetch v15+,
    /// KIP-903), `None` until one does.
    broker_epoch: Option<i64>,
}

impl Follower {
    fn unknown(now_ms: i64) -> Follower {
        Follower {
            log_end_offset: None,
            caught_up_ms: now_ms,
            previous_fetch: None,
            log_start_offset: Offset(-1),
            broker_epoch: None,
        }
    }
}

/// The leader's own log, as the ISR rules read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderLog {
    /// The leader's log end offset.
    pub log_end: Offset,
    /// The high watermark the leader's log has published: what is known to be replicated,
    /// never one recomputed from follower ends the leader has not seen.
    pub high_watermark: Offset,
    /// Where the leader's current epoch starts: its log end when it became leader.
    pub epoch_start: Offset,
}

/// Kafka's `Partition.isFollowerInSync`: a follower may join the ISR once its log reaches
/// the leader's high watermark and the start of the leader's current epoch. The second
/// condition keeps out a replica that has everything committed under the previous leader but
/// not what this leader may still commit from its own log (records it held above the old
/// high watermark). An unknown log end never qualifies.
pub fn may_join_isr(follower_end: Option<Offset>, leader: &LeaderLog) -> bool {
    follower_end.is_some_and(|end| end >= leader.high_watermark && end >= leader.epoch_start)
}

/// KIP-903 (Kafka's `Partition.isBrokerEpochIsrEligible`): a replica may join the ISR only if
/// the broker epoch its fetches carried is the broker's current registration. A broker that
/// restarted with an empty disk registers anew; fetches from its previous incarnation, or a
/// fetch that carried no epoch at all, say nothing about the log it has now.
pub fn broker_epoch_eligible(fetched: Option<i64>, registered: Option<i64>) -> bool {
    matches!((fetched, registered), (Some(f), Some(r)) if f == r)
}

/// Kafka's `Replica.updateFetchStateOrThrow` (KIP-903), stricter where Kafka keeps
/// compatibility: a fetch is taken as a follower's only if it names the broker epoch it
/// registered with (`fetched`, -1 for none) and that epoch is not older than the one the
/// leader's image holds (`registered`). Kafka accepts -1 from brokers older than 3.5; every
/// Sluice follower sends its epoch, and with no ACLs to keep clients from claiming a
/// replica id, a fetch without one could move the high watermark. A newer epoch than the
/// image's is accepted: the leader's image may lag the registration.
pub fn follower_fetch_accepted(fetched: i64, registered: Option<i64>) -> bool {
    fetched >= 0 && registered.is_none_or(|r| fetched >= r)
}

/// Follower progress for one partition led here.
#[derive(Debug, Clone)]
pub struct IsrTracker {
    leader: i32,
    followers: BTreeMap<i32, Follower>,
    /// `replica.lag.time.max.ms`.
    lag_max_ms: i64,
}

impl IsrTracker {
    /// Starts tracking `replicas` (the leader among them) at time `now_ms`. Followers count as
    /// caught up now, so none is dropped before it had `lag_max_ms` to fetch; their log ends
    /// are unknown until they fetch.
    pub fn new(leader: i32, replicas: &[i32], lag_max_ms: i64, now_ms: i64) -> IsrTracker {
        IsrTracker {
            leader,
            followers: replicas
                .iter()
                .filter(|r| **r != leader)
                .map(|r| (*r, Follower::unknown(now_ms)))
                .collect(),
            lag_max_ms,
        }
    }

    /// Follows a change of the replica set (a reassignment): new followers start as if
    /// caught up at `now_ms` with an unknown log end; removed ones are forgotten.
    pub fn set_replicas(&mut self, replicas: &[i32], now_ms: i64) {
        self.followers.retain(|r, _| replicas.contains(r));
        for r in replicas.iter().filter(|r| **r != self.leader) {
            self.followers
                .entry(*r)
                .or_insert_with(|| Follower::unknown(now_ms));
        }
    }

    /// The log start offset `follower` reported in its fetch (Fetch v5+).
    pub fn on_log_start(&mut self, follower: i32, log_start_offset: Offset) {
        if let Some(f) = self.followers.get_mut(&follower) {
            f.log_start_offset = log_start_offset;
        }
    }

    /// The broker epoch `follower`'s fetch carried (Fetch v15+ `ReplicaState`); a negative
    /// one (older versions send -1) is no epoch.
    pub fn on_broker_epoch(&mut self, follower: i32, broker_epoch: i64) {
        if let Some(f) = self.followers.get_mut(&follower) {
            f.broker_epoch = (broker_epoch >= 0).then_some(broker_epoch);
        }
    }

    /// The log start offset `follower`'s last fetch reported, -1 until one did.
    pub fn log_start_offset(&self, follower: i32) -> Offset {
        self.followers
            .get(&follower)
            .map_or(Offset(-1), |f| f.log_start_offset)
    }

    /// The broker epoch `follower`'s last fetch carried, if any.
    pub fn broker_epoch(&self, follower: i32) -> Option<i64> {
        self.followers.get(&follower).and_then(|f| f.broker_epoch)
    }

    /// `follower`'s log end offset, if it has fetched from this leader.
    pub fn log_end_offset(&self, follower: i32) -> Option<Offset> {
        self.followers.get(&follower).and_then(|f| f.log_end_offset)
    }

    /// Kafka's low watermark: the lowest log start offset over the leader (`leader_start`) and
    /// the followers `counted` (Kafka counts the live ones). A follower that has not reported
    /// its log start yet holds it at -1.
    pub fn low_watermark(&self, leader_start: Offset, counted: impl Fn(i32) -> bool) -> Offset {
        self.followers
            .iter()
            .filter(|(id, _)| counted(**id))
            .map(|(_, f)| f.log_start_offset)
            .fold(leader_start, Offset::min)
    }

    /// A fetch from `follower` at `fetch_offset`, while the leader's log ends at
    /// `leader_end`. As in Kafka, the follower is caught up at this fetch if it asked for the
    /// leader's end, and caught up as of its previous fetch if it asked for what the leader's
    /// end was then.
    pub fn on_fetch(
        &mut self,
        follower: i32,
        fetch_offset: Offset,
        leader_end: Offset,
        now_ms: i64,
    ) {
        let Some(f) = self.followers.get_mut(&follower) else {
            return;
        };
        f.log_end_offset = Some(fetch_offset);
        if fetch_offset >= leader_end {
            f.caught_up_ms = now_ms;
        } else if let Some((end_then, at)) = f.previous_fetch {
            if fetch_offset >= end_then {
                f.caught_up_ms = f.caught_up_ms.max(at);
            }
        }
        f.previous_fetch = Some((leader_end, now_ms));
    }

    /// The high watermark the ISR allows: the lowest log end offset in the ISR (the leader's
    /// own included). `None` while an ISR follower's log end is unknown (it has not fetched
    /// from this leader yet): nothing is known to be on it, so nothing may be acknowledged on
    /// its account (Kafka's -1 log end holds the high watermark where it is).
    pub fn high_watermark(&self, isr: &[i32], leader_end: Offset) -> Option<Offset> {
        isr.iter()
            .filter(|r| **r != self.leader)
            .filter_map(|r| self.followers.get(r))
            .try_fold(leader_end, |hw, f| f.log_end_offset.map(|end| hw.min(end)))
    }

    /// ISR members that have not been caught up for longer than `replica.lag.time.max.ms`.
    pub fn lagging(&self, isr: &[i32], now_ms: i64) -> Vec<i32> {
        isr.iter()
            .copied()
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_some_and(|f| now_ms - f.caught_up_ms > self.lag_max_ms)
            })
            .collect()
    }

    /// Replicas outside the ISR whose logs reach what [`may_join_isr`] asks of them.
    pub fn caught_up(&self, isr: &[i32], leader: &LeaderLog) -> Vec<i32> {
        self.followers
            .iter()
            .filter(|(r, f)| !isr.contains(r) && may_join_isr(f.log_end_offset, leader))
            .map(|(r, _)| *r)
            .collect()
    }

    /// The ISR to propose now, if it should change: lagging members out, caught-up replicas
    /// in where `eligible` (given the replica and the broker epoch its fetches carried) says
    /// the broker may join. The leader always stays.
    pub fn proposed_isr(
        &self,
        isr: &[i32],
        leader: &LeaderLog,
        now_ms: i64,
        eligible: impl Fn(i32, Option<i64>) -> bool,
    ) -> Option<Vec<i32>> {
        let lagging = self.lagging(isr, now_ms);
        let mut next: Vec<i32> = isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        next.extend(
            self.caught_up(isr, leader)
                .into_iter()
                .filter(|r| eligible(*r, self.broker_epoch(*r))),
        );
        next.sort_unstable();
        let mut current = isr.to_vec();
        current.sort_unstable();
        (next != current).then_some(next)
    }
}

/// Where an acks=all produce stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcksAll {
    /// Every ISR member has the batch: answer the producer.
    Done,
    /// Wait for followers to fetch it.
    Waiting,
    /// Fewer than `min.insync.replicas` are in sync: answer NOT_ENOUGH_REPLICAS.
    NotEnoughReplicas,
}

/// Whether an acks=all produce whose last offset is `last_offset` may be answered: every ISR
/// member has it (it is below the high watermark) and the ISR has at least
/// `min.insync.replicas` members.
pub fn acks_all(
    last_offset: Offset,
    high_watermark: Offset,
    isr_size: usize,
    min_insync: usize,
) -> AcksAll {
    if isr_size < min_insync {
        AcksAll::NotEnoughReplicas
    } else if last_offset < high_watermark {
        AcksAll::Done
    } else {
        AcksAll::Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: i64 = 30_000;

    /// Every broker may join (liveness and broker epochs are not what the test is about).
    fn any(_: i32, _: Option<i64>) -> bool {
        true
    }

    #[test]
    fn high_watermark_is_the_lowest_isr_end() {
        let mut t = IsrTracker::new(1, &[1, 2, 3], LAG, 0);
        t.on_fetch(2, Offset(80), Offset(100), 10);
        t.on_fetch(3, Offset(60), Offset(100), 10);
        assert_eq!(t.high_watermark(&[1, 2, 3], Offset(100)), Some(Offset(60)));
        assert_eq!(t.high_watermark(&[1, 2], Offset(100)), Some(Offset(80)));
        assert_eq!(t.high_watermark(&[1], Offset(100)), Some(Offset(100)));
        assert_eq!(acks_all(Offset(59), Offset(60), 3, 2), AcksAll::Done);
        assert_eq!(acks_all(Offset(60), Offset(60), 3, 2), AcksAll::Waiting);
        assert_eq!(
            acks_all(Offset(0), Offset(60), 1, 2),
            AcksAll::NotEnoughReplicas
        );
    }

    #[test]
    fn a_follower_that_stops_keeping_up_leaves_and_rejoins_when_caught_up() {
        let mut t = IsrTracker::new(1, &[1, 2, 3], LAG, 0);
        let isr = vec![1, 2, 3];
        // Both followers fetch the leader's end every second; then 3 falls behind.
        for s in 1..=10 {
            t.on_fetch(2, Offset(100 * s), Offset(100 * s), s * 1000);
            t.on_fetch(3, Offset(100 * s), Offset(100 * s), s * 1000);
        }
        for s in 11..=50 {
            t.on_fetch(2, Offset(100 * s), Offset(100 * s), s * 1000);
            t.on_fetch(3, Offset(1000), Offset(100 * s), s * 1000);
        }
        assert_eq!(
            t.lagging(&isr, 40_000),
            Vec::<i32>::new(),
            "within the lag time"
        );
        assert_eq!(t.lagging(&isr, 40_001), vec![3]);
        let leader = LeaderLog {
            log_end: Offset(5000),
            high_watermark: Offset(1000),
            epoch_start: Offset(0),
        };
        let shrunk = t.proposed_isr(&isr, &leader, 50_000, any).unwrap();
        assert_eq!(shrunk, vec![1, 2]);
        // Out of the ISR it no longer holds the high watermark back.
        assert_eq!(t.high_watermark(&shrunk, Offset(5000)), Some(Offset(5000)));
        let leader = LeaderLog {
            high_watermark: Offset(5000),
            ..leader
        };
        // It catches up to the high watermark and is proposed back.
        t.on_fetch(3, Offset(5000), Offset(5000), 51_000);
        assert_eq!(
            t.proposed_isr(&shrunk, &leader, 51_000, any),
            Some(vec![1, 2, 3])
        );
        assert_eq!(t.proposed_isr(&[1, 2, 3], &leader, 51_000, any), None);
    }

    #[test]
    fn fetching_what_was_the_end_at_the_previous_fetch_counts_as_caught_up_then() {
        let mut t = IsrTracker::new(1, &[1, 2], LAG, 0);
        // Under constant load the follower is always one fetch behind the leader's end.
        for s in 1..=100 {
            t.on_fetch(2, Offset(100 * (s - 1)), Offset(100 * s), s * 1000);
        }
        assert!(t.lagging(&[1, 2], 100_000).is_empty());
    }

    #[test]
    fn the_low_watermark_is_the_lowest_log_start_over_counted_replicas() {
        let mut t = IsrTracker::new(1, &[1, 2, 3], 1000, 0);
        assert_eq!(
            t.low_watermark(Offset(50), |_| true),
            Offset(-1),
            "no follower reported yet"
        );
        t.on_log_start(2, Offset(40));
        t.on_log_start(3, Offset(70));
        assert_eq!(t.low_watermark(Offset(50), |_| true), Offset(40));
        assert_eq!(t.low_watermark(Offset(50), |id| id != 2), Offset(50));
        t.on_log_start(2, Offset(60));
        assert_eq!(t.low_watermark(Offset(50), |_| true), Offset(50));
        t.on_log_start(9, Offset(0));
        assert_eq!(
            t.low_watermark(Offset(50), |_| true),
            Offset(50),
            "not a replica"
        );
    }

    #[test]
    fn a_new_leader_does_not_add_a_replica_whose_log_end_it_has_not_seen() {
        // Replicas [3, 1, 2], ISR {1, 2}; 2 became leader with its log ending at 100 and its
        // high watermark at 90, and has heard from nobody yet: 3, far behind, must not look
        // caught up (it used to, its unknown end taken as 0 against a high watermark of 0).
        let t = IsrTracker::new(2, &[3, 1, 2], LAG, 0);
        let leader = LeaderLog {
            log_end: Offset(100),
            high_watermark: Offset(90),
            epoch_start: Offset(100),
        };
        assert_eq!(t.proposed_isr(&[1, 2], &leader, 200, any), None);
        assert_eq!(t.log_end_offset(3), None);
    }

    #[test]
    fn the_high_watermark_waits_for_every_isr_followers_first_fetch() {
        let mut t = IsrTracker::new(2, &[3, 1, 2], LAG, 0);
        assert_eq!(
            t.high_watermark(&[1, 2], Offset(100)),
            None,
            "1 has not fetched"
        );
        assert_eq!(t.high_watermark(&[2], Offset(100)), Some(Offset(100)));
        t.on_fetch(1, Offset(95), Offset(100), 10);
        assert_eq!(t.high_watermark(&[1, 2], Offset(100)), Some(Offset(95)));
        // A replica being added counts once it is in the set asked about.
        assert_eq!(t.high_watermark(&[1, 2, 3], Offset(100)), None);
    }

    #[test]
    fn a_follower_joins_at_the_published_high_watermark_and_the_epoch_start() {
        let mut t = IsrTracker::new(2, &[3, 1, 2], LAG, 0);
        let leader = LeaderLog {
            log_end: Offset(120),
            high_watermark: Offset(90),
            epoch_start: Offset(100),
        };
        // At the high watermark but below where this leader's epoch starts: the records the
        // leader kept above the old high watermark are not on it.
        t.on_fetch(3, Offset(95), Offset(120), 10);
        assert!(!may_join_isr(t.log_end_offset(3), &leader));
        assert_eq!(t.proposed_isr(&[1, 2], &leader, 10, any), None);
        t.on_fetch(3, Offset(100), Offset(120), 20);
        assert_eq!(
            t.proposed_isr(&[1, 2], &leader, 20, any),
            Some(vec![1, 2, 3])
        );
        // Past the epoch start but below the published high watermark.
        let ahead = LeaderLog {
            high_watermark: Offset(110),
            ..leader
        };
        assert_eq!(t.proposed_isr(&[1, 2], &ahead, 20, any), None);
    }

    #[test]
    fn a_replica_joins_only_with_its_brokers_current_registration_epoch() {
        let mut t = IsrTracker::new(1, &[1, 2], LAG, 0);
        let leader = LeaderLog {
            log_end: Offset(50),
            high_watermark: Offset(50),
            epoch_start: Offset(0),
        };
        let registered = |_: i32, fetched: Option<i64>| broker_epoch_eligible(fetched, Some(7));
        t.on_fetch(2, Offset(50), Offset(50), 10);
        assert_eq!(
            t.proposed_isr(&[1], &leader, 10, registered),
            None,
            "no epoch carried"
        );
        t.on_broker_epoch(2, 6);
        assert_eq!(
            t.proposed_isr(&[1], &leader, 10, registered),
            None,
            "an older incarnation"
        );
        t.on_broker_epoch(2, 7);
        assert_eq!(
            t.proposed_isr(&[1], &leader, 10, registered),
            Some(vec![1, 2])
        );
        t.on_broker_epoch(2, -1);
        assert_eq!(t.broker_epoch(2), None);
        assert!(!broker_epoch_eligible(Some(7), None), "not registered");
    }

    #[test]
    fn a_fetch_counts_as_a_followers_only_with_a_current_broker_epoch() {
        assert!(!follower_fetch_accepted(-1, Some(7)), "no epoch: a client");
        assert!(!follower_fetch_accepted(6, Some(7)), "an older incarnation");
        assert!(follower_fetch_accepted(7, Some(7)));
        assert!(follower_fetch_accepted(8, Some(7)), "the image lags");
        assert!(follower_fetch_accepted(7, None));
    }
}
