//! The write path: validate, deduplicate idempotent retries, assign offsets, copy into the
//! active segment's mapping, then publish. Rolls the segment when it is full or old.

use std::sync::Arc;

use super::open::now_ms;
use super::{params, Log, Writer};
use crate::batch::{self, BatchHeader};
use crate::error::{Result, StorageError};
use crate::producer_state::SequenceCheck;
use crate::segment::{LogSegment, PlacedBatch, WriteMode};
use crate::types::{LeaderEpoch, Offset, TimestampType};

/// Who is appending, which decides validation and offset assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppendOrigin {
    /// A producer: full validation, sequence checks, the log assigns offsets and leader epoch.
    #[default]
    Client,
    /// A follower copying its leader: batches keep their offsets and epochs (CRC still checked).
    Replication,
    /// The broker's own coordinators: like a client, but control batches are allowed.
    Coordinator,
}

/// Parameters of one append.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppendOptions {
    /// Epoch of the current leader, written into each batch (client and coordinator appends).
    pub leader_epoch: LeaderEpoch,
    /// Who is appending.
    pub origin: AppendOrigin,
    /// The broker's clock, for LogAppendTime and `segment.ms`; `0` means "read the system clock".
    pub now_ms: i64,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub first_offset: Offset,
    /// Offset of the last record appended.
    pub last_offset: Offset,
    /// Largest timestamp appended.
    pub max_timestamp: i64,
    /// The broker time written into the batches, when the topic uses LogAppendTime.
    pub log_append_time: Option<i64>,
    /// Records appended.
    pub record_count: u32,
    /// Bytes appended.
    pub bytes: u32,
    /// Log start offset after the append.
    pub log_start_offset: Offset,
    /// True when the batch was an idempotent producer's retry of data already in the log:
    /// nothing was written and the offsets are those of the original append.
    pub duplicate: bool,
}

