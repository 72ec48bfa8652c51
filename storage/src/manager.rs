//! `LogManager`: every partition log under one or more data directories (`log.dirs`).
//!
//! Opens every `<topic>-<partition>/` directory at start, places new logs in the directory
//! holding the fewest, and runs housekeeping when the embedder calls it (the engine owns no
//! threads). Each data directory is locked so two processes never share it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::log::Log;
use crate::map_budget::MapBudget;
use crate::types::TopicPartition;

/// Settings of a [`LogManager`].
#[derive(Debug, Clone)]
pub struct LogManagerConfig {
    /// Data directories (`log.dirs`); at least one.
    pub log_dirs: Vec<PathBuf>,
    /// Configuration for logs found on disk at start (the embedder may update each later).
    pub default_config: LogConfig,
    /// Bound on sealed segments kept mapped at once (see [`MapBudget`]).
    pub max_mapped_segments: usize,
}

impl LogManagerConfig {
    /// One data directory, default settings.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogManagerConfig {
            log_dirs: vec![dir.into()],
            default_config: LogConfig::default(),
            max_mapped_segments: MapBudget::DEFAULT_MAX_MAPPED,
        }
    }
}

const LOCK_FILE: &str = ".lock";
const DELETE_SUFFIX: &str = "-delete";

/// Owner of all partition logs of a process.
#[derive(Debug)]
pub struct LogManager {
    config: LogManagerConfig,
    logs: RwLock<BTreeMap<TopicPartition, (usize, Arc<Log>)>>,
    budget: Arc<MapBudget>,
    _locks: Vec<File>,
}

impl LogManager {
    /// Locks the data directories and opens every log in them (recovering as needed).
    pub fn open(config: LogManagerConfig) -> Result<LogManager> {
        if config.log_dirs.is_empty() {
            return Err(StorageError::InvalidConfig {
                key: "log.dirs".into(),
                value: String::new(),
                reason: "at least one directory is required".into(),
            });
        }
        let budget = MapBudget::new(config.max_mapped_segments);
        let mut locks = Vec::new();
        let mut logs = BTreeMap::new();
        for (i, dir) in config.log_dirs.iter().enumerate() {
            fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
            let lock_path = dir.join(LOCK_FILE);
            let lock = File::create(&lock_path).map_err(|e| StorageError::io(&lock_path, e))?;
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .map_err(|e| {
                    StorageError::io(
                        &lock_path,
                        std::io::Error::new(
                            std::io::ErrorKind::WouldBlock,
                            format!("data directory is in use by another process: {e}"),
                        ),
                    )
                })?;
            locks.push(lock);
            for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
                let entry = entry.map_err(|e| StorageError::io(dir, e))?;
                if !entry
                    .file_type()
                    .map_err(|e| StorageError::io(entry.path(), e))?
                    .is_dir()
                {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(DELETE_SUFFIX) {
                    // A deletion interrupted by a crash: finish it.
                    fs::remove_dir_all(entry.path())
                        .map_err(|e| StorageError::io(entry.path(), e))?;
                    continue;
                }
                let Some(tp) = TopicPartition::from_dir_name(&name) else {
                    continue;
                };
                let log = Log::open_with_budget(
                    &entry.path(),
                    tp.clone(),
                    config.default_config.clone(),
                    Arc::clone(&budget),
                )?;
                logs.insert(tp, (i, Arc::new(log)));
            }
        }
        Ok(LogManager {
            config,
            logs: RwLock::new(logs),
            budget,
            _locks: locks,
        })
    }

    /// The log of `tp`, if it exists.
    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Log>> {
        self.logs.read().get(tp).map(|(_, l)| Arc::clone(l))
    }

    /// The log of `tp`, created with `config` in the least-used directory if it is new.
    pub fn get_or_create(&self, tp: &TopicPartition, config: LogConfig) -> Result<Arc<Log>> {
        if let Some(log) = self.get(tp) {
            return Ok(log);
        }
        let mut logs = self.logs.write();
        if let Some((_, log)) = logs.get(tp) {
            return Ok(Arc::clone(log));
        }
        let mut per_dir = vec![0usize; self.config.log_dirs.len()];
        for (d, _) in logs.values() {
            per_dir[*d] += 1;
        }
        let d = (0..per_dir.len()).min_by_key(|i| per_dir[*i]).unwrap_or(0);
        let dir = self.config.log_dirs[d].join(tp.dir_name());
        let log = Arc::new(Log::open_with_budget(
            &dir,
            tp.clone(),
            config,
            Arc::clone(&self.budget),
        )?);
        crate::io::fsync_dir(&self.config.log_dirs[d])?;
        logs.insert(tp.clone(), (d, Arc::clone(&log)));
        Ok(log)
    }

    /// Deletes the log of `tp` and its directory. Readers holding views keep their data
    /// until they drop them; further appends fail with `Closed`.
    pub fn delete(&self, tp: &TopicPartition) -> Result<()> {
        let Some((d, log)) = self.logs.write().remove(tp) else {
            return Ok(());
        };
        // Closing stops further appends; its flush and checkpoints are moot for a deleted log,
        // so a failure here is reported but does not stop the deletion.
        if let Err(e) = log.close() {
            tracing::warn!(partition = %tp, error = %e, "closing a deleted log failed");
        }
        let dir = log.dir().to_path_buf();
        let doomed = self.config.log_dirs[d].join(format!("{}{DELETE_SUFFIX}", tp.dir_name()));
        fs::rename(&dir, &doomed).map_err(|e| StorageError::io(&dir, e))?;
        crate::io::fsync_dir(&self.config.log_dirs[d])?;
        fs::remove_dir_all(&doomed).map_err(|e| StorageError::io(&doomed, e))
    }

    /// Every open log.
    pub fn logs(&self) -> Vec<Arc<Log>> {
        self.logs
            .read()
            .values()
            .map(|(_, l)| Arc::clone(l))
            .collect()
    }

    /// Runs [`Log::housekeeping`] on every log; an error on one log is logged and the others
    /// still run. Returns the first error.
    pub fn housekeeping(&self, now_ms: i64) -> Result<()> {
        let mut first = None;
        for log in self.logs() {
            if let Err(e) = log.housekeeping(now_ms) {
                tracing::error!(partition = %log.topic_partition(), error = %e, "housekeeping failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Closes every log (flush, trim, checkpoints). Returns the first error after trying all.
    pub fn close(&self) -> Result<()> {
        let mut first = None;
        for log in self.logs() {
            if let Err(e) = log.close() {
                tracing::error!(partition = %log.topic_partition(), error = %e, "close failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
