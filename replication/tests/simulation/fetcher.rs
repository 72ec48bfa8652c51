//! The follower side, mirroring broker/src/cluster/fetcher.rs: a follower of a new leader
//! epoch first truncates with OffsetForLeaderEpoch (the real `follower::truncation` decides
//! where), then fetches from its log end and appends what the leader sends. The real
//! fetcher batches every partition of one leader into one request; here each partition has
//! its own request in flight, which only adds interleavings.

use sluice_replication::follower::{self, EpochEndOffset, Truncation};
use sluice_replication::image::NO_LEADER;

use crate::broker::Broker;
use crate::config::Config;
use crate::history::{Event, History};
use crate::net::{Envelope, FetchData, Msg};
use crate::partition::codes;

/// The short rest after a refusal that newer metadata on either side resolves
/// (fetcher.rs `METADATA_RACE_BACKOFF`).
const METADATA_RACE_BACKOFF_MS: i64 = 20;
/// Largest number of records one fetch returns (`replica.fetch.max.bytes`, in records).
pub const FETCH_MAX_RECORDS: i64 = 25;

/// One followed partition's fetcher state.
#[derive(Debug, Clone, Default)]
pub struct FetchState {
    /// The request in flight: id, when it times out, and the leader epoch it was sent at.
    pub waiting: Option<(u64, i64, i32)>,
    /// Resting (after a refusal or an empty answer) until then.
    pub rest_until: i64,
    /// The epoch of the first request (for `Mutations::fetch_at_first_epoch`).
    pub first_epoch: Option<i32>,
}

/// fetcher.rs `rest_after`.
fn rest_after(code: i16, backoff: i64) -> i64 {
    match code {
        codes::UNKNOWN_TOPIC_OR_PARTITION
        | codes::NOT_LEADER_OR_FOLLOWER
        | codes::UNKNOWN_LEADER_EPOCH
        | codes::FENCED_LEADER_EPOCH => backoff.min(METADATA_RACE_BACKOFF_MS),
        _ => backoff,
    }
}

impl Broker {
    /// fetcher.rs `run` and `fetch_once`: for each followed partition with nothing in
    /// flight, an OffsetForLeaderEpoch if it must truncate, else a Fetch from its log end.
    pub fn fetcher_tick(&mut self, now: i64, cfg: &Config, out: &mut Vec<Envelope>) {
        let followed: Vec<i32> = self
            .parts
            .iter()
            .filter(|(_, p)| p.r.leader != self.id && p.r.leader != NO_LEADER)
            .map(|(i, _)| *i)
            .collect();
        for i in followed {
            let st = self.fetch.entry(i).or_default();
            if let Some((_, deadline, _)) = st.waiting {
                if now < deadline {
                    continue;
                }
                // Unanswered: the connection is dropped and the fetcher backs off.
                st.waiting = None;
                st.rest_until = now + cfg.fetch_backoff_ms;
            }
            if now < st.rest_until {
                continue;
            }
            let p = &mut self.parts.get_mut(&i).expect("followed partition");
            let (leader, mut epoch) = (p.r.leader, p.r.leader_epoch);
            if cfg.mutations.fetch_at_first_epoch {
                epoch = *st.first_epoch.get_or_insert(epoch);
            }
            let msg = if p.r.needs_truncation {
                match p.log.latest_epoch() {
                    // `fetcher::truncate_to_high_watermark`: no epoch to compare, so only
                    // what was committed is known to be the leader's too.
                    None => {
                        let target = p.log.high_watermark().min(p.log.log_end());
                        p.truncate_as_follower(epoch, target, true);
                        continue;
                    }
                    Some(latest) => Msg::EpochQuery {
                        partition: i,
                        current_leader_epoch: epoch,
                        leader_epoch: latest.0,
                    },
                }
            } else {
                Msg::Fetch {
                    partition: i,
                    // -1 until registered: the leader refuses it, the next round carries it.
                    broker_epoch: self.broker_epoch.unwrap_or(-1),
                    fetch_offset: p.log.log_end(),
                    log_start: p.log.log_start(),
                    current_leader_epoch: epoch,
                }
            };
            let req = self.req();
            self.fetch.entry(i).or_default().waiting =
                Some((req, now + cfg.request_timeout_ms, epoch));
            out.push(self.envelope(leader, req, msg));
        }
    }