impl Log {
    /// Appends one or more v2 record batches laid end to end, exactly as a Produce request
    /// carries them. Either all batches are appended or none.
    pub fn append(&self, batches: &[u8], opts: &AppendOptions) -> Result<AppendInfo> {
        self.check_writable()?;
        let now = if opts.now_ms == 0 {
            now_ms()
        } else {
            opts.now_ms
        };
        let config = self.config();
        let headers = parse_all(batches, opts.origin, config.max_message_bytes)?;
        if opts.origin == AppendOrigin::Client {
            let compacted = config.cleanup_policy.compacts();
            let timestamps = (config.message_timestamp_type == TimestampType::CreateTime)
                .then_some(super::validation::TimestampBounds {
                    now,
                    before_max_ms: config.message_timestamp_before_max_ms,
                    after_max_ms: config.message_timestamp_after_max_ms,
                });
            super::validation::check_client_records(
                batches, &headers, compacted, timestamps, &self.tp,
            )?;
        }
        // The topic's codec, when it has one: batches in another are rewritten into it, and
        // their size is checked again as Kafka does (it changed).
        let recompressed = match config.recompression() {
            Some((codec, level)) if opts.origin == AppendOrigin::Client => {
                super::recompress::recompress(batches, &headers, codec, level)?
            }
            _ => None,
        };
        let (batches, headers) = match &recompressed {
            Some(rewritten) => (
                &rewritten[..],
                parse_all(rewritten, opts.origin, config.max_message_bytes)?,
            ),
            None => (batches, headers),
        };
        let mut w = self.writer.lock();
        self.check_writable()?;
        let offsets = self.offsets();

        if opts.origin != AppendOrigin::Replication {
            if let Some(info) = self.check_sequences(&w, &headers, offsets.log_start)? {
                return Ok(info);
            }
        }

        let append_time = (config.message_timestamp_type == TimestampType::LogAppendTime
            && opts.origin != AppendOrigin::Replication)
            .then_some(now);
        let restart_at = if opts.origin == AppendOrigin::Replication {
            restart_below_log_start(&offsets, &headers)
        } else {
            None
        };
        if let Some(base) = restart_at {
            tracing::info!(partition = %self.tp, log_start = %offsets.log_start, from = base.0,
                "the first replicated batch starts below this empty log's start; starting the log at its base");
            self.start_over_locked(&mut w, base, now)?;
        }
        let mut placed = Vec::with_capacity(headers.len());
        let mut next = restart_at.unwrap_or(offsets.log_end);
        let mut records = 0u32;
        for (at, h) in &headers {
            let base = match opts.origin {
                AppendOrigin::Replication => {
                    if h.base_offset < next.0 {
                        return Err(StorageError::CorruptRecord(format!(
                            "replicated batch at offset {} is below the log end {next}",
                            h.base_offset
                        )));
                    }
                    Offset(h.base_offset)
                }
                _ => next,
            };
            let last = base.plus(h.last_offset_delta as i64);
            placed.push(PlacedBatch {
                at: *at,
                len: h.size(),
                base_offset: base,
                last_offset: last,
                max_timestamp: append_time.unwrap_or(h.max_timestamp),
            });
            next = last.plus(1);
            records += h.record_count.max(0) as u32;
        }
        let (Some(first), Some(last)) = (placed.first().copied(), placed.last().copied()) else {
            return Err(StorageError::CorruptRecord(
                "no record batch in append".into(),
            ));
        };

        let epoch = opts.leader_epoch.0;
        let origin = opts.origin;
        let mode = WriteMode::for_flush_policy(config.flush_messages, config.flush_ms);
        // Usually one run; a replicated append whose offsets jump further than a segment can
        // index (see `MAX_RELATIVE_OFFSET`) goes into several segments, one run each, and each
        // run is published before the next, so a failure leaves a log ending between batches.
        for run in runs_fitting_a_segment(&placed) {
            let (run_first, run_last) = (placed[run.start], placed[run.end - 1]);
            let bytes = &batches[run_first.at..run_last.at + run_last.len];
            let run_placed: Vec<PlacedBatch> = placed[run.clone()]
                .iter()
                .map(|p| PlacedBatch {
                    at: p.at - run_first.at,
                    ..*p
                })
                .collect();
            let mut active = self.active()?;
            let incoming_ts = run_placed
                .iter()
                .map(|p| p.max_timestamp)
                .max()
                .unwrap_or(-1);
            if self.should_roll(
                &active,
                bytes.len(),
                run_first.base_offset,
                run_last.last_offset,
                (now, incoming_ts),
                config.segment_ms,
            )? {
                active = self.roll(&mut w, run_first.base_offset, bytes.len(), now)?;
            }
            active.append(bytes, &run_placed, mode, |b, p| {
                if origin != AppendOrigin::Replication {
                    batch::set_offset_and_epoch(b, p.base_offset.0, epoch);
                    if let Some(t) = append_time {
                        batch::set_log_append_time(b, t);
                    }
                }
            })?;
            for ((_, h), p) in headers[run.clone()].iter().zip(&placed[run.clone()]) {
                if !h.is_control() {
                    w.producers
                        .update(h, p.base_offset, p.last_offset, p.max_timestamp);
                }
                let batch_epoch = if origin == AppendOrigin::Replication {
                    LeaderEpoch(h.partition_leader_epoch)
                } else {
                    opts.leader_epoch
                };
                w.epochs.assign(batch_epoch, p.base_offset);
            }
            if run.end < placed.len() {
                self.publish(|o| o.log_end = run_last.last_offset.plus(1));
            }
        }
        self.publish(|o| {
            o.log_end = next;
            if let Some(base) = restart_at {
                // The log start stays where the leader put it, inside the first batch.
                o.recovery_point = o.recovery_point.min(base);
            }
        });
        if restart_at.is_some() {
            // Recovery must scan the restarted segment from its base after a crash.
            self.write_checkpoints(&mut w, now)?;
        }

        w.unflushed_records += records as i64;
        let since = *w.first_unflushed_ms.get_or_insert(now);
        if w.unflushed_records >= config.flush_messages
            || now.saturating_sub(since) >= config.flush_ms
        {
            self.flush_locked(&mut w, now, false)?;
        }
        Ok(AppendInfo {
            first_offset: first.base_offset,
            last_offset: last.last_offset,
            max_timestamp: placed.iter().map(|p| p.max_timestamp).max().unwrap_or(-1),
            log_append_time: append_time,
            record_count: records,
            bytes: batches.len() as u32,
            log_start_offset: self.offsets().log_start,
            duplicate: false,
        })
    }

