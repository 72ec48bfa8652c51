//! The health of each log directory, as an operator sees it: a directory that cannot be
//! written (a full disk, an I/O error) is logged once when it starts failing and once when
//! it recovers, not per request, and `/metrics` shows it (`sluice_log_dir_offline`) with the
//! space left (`sluice_log_dir_free_bytes`). Produce keeps answering KAFKA_STORAGE_ERROR while
//! the directory fails and succeeds again, with no restart, once space returns: each append
//! still tries the disk, so the first one that succeeds marks the directory healthy.
//!
//! A disk failure that space will not cure (a media error on a read or write, a filesystem
//! remounted read-only: [`StorageError::is_disk_failure`]) takes the directory offline for
//! good, as Kafka's log directory failure channel does: its partitions answer
//! KAFKA_STORAGE_ERROR and the broker is told to stop (the controller knows no log
//! directories, so, as Kafka in KRaft mode without JBOD, a broker with a failed directory
//! stops rather than go on leading partitions it cannot serve).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use sluice_storage::StorageError;
use tokio::sync::watch;

use crate::observability::names;

struct Dir {
    path: PathBuf,
    label: String,
    /// Why it failed, while it does.
    failing: Mutex<Option<String>>,
    /// Why it went offline for good (a disk failure), if it did.
    offline: Mutex<Option<String>>,
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
    /// Whether any directory is offline: the request path checks only this while all is well.
    any_offline: AtomicBool,
    /// Set once a directory goes offline: the server stops the broker.
    offline_tx: watch::Sender<bool>,
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
                offline: Mutex::new(None),
            })
            .collect();
        for d in &dirs {
            metrics::gauge!(names::LOG_DIR_OFFLINE, "dir" => d.label.clone()).set(0.0);
        }
        LogDirHealth {
            dirs,
            any_failing: AtomicBool::new(false),
            any_offline: AtomicBool::new(false),
            offline_tx: watch::channel(false).0,
        }
    }

    /// Becomes true once a directory went offline.
    pub fn offline_signal(&self) -> watch::Receiver<bool> {
        self.offline_tx.subscribe()
    }

    /// A disk failure `e` (on any read or write) under the directory holding `path` takes
    /// that directory offline for good. Returns the directory when this call did (the caller
    /// fails its logs); `None` for other errors or a directory already offline.
    pub fn disk_failed(&self, path: &Path, e: &StorageError) -> Option<PathBuf> {
        if !e.is_disk_failure() {
            return None;
        }
        let d = self.dir_of(path)?;
        let mut offline = d.offline.lock();
        if offline.is_some() {
            return None;
        }
        tracing::error!(dir = %d.label, error = %e,
            "log directory failed: it is offline until a restart, its partitions answer KAFKA_STORAGE_ERROR, and the broker stops");
        *offline = Some(e.to_string());
        self.any_offline.store(true, Ordering::Release);
        metrics::gauge!(names::LOG_DIR_OFFLINE, "dir" => d.label.clone()).set(1.0);
        self.offline_tx.send_replace(true);
        Some(d.path.clone())
    }

    /// The directories that went offline.
    pub fn offline_dirs(&self) -> Vec<String> {
        self.dirs
            .iter()
            .filter(|d| d.offline.lock().is_some())
            .map(|d| d.label.clone())
            .collect()
    }

    /// Whether the log at `log_path` lies in a directory that went offline.
    pub fn is_offline(&self, log_path: &Path) -> bool {
        self.any_offline.load(Ordering::Acquire)
            && self
                .dir_of(log_path)
                .is_some_and(|d| d.offline.lock().is_some())
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
        if e.is_disk_failure() {
            return match self.disk_failed(log_path, e) {
                Some(_) => Transition::Failed,
                None => Transition::None,
            };
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
        if d.offline.lock().is_some() || d.failing.lock().take().is_none() {
            return Transition::None;
        }
        tracing::info!(dir = %d.label, "log directory writable again");
        metrics::gauge!(names::LOG_DIR_OFFLINE, "dir" => d.label.clone()).set(0.0);
        let still = self.dirs.iter().any(|o| o.failing.lock().is_some());
        self.any_failing.store(still, Ordering::Release);
        Transition::Recovered
    }

    /// Why the directory `dir` fails or went offline, if it did.
    pub fn failure(&self, dir: &Path) -> Option<String> {
        let d = self.dirs.iter().find(|d| d.path == dir)?;
        let offline = d.offline.lock().clone();
        offline.or_else(|| d.failing.lock().clone())
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

    fn media_error(path: &Path) -> StorageError {
        StorageError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::from_raw_os_error(5),
        }
    }

    #[test]
    fn a_disk_failure_takes_its_directory_offline_for_good_and_signals_once() {
        let dirs = [PathBuf::from("/data/a"), PathBuf::from("/data/b")];
        let h = LogDirHealth::new(&dirs);
        let signal = h.offline_signal();
        let (log, other) = (Path::new("/data/a/orders-0"), Path::new("/data/b/orders-1"));
        assert_eq!(
            h.disk_failed(log, &full_disk(log)),
            None,
            "a full disk is not one"
        );
        assert!(!*signal.borrow());
        let segment = log.join("00000000000000000000.log");
        assert_eq!(
            h.disk_failed(&segment, &media_error(&segment)),
            Some(PathBuf::from("/data/a"))
        );
        assert!(*signal.borrow(), "the server is told");
        assert_eq!(h.disk_failed(log, &media_error(log)), None, "once");
        assert!(h.is_offline(log));
        assert!(!h.is_offline(other));
        assert_eq!(h.offline_dirs(), vec!["/data/a".to_string()]);
        assert_eq!(
            h.write_succeeded(log),
            Transition::None,
            "no write brings it back"
        );
        assert!(h.is_offline(log));
        assert!(h
            .failure(Path::new("/data/a"))
            .is_some_and(|r| r.contains("os error 5")));
        assert_eq!(
            h.write_failed(other, &media_error(other)),
            Transition::Failed,
            "a media error on a write is one too"
        );
        assert!(h.is_offline(other));
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
