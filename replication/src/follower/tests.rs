use super::*;

/// A log's leader-epoch cache as `(epoch, start offset)` pairs and its end, as the storage
/// `LeaderEpochCache` keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelLog {
    epochs: Vec<(i32, i64)>,
    end: i64,
}

impl ModelLog {
    fn new(epochs: &[(i32, i64)], end: i64) -> ModelLog {
        ModelLog {
            epochs: epochs.to_vec(),
            end,
        }
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`.
    fn end_offset_for(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let (latest, _) = *self.epochs.last()?;
        if epoch.0 < 0 || epoch.0 > latest {
            return None;
        }
        let Some(i) = self.epochs.iter().rposition(|(e, _)| *e <= epoch.0) else {
            return Some((epoch, Offset(self.epochs[0].1)));
        };
        let end = self.epochs.get(i + 1).map_or(self.end, |(_, start)| *start);
        Some((LeaderEpoch(self.epochs[i].0), Offset(end)))
    }

    /// What the leader answers to OffsetForLeaderEpoch(`epoch`).
    fn answer(&self, epoch: LeaderEpoch) -> EpochEndOffset {
        match self.end_offset_for(epoch) {
            Some((e, end)) => EpochEndOffset {
                leader_epoch: e,
                end_offset: end,
            },
            None => UNDEFINED,
        }
    }

    /// `Log::truncate_to`: records from `offset` on go, and so do epochs starting at or
    /// after the new end.
    fn truncate_to(&mut self, offset: Offset) {
        self.end = self.end.min(offset.0);
        let end = self.end;
        self.epochs.retain(|(_, start)| *start < end);
    }

    fn decide(&self, hw: i64, leader: EpochEndOffset) -> Truncation {
        truncation(
            Offset(self.end),
            Offset(hw),
            |e| self.end_offset_for(e),
            leader,
        )
    }
}

const UNDEFINED: EpochEndOffset = EpochEndOffset {
    leader_epoch: LeaderEpoch(-1),
    end_offset: Offset(-1),
};

fn answer(epoch: i32, end: i64) -> EpochEndOffset {
    EpochEndOffset {
        leader_epoch: LeaderEpoch(epoch),
        end_offset: Offset(end),
    }
}

fn done(at: i64) -> Truncation {
    Truncation::Done {
        truncate_to: Offset(at),
    }
}

#[test]
fn an_epoch_both_logs_know_ends_at_the_shorter_of_the_two() {
    let follower = ModelLog::new(&[(1, 0), (3, 10)], 20);
    assert_eq!(follower.decide(5, answer(3, 15)), done(15));
    assert_eq!(
        follower.decide(5, answer(3, 25)),
        done(20),
        "never past this log's end"
    );
}

#[test]
fn an_epoch_the_follower_never_had_cuts_back_to_its_older_epoch_and_asks_again() {
    let follower = ModelLog::new(&[(1, 0), (4, 10)], 20);
    assert_eq!(
        follower.decide(5, answer(2, 12)),
        Truncation::Again {
            truncate_to: Offset(10),
            ask_with: LeaderEpoch(1),
        }
    );
}

#[test]
fn an_empty_trailing_epoch_does_not_end_the_truncation() {
    // Epoch 1's records 8 and 9 diverge from the new leader's epoch 2 there; this broker
    // then led epoch 3 without writing.
    let follower = ModelLog::new(&[(1, 0), (3, 10)], 10);
    assert_eq!(
        follower.decide(10, answer(2, 12)),
        Truncation::Again {
            truncate_to: Offset(10),
            ask_with: LeaderEpoch(1),
        },
        "nothing to cut yet, but epoch 1 must be checked next"
    );
}

#[test]
fn an_undefined_answer_keeps_only_the_committed_records() {
    let follower = ModelLog::new(&[(4, 0)], 20);
    assert_eq!(follower.decide(7, UNDEFINED), done(7));
}

#[test]
fn an_offset_without_an_epoch_bounds_the_log() {
    let follower = ModelLog::new(&[(4, 0)], 20);
    assert_eq!(follower.decide(7, answer(-1, 12)), done(12));
    assert_eq!(follower.decide(7, answer(-1, 30)), done(20));
}

#[test]
fn a_follower_tracking_no_epoch_that_old_takes_the_leaders_end() {
    let untracked = ModelLog::new(&[], 20);
    assert_eq!(untracked.decide(7, answer(2, 12)), done(12));
}

/// Drives the whole exchange between a follower and its new leader as the fetcher does, and
/// returns the follower's log once truncation is done.
fn truncate_against(mut follower: ModelLog, leader: &ModelLog, hw: i64) -> ModelLog {
    // Each round asks with a strictly older epoch, so the exchange ends.
    for _ in 0..=follower.epochs.len() {
        let Some(&(latest, _)) = follower.epochs.last() else {
            return follower;
        };
        match follower.decide(hw, leader.answer(LeaderEpoch(latest))) {
            Truncation::Done { truncate_to } => {
                follower.truncate_to(truncate_to);
                return follower;
            }
            Truncation::Again {
                truncate_to,
                ask_with,
            } => {
                follower.truncate_to(truncate_to);
                assert_eq!(
                    follower.epochs.last().map(|e| e.0),
                    Some(ask_with.0),
                    "the next request's epoch is the cache's latest"
                );
                assert!(ask_with.0 < latest, "an older epoch each round");
            }
        }
    }
    panic!("truncation did not end: {follower:?}")
}

#[test]
fn truncation_ends_at_the_last_offset_both_logs_wrote_in_the_same_epoch() {
    // The follower led epochs 3 and 5 (5 empty); the leader led 2 and 4 and leads 6 now.
    let follower = ModelLog::new(&[(1, 0), (3, 5), (5, 10)], 10);
    let leader = ModelLog::new(&[(1, 0), (2, 7), (4, 12), (6, 15)], 15);
    let truncated = truncate_against(follower, &leader, 3);
    assert_eq!(truncated, ModelLog::new(&[(1, 0)], 5));

    // Same history, except that the follower's epoch 1 ran past the leader's.
    let follower = ModelLog::new(&[(1, 0), (5, 9)], 9);
    let leader = ModelLog::new(&[(1, 0), (2, 7), (6, 15)], 15);
    assert_eq!(
        truncate_against(follower, &leader, 3),
        ModelLog::new(&[(1, 0)], 7)
    );

    // Nothing diverged: nothing goes.
    let follower = ModelLog::new(&[(1, 0), (2, 7)], 12);
    let leader = ModelLog::new(&[(1, 0), (2, 7), (4, 14)], 20);
    // (A leader's cache always holds its current epoch, at least as new as any follower's.)
    assert_eq!(truncate_against(follower.clone(), &leader, 3), follower);
}
