//! The metadata log on disk: a journal of appends, truncations and purges, replayed into
//! memory at start (the metadata log is small; snapshots keep it so), plus the vote and the
//! committed log id in small files replaced atomically.
//!
//! Journal frames are `[len: u32][crc32: u32][JSON]`. A frame cut short or corrupted by a
//! crash ends the replay, and the file is truncated there: an append is acknowledged to
//! openraft only after its frame is fsynced, so nothing acknowledged is lost.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use serde::{Deserialize, Serialize};

use super::{Entry, LogId, TypeConfig, Vote};

#[derive(Serialize, Deserialize)]
enum Op {
    Append(Entry),
    TruncateAfter(Option<LogId>),
    Purge(LogId),
}

struct Inner {
    dir: PathBuf,
    journal: File,
    /// Frames in the journal, to know when rewriting it pays off.
    journal_ops: usize,
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// The metadata log of one node. Clones share it (the reader handed to openraft is a clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

const JOURNAL: &str = "journal";

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock leaves nothing half-written in memory that matters:
    // the journal on disk is the truth, and every mutation below completes or returns early.
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replaying its journal.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(JOURNAL);
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        let mut ops = 0;
        let mut valid_len = 0u64;
        if let Ok(f) = File::open(&path) {
            let mut r = BufReader::new(f);
            while let Some((op, len)) = read_frame(&mut r)? {
                apply_op(&mut entries, &mut last_purged, op);
                valid_len += len;
                ops += 1;
            }
        }
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(&path)?;
        if journal.metadata()?.len() > valid_len {
            tracing::warn!(path = %path.display(), valid_len, "metadata journal has a torn tail; truncating");
            journal.set_len(valid_len)?;
            journal.sync_data()?;
        }
        let vote = read_json(&dir.join("vote.json"))?;
        let committed = read_json(&dir.join("committed.json"))?.flatten();
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                journal,
                journal_ops: ops,
                entries,
                last_purged,
                vote,
                committed,
            })),
        })
    }

    /// Runs `f` on the store off the async runtime: it does blocking file I/O and fsyncs.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&mut lock(&inner)))
            .await
            .map_err(io::Error::other)?
    }
}

fn apply_op(entries: &mut BTreeMap<u64, Entry>, last_purged: &mut Option<LogId>, op: Op) {
    match op {
        Op::Append(e) => {
            entries.insert(e.log_id.index, e);
        }
        Op::TruncateAfter(after) => {
            let from = after.map_or(0, |l| l.index + 1);
            entries.split_off(&from);
        }
        Op::Purge(upto) => {
            let keep = entries.split_off(&(upto.index + 1));
            *entries = keep;
            *last_purged = Some(upto);
        }
    }
}

fn read_frame(r: &mut impl Read) -> io::Result<Option<(Op, u64)>> {
    let mut header = [0u8; 8];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
    if len > 64 << 20 {
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    match r.read_exact(&mut body) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if crc32fast::hash(&body) != crc {
        return Ok(None);
    }
    match serde_json::from_slice(&body) {
        Ok(op) => Ok(Some((op, 8 + len as u64))),
        Err(_) => Ok(None),
    }
}

fn frame(op: &Op) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(op).map_err(invalid)?;
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(invalid),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `value` atomically and durably (write, fsync, rename, fsync dir).
pub(crate) fn write_json_durably<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(value).map_err(invalid)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Inner {
    fn write_ops(&mut self, ops: &[Op]) -> io::Result<()> {
        let mut buf = Vec::new();
        for op in ops {
            buf.extend(frame(op)?);
        }
        self.journal.write_all(&buf)?;
        self.journal.sync_data()?;
        self.journal_ops += ops.len();
        Ok(())
    }

    /// Rewrites the journal with only what is live, once it is mostly history.
    fn compact_if_worthwhile(&mut self) -> io::Result<()> {
        if self.journal_ops < 1024 || self.journal_ops < 4 * (self.entries.len() + 1) {
            return Ok(());
        }
        let path = self.dir.join(JOURNAL);
        let tmp = self.dir.join("journal.tmp");
        let mut ops = Vec::new();
        if let Some(p) = self.last_purged {
            ops.push(Op::Purge(p));
        }
        ops.extend(self.entries.values().cloned().map(Op::Append));
        {
            let mut f = File::create(&tmp)?;
            for op in &ops {
                f.write_all(&frame(op)?)?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        self.journal = OpenOptions::new().append(true).open(&path)?;
        self.journal_ops = ops.len();
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(lock(&self.inner)
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(lock(&self.inner).vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let inner = lock(&self.inner);
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let vote = *vote;
        self.blocking(move |inner| {
            write_json_durably(&inner.dir.join("vote.json"), &vote)?;
            inner.vote = Some(vote);
            Ok(())
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.blocking(move |inner| {
            write_json_durably(&inner.dir.join("committed.json"), &committed)?;
            inner.committed = committed;
            Ok(())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(lock(&self.inner).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let ops: Vec<Op> = entries.into_iter().map(Op::Append).collect();
        let result = self
            .blocking(move |inner| {
                inner.write_ops(&ops)?;
                for op in ops {
                    apply_op(&mut inner.entries, &mut inner.last_purged, op);
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.blocking(move |inner| {
            let op = Op::TruncateAfter(last_log_id);
            inner.write_ops(std::slice::from_ref(&op))?;
            apply_op(&mut inner.entries, &mut inner.last_purged, op);
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.blocking(move |inner| {
            let op = Op::Purge(log_id);
            inner.write_ops(std::slice::from_ref(&op))?;
            apply_op(&mut inner.entries, &mut inner.last_purged, op);
            inner.compact_if_worthwhile()
        })
        .await
    }
}
