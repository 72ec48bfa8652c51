//! An in-memory replica log with the semantics of `sluice_storage::Log` that replication
//! depends on: offsets, a leader-epoch cache (storage/src/leader_epoch.rs), the high
//! watermark, the log start, and a flush point below which records survive a crash.

use sluice_storage::{LeaderEpoch, Offset};

/// One record: a payload id written by a producer at a leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Record {
    /// Its offset.
    pub offset: i64,
    /// The leader epoch it was appended at (the batch header's partition leader epoch).
    pub epoch: i32,
    /// What the producer sent: unique per produced record.
    pub payload: u64,
}

/// One epoch-cache entry: `(epoch, start offset)`, and whether it is in the checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EpochEntry {
    epoch: i32,
    start: i64,
    /// Written to `leader-epoch-checkpoint`: entries assigned by appends only reach it at
    /// the next checkpoint write; until then a crash rebuilds them from surviving batches.
    durable: bool,
}

/// The log of one replica on one broker. Survives the broker's crashes, minus what was
/// not flushed.
#[derive(Debug, Clone, Default)]
pub struct SimLog {
    records: Vec<Record>,
    log_start: i64,
    high_watermark: i64,
    epochs: Vec<EpochEntry>,
    /// Records below this offset are on disk.
    flushed: i64,
    /// The high watermark in the checkpoint file, if one was written.
    checkpointed_hw: Option<i64>,
    /// Bumped on every truncation and crash: checkers re-verify from the cut.
    pub truncations: u64,
}

impl SimLog {
    /// `LogOffsets::log_start`.
    pub fn log_start(&self) -> i64 {
        self.log_start
    }

    /// `LogOffsets::log_end`.
    pub fn log_end(&self) -> i64 {
        self.log_start + self.records.len() as i64
    }

    /// `LogOffsets::high_watermark`.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The record at `offset`, if the log holds it.
    pub fn get(&self, offset: i64) -> Option<&Record> {
        let i = offset.checked_sub(self.log_start)?;
        usize::try_from(i).ok().and_then(|i| self.records.get(i))
    }

    /// Records in `from..to` (clamped to what the log holds).
    pub fn range(&self, from: i64, to: i64) -> &[Record] {
        let lo = (from.max(self.log_start) - self.log_start) as usize;
        let hi = (to.min(self.log_end()) - self.log_start).max(0) as usize;
        if lo >= hi {
            &[]
        } else {
            &self.records[lo..hi]
        }
    }

    /// `LeaderEpochCache::assign`: `epoch` starts at `offset` if newer than the latest.
    fn assign(&mut self, epoch: i32, offset: i64, durable: bool) -> bool {
        if epoch < 0 || self.epochs.last().is_some_and(|e| e.epoch >= epoch) {
            return false;
        }
        // An epoch never starts before an earlier one's start.
        self.epochs.retain(|e| e.start < offset);
        self.epochs.push(EpochEntry {
            epoch,
            start: offset,
            durable,
        });
        true
    }

    /// Every entry is in the checkpoint now (storage writes the whole cache).
    fn write_checkpoints(&mut self) {
        for e in &mut self.epochs {
            e.durable = true;
        }
    }

    /// `Log::append` as leader: the records get the next offsets and `epoch`. Returns the
    /// first and last offsets.
    pub fn append_as_leader(&mut self, epoch: i32, payloads: &[u64]) -> (i64, i64) {
        let first = self.log_end();
        self.assign(epoch, first, false);
        for p in payloads {
            let offset = self.log_end();
            self.records.push(Record {
                offset,
                epoch,
                payload: *p,
            });
        }
        (first, self.log_end() - 1)
    }

    /// `Log::append` with `AppendOrigin::Replication`: records keep the leader's offsets and
    /// epochs; each batch's epoch goes into the cache. The records must start at the log end.
    pub fn append_replicated(&mut self, records: &[Record]) -> Result<(), String> {
        for r in records {
            if r.offset != self.log_end() {
                return Err(format!(
                    "replicated record at {} does not continue the log ending at {}",
                    r.offset,
                    self.log_end()
                ));
            }
            self.assign(r.epoch, r.offset, false);
            self.records.push(*r);
        }
        Ok(())
    }