    /// Takes the request `req` of partition `i` off the fetcher, if it is the one in flight;
    /// returns the leader epoch it was sent at.
    fn answered(&mut self, i: i32, req: u64) -> Option<i32> {
        let st = self.fetch.get_mut(&i)?;
        match st.waiting {
            Some((r, _, epoch)) if r == req => {
                st.waiting = None;
                Some(epoch)
            }
            _ => None,
        }
    }

    fn rest(&mut self, i: i32, until: i64) {
        self.fetch.entry(i).or_default().rest_until = until;
    }

    /// fetcher.rs `fetch_once`, the answer side: append (`append_replicated`), or on
    /// OFFSET_OUT_OF_RANGE restart at the leader's log start or truncate again.
    pub fn on_fetch_reply(
        &mut self,
        now: i64,
        cfg: &Config,
        req: u64,
        i: i32,
        result: Result<FetchData, (i16, i64)>,
        h: &mut History,
    ) {
        let Some(epoch) = self.answered(i, req) else {
            return;
        };
        let Some(p) = self.parts.get_mut(&i) else {
            return;
        };
        match result {
            Ok(data) => {
                let from = p.log.log_end();
                match p.append_replicated(epoch, &data.records, data.high_watermark, data.log_start)
                {
                    Ok(_) if data.records.is_empty() => {
                        // The leader would hold an empty fetch up to replica.fetch.wait.max.ms.
                        self.rest(i, now + cfg.fetch_backoff_ms / 2);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        h.push(
                            now,
                            Event::Fault(format!(
                                "broker {} cannot append replicated records of {i} at {from}: {e}",
                                self.id
                            )),
                        );
                        self.rest(i, now + cfg.fetch_backoff_ms);
                    }
                }
            }
            Err((codes::OFFSET_OUT_OF_RANGE, leader_log_start)) => {
                let end = p.log.log_end();
                if leader_log_start > end {
                    p.restart_as_follower(epoch, leader_log_start);
                } else {
                    p.mark_needs_truncation(epoch);
                }
                self.rest(i, now + cfg.fetch_backoff_ms);
            }
            Err((code, _)) => self.rest(i, now + rest_after(code, cfg.fetch_backoff_ms)),
        }
    }

    /// fetcher.rs `on_epoch_answer`: truncate where the real rule says, at the epoch the
    /// question was asked at.
    #[allow(clippy::too_many_arguments)]
    pub fn on_epoch_reply(
        &mut self,
        now: i64,
        cfg: &Config,
        req: u64,
        i: i32,
        error: i16,
        answer: EpochEndOffset,
        h: &mut History,
    ) {
        let Some(epoch) = self.answered(i, req) else {
            return;
        };
        if error != 0 {
            self.rest(i, now + rest_after(error, cfg.fetch_backoff_ms));
            return;
        }
        let Some(p) = self.parts.get_mut(&i) else {
            return;
        };
        let end = p.log.log_end();
        let log = &p.log;
        let (target, done) = match follower::truncation(
            sluice_storage::Offset(end),
            sluice_storage::Offset(log.high_watermark()),
            |e| log.end_offset_for_epoch(e),
            answer,
        ) {
            Truncation::Done { truncate_to } => (truncate_to.0, true),
            Truncation::Again { truncate_to, .. } => (truncate_to.0, false),
        };
        if p.truncate_as_follower(epoch, target, done) && target < end {
            h.push(
                now,
                Event::Truncated {
                    broker: self.id,
                    partition: i,
                    from: end,
                    to: target,
                },
            );
        }
    }
}
