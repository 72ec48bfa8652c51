//! `sluice-storage`: an embeddable, crash-safe, segmented and indexed append-only log that
//! stores Kafka v2 record batches byte for byte.
//!
//! A [`Log`] is one partition: a directory of segments named by their 20-digit base offset
//! (`.log`, `.index`, `.timeindex`), plus `leader-epoch-checkpoint`, recovery-point and
//! log-start-offset checkpoints and producer-state snapshots, in Kafka's layout. A
//! [`LogManager`] owns many logs under one or more data directories. The engine needs no async
//! runtime; one writer and any number of concurrent readers share a log through `Arc<Log>`.
//!
//! # Example
//!
//! ```
//! use sluice_storage::{AppendOptions, Log, LogConfig, Offset, ReadOptions, TopicPartition};
//! # fn batch() -> Vec<u8> { sluice_storage::record::BatchBuilder::new().record(None, Some(b"hello"), 1_700_000_000_000).build() }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let tp = TopicPartition::new("events", 0);
//! let log = Log::open(&dir.path().join(tp.dir_name()), tp.clone(), LogConfig::default())?;
//!
//! // Append a Kafka v2 record batch exactly as a producer sends it; the log assigns offsets.
//! let info = log.append(&batch(), &AppendOptions::default())?;
//! assert_eq!(info.first_offset, Offset(0));
//!
//! // Read it back: whole batches, as stored.
//! let data = log.read(&ReadOptions::from(Offset(0)))?;
//! assert!(!data.records.is_empty());
//!
//! // Close cleanly (flush, trim, checkpoint) and reopen: everything is still there.
//! log.close()?;
//! drop(log);
//! let log = Log::open(&dir.path().join(tp.dir_name()), tp, LogConfig::default())?;
//! assert_eq!(log.offsets().log_end, Offset(1));
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - Appends are atomic per call and visible to readers once `append` returns.
//! - Durability is explicit: [`Log::flush`] (msync/fdatasync) or the `flush.messages` /
//!   `flush.ms` policy; by default, as in Kafka, nothing is forced to disk and durability
//!   comes from replication. A failed flush poisons the log: it refuses writes from then on.
//! - A segment sealed by a roll is flushed by the next [`Log::housekeeping`], off the append
//!   path (Kafka's `flush-log` task), which then moves the recovery point to the segment after
//!   it: recovery after a crash rescans only what came since.
//! - After any crash, [`Log::open`] yields a clean prefix of what was appended: segments past
//!   the recovery point are validated batch by batch (CRC-32C) and cut at the first torn or
//!   corrupt batch, and their indexes are rebuilt.
//!
//! # Write path
//!
//! Without a flush policy (the default) an append copies the batches into the active
//! segment's mapping, over space preallocated with `fallocate`. Once a partition is written at
//! 1 MiB/s or more its file grows in whole chunks ahead of the writer and each new stretch gets
//! transparent huge pages (one page fault per 2 MiB instead of per 4 KiB); the segment a fast
//! one rolls into starts that way. The unwritten tail of the mapping has read-ahead turned off.
//! With `flush.messages` or `flush.ms` set, appends use
//! `pwrite(2)` instead: a mapped write dirties a whole page-cache folio, which every flush
//! would write back again. Reads copy with `pread(2)` either way (see below).
//!
//! # Disk faults and filesystems
//!
//! - **Media errors.** Every read of log data (recovery at [`Log::open`], [`Log::read`],
//!   lookups, truncation, the cleaner) copies it with `pread(2)`; only the writer touches a
//!   segment's mapping. A bad sector is therefore that call's I/O error
//!   ([`StorageError::is_disk_failure`]), never a SIGBUS that would end the whole process.
//!   Writes reach the disk at writeback; a writeback error is reported by the next
//!   [`Log::flush`], which poisons the log. The embedder decides what a disk failure means
//!   for the directory: the broker takes it offline as Kafka does and [`Log::fail`]s its
//!   logs, which then refuse writes and do not close cleanly, so the next open recovers them.
//! - **No `fallocate(2)`** (`EOPNOTSUPP`: some network and FUSE filesystems, ZFS before 2.2):
//!   the active segment cannot preallocate, so it appends with `pwrite(2)` instead of copying
//!   into its mapping; a full disk is still that call's error, never a SIGBUS.
//! - **Copy-on-write filesystems** (btrfs, ZFS, bcachefs): preallocated blocks are not kept
//!   for the writes that land on them, so a mapped write could fault on a full disk;
//!   segments there append with `pwrite(2)` too. Both cases lose the mapped write path's
//!   speed, not safety.
//!
//! # Layout
//!
//! - `types`: offset, epoch and id newtypes; `TopicPartition`.
//! - `error`: [`StorageError`].
//! - `config`: [`LogConfig`] with Kafka's topic keys and defaults.
//! - `batch`: v2 batch header parsing, validation, CRC-32C, in-place offset assignment.
//! - `record`: records inside a batch, batch building, compression codecs.
//! - `mmap`: the only `unsafe` code: mapped files with published/allocated watermarks.
//! - `io`: fallocate, fdatasync, atomic file writes.
//! - `index`: memory-mapped offset and time indexes.
//! - `segment`: `LogSegment`, one `.log` file and its indexes.
//! - `log`: [`Log`], append/read/truncate/retention/close.
//! - `cleaner`: log compaction.
//! - `manager`: [`LogManager`], many logs under `log.dirs`.
//! - `checkpoint`, `leader_epoch`, `producer_state`, `map_budget`: supporting state.
//! - `testing`: a conformance suite any log implementation can run.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod batch;
mod checkpoint;
pub mod cleaner;
pub mod compression;
pub mod config;
pub mod error;
mod index;
mod io;
mod leader_epoch;
pub mod log;
mod manager;
mod map_budget;
mod producer_state;
pub mod record;
mod segment;
pub mod types;

#[allow(unsafe_code)]
mod mmap;

pub use config::{CleanupPolicy, ConfigEntry, DirtyRatio, LogConfig, TopicCompression};
pub use error::{Result, StorageError};
pub use log::{
    AppendInfo, AppendOptions, AppendOrigin, FetchData, HousekeepingReport, LoadStats, Log,
    LogOffsets, ReadOptions,
};
pub use manager::{LogManager, LogManagerConfig};
pub use map_budget::MapBudget;
pub use types::{LeaderEpoch, Offset, ProducerId, TimestampOffset, TimestampType, TopicPartition};
