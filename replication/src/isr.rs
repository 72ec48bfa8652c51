//! A partition leader's view of its followers: their log end offsets, whether they keep up,
//! the high watermark, and which ISR changes to propose to the controller. Pure state driven
//! by follower fetches and a clock, so the rules are tested deterministically.

use std::collections::BTreeMap;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Follower {
    /// The follower's log end offset: the offset it last fetched from.
    log_end_offset: i64,
    /// The last time it was known to have everything the leader had.
    caught_up_ms: i64,
    /// The leader's log end offset at the follower's previous fetch, and when that was.
    previous_fetch: Option<(i64, i64)>,
    /// The follower's log start offset as its last fetch said, -1 until it says.
    log_start_offset: i64,
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
    /// caught up now, so none is dropped before it had `lag_max_ms` to fetch.
    pub fn new(leader: i32, replicas: &[i32], lag_max_ms: i64, now_ms: i64) -> IsrTracker {
        IsrTracker {
            leader,
            followers: replicas
                .iter()
                .filter(|r| **r != leader)
                .map(|r| {
                    (
                        *r,
                        Follower {
                            log_end_offset: 0,
                            caught_up_ms: now_ms,
                            previous_fetch: None,
                            log_start_offset: -1,
                        },
                    )
                })
                .collect(),
            lag_max_ms,
        }
    }

    /// Follows a change of the replica set (a reassignment): new followers start as if
    /// caught up at `now_ms` with nothing fetched; removed ones are forgotten.
    pub fn set_replicas(&mut self, replicas: &[i32], now_ms: i64) {
        self.followers.retain(|r, _| replicas.contains(r));
        for r in replicas.iter().filter(|r| **r != self.leader) {
            self.followers.entry(*r).or_insert(Follower {
                log_end_offset: 0,
                caught_up_ms: now_ms,
                previous_fetch: None,
                log_start_offset: -1,
            });
        }
    }

    /// The log start offset `follower` reported in its fetch (Fetch v5+).
    pub fn on_log_start(&mut self, follower: i32, log_start_offset: i64) {
        if let Some(f) = self.followers.get_mut(&follower) {
            f.log_start_offset = log_start_offset;
        }
    }

    /// Kafka's low watermark: the lowest log start offset over the leader (`leader_start`) and
    /// the followers `counted` (Kafka counts the live ones). A follower that has not reported
    /// its log start yet holds it at -1.
    pub fn low_watermark(&self, leader_start: i64, counted: impl Fn(i32) -> bool) -> i64 {
        self.followers
            .iter()
            .filter(|(id, _)| counted(**id))
            .map(|(_, f)| f.log_start_offset)
            .fold(leader_start, i64::min)
    }

    /// A fetch from `follower` at `fetch_offset`, while the leader's log ends at
    /// `leader_end`. As in Kafka, the follower is caught up at this fetch if it asked for the
    /// leader's end, and caught up as of its previous fetch if it asked for what the leader's
    /// end was then.
    pub fn on_fetch(&mut self, follower: i32, fetch_offset: i64, leader_end: i64, now_ms: i64) {
        let Some(f) = self.followers.get_mut(&follower) else {
            return;
        };
        f.log_end_offset = fetch_offset;
        if fetch_offset >= leader_end {
            f.caught_up_ms = now_ms;
        } else if let Some((end_then, at)) = f.previous_fetch {
            if fetch_offset >= end_then {
                f.caught_up_ms = f.caught_up_ms.max(at);
            }
        }
        f.previous_fetch = Some((leader_end, now_ms));
    }

    /// The high watermark: the lowest log end offset in the ISR (the leader's own included).
    pub fn high_watermark(&self, isr: &[i32], leader_end: i64) -> i64 {
        isr.iter()
            .filter(|r| **r != self.leader)
            .filter_map(|r| self.followers.get(r).map(|f| f.log_end_offset))
            .fold(leader_end, i64::min)
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

    /// Replicas outside the ISR that have reached the high watermark and may rejoin.
    pub fn caught_up(&self, isr: &[i32], high_watermark: i64) -> Vec<i32> {
        self.followers
            .iter()
            .filter(|(r, f)| !isr.contains(r) && f.log_end_offset >= high_watermark)
            .map(|(r, _)| *r)
            .collect()
    }

    /// The ISR to propose now, if it should change: lagging members out, caught-up replicas
    /// in. The leader always stays.
    pub fn proposed_isr(&self, isr: &[i32], leader_end: i64, now_ms: i64) -> Option<Vec<i32>> {
        let lagging = self.lagging(isr, now_ms);
        let kept: Vec<i32> = isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        let high_watermark = self.high_watermark(&kept, leader_end);
        let mut next = kept;
        next.extend(self.caught_up(isr, high_watermark));
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
    last_offset: i64,
    high_watermark: i64,
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

    #[test]
    fn high_watermark_is_the_lowest_isr_end() {
        let mut t = IsrTracker::new(1, &[1, 2, 3], LAG, 0);
        t.on_fetch(2, 80, 100, 10);
        t.on_fetch(3, 60, 100, 10);
        assert_eq!(t.high_watermark(&[1, 2, 3], 100), 60);
        assert_eq!(t.high_watermark(&[1, 2], 100), 80);
        assert_eq!(t.high_watermark(&[1], 100), 100);
        assert_eq!(acks_all(59, 60, 3, 2), AcksAll::Done);
        assert_eq!(acks_all(60, 60, 3, 2), AcksAll::Waiting);
        assert_eq!(acks_all(0, 60, 1, 2), AcksAll::NotEnoughReplicas);
    }

    #[test]
    fn a_follower_that_stops_keeping_up_leaves_and_rejoins_when_caught_up() {
        let mut t = IsrTracker::new(1, &[1, 2, 3], LAG, 0);
        let isr = vec![1, 2, 3];
        // Both followers fetch the leader's end every second; then 3 falls behind.
        for s in 1..=10 {
            t.on_fetch(2, 100 * s, 100 * s, s * 1000);
            t.on_fetch(3, 100 * s, 100 * s, s * 1000);
        }
        for s in 11..=50 {
            t.on_fetch(2, 100 * s, 100 * s, s * 1000);
            t.on_fetch(3, 1000, 100 * s, s * 1000);
        }
        assert_eq!(
            t.lagging(&isr, 40_000),
            Vec::<i32>::new(),
            "within the lag time"
        );
        assert_eq!(t.lagging(&isr, 40_001), vec![3]);
        let shrunk = t.proposed_isr(&isr, 5000, 50_000).unwrap();
        assert_eq!(shrunk, vec![1, 2]);
        // Out of the ISR it no longer holds the high watermark back.
        assert_eq!(t.high_watermark(&shrunk, 5000), 5000);
        // It catches up to the high watermark and is proposed back.
        t.on_fetch(3, 5000, 5000, 51_000);
        assert_eq!(t.proposed_isr(&shrunk, 5000, 51_000), Some(vec![1, 2, 3]));
        assert_eq!(t.proposed_isr(&[1, 2, 3], 5000, 51_000), None);
    }

    #[test]
    fn fetching_what_was_the_end_at_the_previous_fetch_counts_as_caught_up_then() {
        let mut t = IsrTracker::new(1, &[1, 2], LAG, 0);
        // Under constant load the follower is always one fetch behind the leader's end.
        for s in 1..=100 {
            t.on_fetch(2, 100 * (s - 1), 100 * s, s * 1000);
        }
        assert!(t.lagging(&[1, 2], 100_000).is_empty());
    }

    #[test]
    fn the_low_watermark_is_the_lowest_log_start_over_counted_replicas() {
        let mut t = IsrTracker::new(1, &[1, 2, 3], 1000, 0);
        assert_eq!(
            t.low_watermark(50, |_| true),
            -1,
            "no follower reported yet"
        );
        t.on_log_start(2, 40);
        t.on_log_start(3, 70);
        assert_eq!(t.low_watermark(50, |_| true), 40);
        assert_eq!(t.low_watermark(50, |id| id != 2), 50);
        t.on_log_start(2, 60);
        assert_eq!(t.low_watermark(50, |_| true), 50);
        t.on_log_start(9, 0);
        assert_eq!(t.low_watermark(50, |_| true), 50, "not a replica");
    }
}