    /// Sequence and epoch checks for idempotent producers. `Some` means a duplicate retry.
    fn check_sequences(
        &self,
        w: &Writer,
        headers: &[(usize, BatchHeader)],
        log_start: Offset,
    ) -> Result<Option<AppendInfo>> {
        for (_, h) in headers {
            if !h.has_producer_id() || h.base_sequence < 0 || h.is_control() {
                continue;
            }
            match w.producers.check(h) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate {
                    first_offset,
                    last_offset,
                } if headers.len() == 1 => {
                    return Ok(Some(AppendInfo {
                        first_offset: Offset(first_offset),
                        last_offset: Offset(last_offset),
                        max_timestamp: h.max_timestamp,
                        log_append_time: None,
                        record_count: h.record_count.max(0) as u32,
                        bytes: 0,
                        log_start_offset: log_start,
                        duplicate: true,
                    }));
                }
                SequenceCheck::Duplicate { .. } => {
                    return Err(StorageError::CorruptRecord(
                        "duplicate batch inside a multi-batch append".into(),
                    ));
                }
                SequenceCheck::Fenced { current } => {
                    return Err(StorageError::InvalidProducerEpoch {
                        partition: self.tp.clone(),
                        producer_id: h.producer_id,
                        current,
                        received: h.producer_epoch,
                    });
                }
                SequenceCheck::OutOfOrder { expected } => {
                    return Err(StorageError::OutOfOrderSequence {
                        partition: self.tp.clone(),
                        producer_id: h.producer_id,
                        expected,
                        received: h.base_sequence,
                    });
                }
            }
        }
        Ok(None)
    }

    fn should_roll(
        &self,
        active: &LogSegment,
        len: usize,
        first: Offset,
        last: Offset,
        (now, incoming_ts): (i64, i64),
        segment_ms: i64,
    ) -> Result<bool> {
        let overflow =
            last.0 - active.base_offset().0 > MAX_RELATIVE_OFFSET || first < active.base_offset();
        if active.is_empty() {
            // An empty segment only rolls to get a larger mapping or a closer base offset.
            return Ok(overflow || !active.has_room(len)?);
        }
        Ok(overflow
            || !active.has_room(len)?
            || active.time_waited_for_roll(now, incoming_ts) >= segment_ms)
    }

    /// Seals the active segment and starts a new one at `base`.
    pub(crate) fn roll(
        &self,
        w: &mut Writer,
        base: Offset,
        min_capacity: usize,
        now: i64,
    ) -> Result<Arc<LogSegment>> {
        let old = self.active()?;
        if old.is_empty() {
            self.segments.write().remove(&old.base_offset().0);
            self.delete_segment(w, &old)?;
        } else {
            // Made durable later, off the append path (see `flush_rolled`): flushing a whole
            // segment here would stall the partition's producers for as long as it takes.
            old.seal().map_err(|e| self.poison_with(e))?;
            w.sealed_unflushed_upto = Some(base);
        }
        let seg = LogSegment::create(
            &self.dir,
            base,
            params(&self.config()),
            Arc::clone(&self.budget),
            now,
            min_capacity,
            old.is_fast(),
        )?;
        self.segments.write().insert(base.0, Arc::clone(&seg));
        self.write_producer_snapshot(w, base)?;
        Ok(seg)
    }
}

/// The largest offset past its segment's base an append may put in the segment: Kafka's
/// `LogSegment.canConvertToRelativeOffset`, since an index entry holds a 4-byte relative
/// offset (read as an `int` by Kafka's tools). Appends roll a new segment rather than exceed it.
pub(crate) const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

/// Consecutive ranges of `placed` whose offsets fit one segment starting at the range's first
/// batch (a single batch always fits: its last offset delta is an `i32`).
fn runs_fitting_a_segment(placed: &[PlacedBatch]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for (i, p) in placed.iter().enumerate() {
        if i > start && p.last_offset.0 - placed[start].base_offset.0 > MAX_RELATIVE_OFFSET {
            runs.push(start..i);
            start = i;
        }
    }
    if start < placed.len() {
        runs.push(start..placed.len());
    }
    runs
}

/// Splits `batches` into validated headers; the batches must tile the buffer exactly.
fn parse_all(
    batches: &[u8],
    origin: AppendOrigin,
    max_message_bytes: u32,
) -> Result<Vec<(usize, BatchHeader)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < batches.len() {
        let rest = &batches[at..];
        let h = match origin {
            AppendOrigin::Client => batch::validate_client_batch(rest, max_message_bytes)?,
            AppendOrigin::Coordinator | AppendOrigin::Replication => {
                batch::check_batch(rest, usize::MAX).map_err(|d| match d {
                    batch::BatchDefect::Magic(m) => StorageError::UnsupportedMagic(m),
                    d => StorageError::CorruptRecord(d.to_string()),
                })?
            }
        };
        out.push((at, h));
        at += h.size();
    }
    if out.is_empty() {
        return Err(StorageError::CorruptRecord("empty record set".into()));
    }
    Ok(out)
}

/// Where an empty follower log must start over so it can take its leader's first batch:
/// the batch's base offset, when the log holds no record (log start == log end) and the
/// batch starts below the log end but reaches it. DeleteRecords may have put the leader's
/// log start inside a batch; a follower that started at that offset is then sent the whole
/// batch. Kafka does the same (`Partition.appendRecordsToFollowerOrFutureReplica` catching
/// `UnexpectedAppendOffsetException`): the log restarts at the batch's base and keeps the
/// log start the leader gave it.
fn restart_below_log_start(
    offsets: &super::LogOffsets,
    headers: &[(usize, BatchHeader)],
) -> Option<Offset> {
    let (_, first) = headers.first()?;
    let end = offsets.log_end.0;
    (offsets.log_start == offsets.log_end && first.base_offset < end && first.last_offset() >= end)
        .then_some(Offset(first.base_offset))
}