    /// `Log::set_high_watermark`: clamped into `[log_start, log_end]`.
    pub fn set_high_watermark(&mut self, hw: i64) {
        self.high_watermark = hw.clamp(self.log_start, self.log_end());
    }

    /// `Log::checkpointed_high_watermark`.
    pub fn checkpointed_high_watermark(&self) -> Option<i64> {
        self.checkpointed_hw
            .map(|hw| hw.clamp(self.log_start, self.log_end()))
    }

    /// `Log::latest_epoch`.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.last().map(|e| LeaderEpoch(e.epoch))
    }

    /// `Log::assign_epoch`: `epoch` starts at the log end (a new leader, before appending);
    /// the checkpoint is written at once.
    pub fn assign_epoch(&mut self, epoch: i32) {
        if self.assign(epoch, self.log_end(), true) {
            self.write_checkpoints();
        }
    }

    /// `Log::end_offset_for_epoch` (`LeaderEpochCache::end_offset_for`): the largest epoch
    /// at or below `epoch` and where it ends.
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let latest = self.epochs.last()?.epoch;
        if epoch.0 < 0 || epoch.0 > latest {
            return None;
        }
        let Some(i) = self.epochs.iter().rposition(|e| e.epoch <= epoch.0) else {
            return Some((epoch, Offset(self.epochs[0].start)));
        };
        let end = self
            .epochs
            .get(i + 1)
            .map_or(self.log_end(), |next| next.start);
        Some((LeaderEpoch(self.epochs[i].epoch), Offset(end)))
    }

    /// `Log::truncate_to` (storage/src/log/maintenance.rs): removes records at or after
    /// `offset`. At or past the log end no record goes, but epochs starting at or after the
    /// log end do (an epoch assigned as leader and never written in).
    pub fn truncate_to(&mut self, offset: i64) {
        let end = self.log_end();
        if offset >= end {
            let before = self.epochs.len();
            self.epochs.retain(|e| e.start < end);
            if before != self.epochs.len() {
                self.write_checkpoints();
            }
            return;
        }
        if offset < self.log_start {
            self.records.clear();
            self.log_start = offset;
        } else {
            self.records.truncate((offset - self.log_start) as usize);
        }
        self.epochs.retain(|e| e.start < offset);
        self.high_watermark = self.high_watermark.min(offset);
        self.flushed = self.flushed.min(offset);
        self.truncations += 1;
        self.write_checkpoints();
    }

    /// `Log::truncate_fully_and_start_at`: empty, restarted at `offset`.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) {
        self.records.clear();
        self.epochs.clear();
        self.log_start = offset;
        self.high_watermark = offset;
        self.flushed = offset;
        self.truncations += 1;
        self.write_checkpoints();
    }

    /// A flush: records, the epoch checkpoint and the high-watermark checkpoint reach disk.
    pub fn flush(&mut self) {
        self.flushed = self.log_end();
        self.checkpointed_hw = Some(self.high_watermark);
        self.write_checkpoints();
    }

    /// Where a crash may cut the log: from the last flush to the log end.
    pub fn unflushed(&self) -> (i64, i64) {
        (self.flushed, self.log_end())
    }

    /// A crash keeping records below `keep_to` (at least the flushed ones), then recovery
    /// (storage/src/log/open.rs `rebuild_state`): checkpointed epochs starting past the new
    /// end go, and epochs only the lost batches carried are not rebuilt.
    pub fn crash(&mut self, keep_to: i64) {
        let keep_to = keep_to.clamp(self.flushed, self.log_end());
        if keep_to < self.log_end() {
            self.records.truncate((keep_to - self.log_start) as usize);
            self.truncations += 1;
        }
        self.epochs
            .retain(|e| e.start < keep_to || (e.durable && e.start == keep_to));
        self.flushed = self.log_end();
    }

    /// The log opened by a new process (`ReplicaManager::host`): the high watermark resumes
    /// from its checkpoint, or from the log start.
    pub fn reopen(&mut self) {
        self.high_watermark = self.checkpointed_high_watermark().unwrap_or(self.log_start);
    }
}
