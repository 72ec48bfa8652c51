//! The health of each log directory, as an operator sees it: a directory that cannot be
//! written (a full disk, an I/O error) is logged once when it starts failing and once when
//! it recovers, not per request, and `/metrics` shows it (`sluice_log_dir_offline`) with the
//! space left (`sluice_log_dir_free_bytes`). Produce keeps answering KAFKA_STORAGE_ERROR while
//! the directory fails and succeeds again, with no restart, once space returns: each append
//! still tries the disk, so the first one that succeeds marks the directory healthy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use sluice_storage::StorageError;

use crate::observability::names;

struct Dir {
    path: PathBuf,
    label: String,
    /// Why it failed, while it does.
    failing: Mutex<Option<String>>,
}

/// What a call changed, for the caller's tests; the logging and metrics are done inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The directory was healthy and now fails.
    Failed,
    /// The directory failed and works again.
    Recovered,
    /// No change.
    None,
}

/// Every log directory's health.
pub struct LogDirHealth {
    dirs: Vec<Dir>,
    /// Whether any directory is failing: the append path checks only this while all is well.
    any_failing: AtomicBool,
}

impl LogDirHealth {
    /// All of `dirs` healthy.
    pub fn new(dirs: &[PathBuf]) -> LogDirHealth {
        let dirs: Vec<Dir> = dirs
            .iter()
            .map(|p| Dir {
                path: p.clone(),
                label: p.display().to_string(),
                failing: Mutex::new(None),
            })
            .collect();
        for d in &dirs {
            metrics::gauge!(names::LOG_DIR_OFFLINE, "dir" => d.label.clone()).set(0.0);
        }
        LogDirHealth {
            dirs,
            any_failing: AtomicBool::new(false),
        }
    }

    /// The directory holding the log at `log_path` (`<dir>/<topic>-<partition>`).
    fn dir_of(&self, log_path: &Path) -> Option<&Dir> {
        self.dirs.iter().find(|d| log_path.starts_with(&d.path))
    }

    /// An append or flush to the log at `log_path` failed with `e`. Only failures of the disk
    /// (not of the request) mark the directory.
    pub fn write_failed(&self, log_path: &Path, e: &StorageError) -> Transition {
        if !e.is_storage_failure() {
            return Transition::None;
        }
        let Some(d) = self.dir_of(log_path) else {
            return Transition::None;
        };
        let mut failing = d.failing.lock();
        if failing.is_some() {
            return Transition::None;
        }
        tracing::error!(dir = %d.label, error = %e,
            "log directory cannot be written; produce to its partitions answers KAFKA_STORAGE_ERROR until it can");
        *failing = Some(e.to_string());
        self.any_failing.store(true, Ordering::Release);
        metrics::gauge!(names::LOG_DIR_OFFLINE, "dir" => d.label.clone()).set(1.0);
        Transition::Failed
    }

    /// A write to the log at `log_path` succeeded.
    pub fn write_succeeded(&self, log_path: &Path) -> Transition {
        if !self.any_failing.load(Ordering::Acquire) {
            return Transition::None;
        }
        let Some(d) = self.dir_of(log_path) else {
            return Transition::None;
        };
        if d.failing.lock().take().is_none() {
            return Transition::None;
        }
        tracing::info!(dir = %d.label, "log directory writable again");
        metrics::gauge!(names::LOG_DIR_OFFLINE, "dir" => d.label.clone()).set(0.0);
        let still = self.dirs.iter().any(|o| o.failing.lock().is_some());
        self.any_failing.store(still, Ordering::Release);
        Transition::Recovered
    }

    /// Why the directory `dir` fails, if it does.
    pub fn failure(&self, dir: &Path) -> Option<String> {
        self.dirs
            .iter()
            .find(|d| d.path == dir)
            .and_then(|d| d.failing.lock().clone())
    }

    /// Updates each directory's free-space gauge (housekeeping calls it every second).
    pub fn measure_free_space(&self) {
        for d in &self.dirs {
            match space(&d.path) {
                Ok((_, usable)) => {
                    metrics::gauge!(names::LOG_DIR_FREE_BYTES, "dir" => d.label.clone())
                        .set(usable as f64);
                }
                Err(e) => {
                    tracing::debug!(dir = %d.label, error = %e, "cannot measure free space")
                }
            }
        }
    }
}

/// The (total, usable) bytes of the file system holding `dir`, as DescribeLogDirs v4+
/// reports them (KIP-827): usable is what an unprivileged writer may still fill.
pub fn space(dir: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(dir)?;
    Ok((
        s.f_blocks.saturating_mul(s.f_frsize),
        s.f_bavail.saturating_mul(s.f_frsize),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_disk(path: &Path) -> StorageError {
        StorageError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::from_raw_os_error(28),
        }
    }

    #[test]
    fn a_directory_fails_once_and_recovers_once() {
        let dirs = [PathBuf::from("/data/a"), PathBuf::from("/data/b")];
        let h = LogDirHealth::new(&dirs);
        let log = Path::new("/data/a/orders-0");
        let other = Path::new("/data/b/orders-1");
        assert_eq!(h.write_failed(log, &full_disk(log)), Transition::Failed);
        assert_eq!(
            h.write_failed(log, &full_disk(log)),
            Transition::None,
            "logged once, not per request"
        );
        assert!(h.failure(Path::new("/data/a")).is_some());
        assert_eq!(h.failure(Path::new("/data/b")), None);
        assert_eq!(
            h.write_succeeded(other),
            Transition::None,
            "another directory"
        );
        assert_eq!(h.write_succeeded(log), Transition::Recovered);
        assert_eq!(h.write_succeeded(log), Transition::None);
        assert_eq!(h.failure(Path::new("/data/a")), None);
    }

    #[test]
    fn a_refused_request_says_nothing_about_the_disk() {
        let h = LogDirHealth::new(&[PathBuf::from("/data/a")]);
        let log = Path::new("/data/a/orders-0");
        let bad_request = StorageError::CorruptRecord("bad crc".into());
        assert_eq!(h.write_failed(log, &bad_request), Transition::None);
        assert_eq!(h.failure(Path::new("/data/a")), None);
    }
}
