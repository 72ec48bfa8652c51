//! Log compaction's file work: pick the cleanable segments, clean each against one offset
//! map (`cleaner`), and swap the cleaned file in.
//!
//! A pass runs when sealed segments were written since the last one, or when the delete
//! horizon of a kept tombstone has passed (KIP-534; see `cleaner::clean`).
//!
//! Cleanable: sealed segments wholly below the high watermark whose newest record is older
//! than `min.compaction.lag.ms`; the active segment is never compacted. A swap writes
//! `<base>.log.cleaned`, removes the old indexes (so a crash can only leave a segment whose
//! indexes are rebuilt), renames over the old `.log`, and opens the result with recovery.
//! Readers holding the old segment keep reading its unlinked file through their mapping.

use std::sync::Arc;

use super::{params, Log, Writer};
use crate::cleaner::{self, CleanParams, OffsetMap};
use crate::error::{Result, StorageError};
use crate::segment::{file_name, LogSegment};

impl Log {
    /// One compaction pass; returns the number of records removed.
    pub(crate) fn compact(&self, w: &mut Writer, now: i64) -> Result<u64> {
        let config = self.config();
        let hw = self.offsets().high_watermark;
        let segs: Vec<Arc<LogSegment>> = {
            let all = self.segments.read();
            let n = all.len();
            all.values()
                .take(n.saturating_sub(1))
                .take_while(|s| {
                    s.next_offset() <= hw
                        && s.max_timestamp() <= now.saturating_sub(config.min_compaction_lag_ms)
                })
                .cloned()
                .collect()
        };
        let Some(last) = segs.last() else {
            return Ok(0);
        };
        let horizon_due = w.next_delete_horizon.is_some_and(|at| now >= at);
        if last.next_offset() <= w.cleaned_upto && !horizon_due {
            // Nothing dirty since the last pass and no tombstone due for removal (Kafka's
            // cleaner also picks a log whose delete horizon passed, KIP-534).
            return Ok(0);
        }
        let datas = segs
            .iter()
            .map(|s| s.all_bytes())
            .collect::<Result<Vec<_>>>()?;
        let map = OffsetMap::build(datas.iter().map(|d| &d[..]))
            .map_err(|e| self.corrupt_in(&segs[0], e))?;
        let clean_params = CleanParams {
            now_ms: now,
            delete_retention_ms: config.delete_retention_ms,
            last_batch_of_producer: w.producers.last_batch_offsets(),
        };
        let mut removed = 0;
        let mut next_horizon: Option<i64> = None;
        for (seg, data) in segs.iter().zip(&datas) {
            let (cleaned, stats) =
                cleaner::clean(data, &map, &clean_params).map_err(|e| self.corrupt_in(seg, e))?;
            if let Some(at) = stats.next_delete_horizon {
                next_horizon = Some(next_horizon.map_or(at, |n| n.min(at)));
            }
            if !stats.changed() {
                continue;
            }
            self.swap_in(w, seg, &cleaned)?;
            removed += stats.removed;
        }
        w.cleaned_upto = last.next_offset();
        w.next_delete_horizon = next_horizon;
        if removed > 0 {
            tracing::info!(partition = %self.tp, removed, "compacted");
        }
        Ok(removed)
    }

    fn swap_in(&self, w: &mut Writer, old: &Arc<LogSegment>, cleaned: &[u8]) -> Result<()> {
        let base = old.base_offset();
        old.retire()?;
        if cleaned.is_empty() {
            self.segments.write().remove(&base.0);
            return self.delete_segment(w, old);
        }
        let tmp = self.dir.join(format!("{}.cleaned", file_name(base, "log")));
        crate::io::write_atomic(&tmp, cleaned)?;
        for ext in ["index", "timeindex"] {
            let p = self.dir.join(file_name(base, ext));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(&p, e)),
            }
        }
        let log_path = self.dir.join(file_name(base, "log"));
        std::fs::rename(&tmp, &log_path).map_err(|e| StorageError::io(&log_path, e))?;
        crate::io::fsync_dir(&self.dir)?;
        let (seg, _) = LogSegment::open(
            &self.dir,
            base,
            params(&self.config()),
            Arc::clone(&self.budget),
            true,
            super::open::now_ms(),
            &mut || Ok(()),
        )?;
        self.segments.write().insert(base.0, seg);
        Ok(())
    }

    fn corrupt_in(&self, seg: &LogSegment, e: crate::record::RecordError) -> StorageError {
        StorageError::Corrupt {
            path: seg.log_path().to_path_buf(),
            position: 0,
            reason: format!("compaction cannot decode records: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::config::CleanupPolicy;
    use crate::log::tests::{open, small_config};
    use crate::record::{records_section, BatchBuilder, RecordIter};
    use crate::{AppendOptions, Offset, ReadOptions, StorageError};

    fn read_records(log: &crate::Log) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut at = log.offsets().log_start;
        while at < log.offsets().log_end {
            let d = log.read(&ReadOptions::from(at)).expect("read");
            if d.records.is_empty() {
                break;
            }
            for (pos, h) in crate::batch::BatchIter::new(&d.records) {
                let (_, recs) =
                    records_section(&d.records[pos..pos + h.size()], 1 << 20).expect("batch");
                for r in RecordIter::new(&recs, h.record_count as usize) {
                    let r = r.expect("record");
                    out.push((
                        h.base_offset + r.offset_delta as i64,
                        r.key.expect("key").to_vec(),
                        r.value.map(<[u8]>::to_vec),
                    ));
                }
                at = Offset(h.next_offset());
            }
        }
        out
    }

    #[test]
    fn compaction_keeps_the_latest_value_per_key_across_segments_and_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = small_config();
        config.cleanup_policy = CleanupPolicy::Compact;
        config.delete_retention_ms = 1000;
        let log = open(dir.path(), config.clone());
        let mut model = BTreeMap::new();
        for i in 0..200i64 {
            let key = format!("k{}", i % 7).into_bytes();
            let value = (i % 11 != 0).then(|| vec![b'v'; 100 + i as usize % 50]);
            let b = BatchBuilder::new()
                .record(Some(&key), value.as_deref(), 5_000 + i)
                .build();
            let info = log.append(&b, &AppendOptions::default()).expect("append");
            model.insert(key, (info.first_offset.0, value));
        }
        let before = log.segment_count();
        let active_base = log
            .segments
            .read()
            .keys()
            .next_back()
            .copied()
            .expect("active");
        let removed = log.housekeeping(6_000).expect("hk").records_compacted;
        assert!(removed > 100, "removed {removed}");
        let got = read_records(&log);
        // Below the active segment, exactly the latest record of each key survives.
        let cleaned: Vec<_> = got.iter().filter(|r| r.0 < active_base).cloned().collect();
        let mut keys = std::collections::BTreeSet::new();
        for (o, k, v) in &cleaned {
            assert!(keys.insert(k.clone()), "key {k:?} twice");
            let latest = &model[k];
            if latest.0 < active_base {
                assert_eq!((o, v), (&latest.0, &latest.1));
            }
        }
        assert!(log.segment_count() <= before);
        // Offsets never change; the log end is where it was.
        assert_eq!(log.offsets().log_end, Offset(200));
        drop(log);
        let log = open(dir.path(), config);
        assert_eq!(
            read_records(&log),
            got,
            "compacted log survives reopen unchanged"
        );
        let b = BatchBuilder::new().record(None, Some(b"no key"), 1).build();
        assert!(
            matches!(
                log.append(&b, &AppendOptions::default()),
                Err(StorageError::InvalidRecord { records, .. }) if records.len() == 1 && records[0].0 == 0
            ),
            "compacted topics need keys"
        );
    }
}
