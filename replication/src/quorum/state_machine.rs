//! The metadata quorum's state machine: the [`MetadataImage`], published to the broker
//! through a watch channel after every applied batch, and snapshotted to disk so the log can
//! be purged and a lagging node can be brought up to date in one step.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::log_store::write_json_durably;
use super::{Applied, LogId, TypeConfig};
use crate::image::MetadataImage;

/// Snapshot metadata of the quorum.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A stored membership of the quorum.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// A snapshot: its metadata and the image serialized as JSON.
pub type Snapshot = openraft::Snapshot<
    openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>,
    u64,
    openraft::impls::BasicNode,
    Vec<u8>,
>;

#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    meta: SnapshotMeta,
    image: MetadataImage,
}

/// The image and what of the log it reflects.
#[derive(Clone)]
pub struct StateMachine {
    dir: PathBuf,
    image: MetadataImage,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// Shared with snapshot builders (clones of this), which store what they build.
    snapshot: Arc<std::sync::Mutex<Option<Arc<Stored>>>>,
    published: watch::Sender<Arc<MetadataImage>>,
}

const SNAPSHOT: &str = "snapshot.json";

impl StateMachine {
    /// Opens the state machine in `dir`, starting from its last snapshot if any. The
    /// receiver sees the image after every applied batch.
    pub fn open(dir: &Path) -> io::Result<(StateMachine, watch::Receiver<Arc<MetadataImage>>)> {
        std::fs::create_dir_all(dir)?;
        let stored: Option<Stored> = match std::fs::read(dir.join(SNAPSHOT)) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join(SNAPSHOT).display()),
                )
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let image = stored.as_ref().map(|s| s.image.clone()).unwrap_or_default();
        let (published, rx) = watch::channel(Arc::new(image.clone()));
        Ok((
            StateMachine {
                dir: dir.to_path_buf(),
                last_applied: stored.as_ref().and_then(|s| s.meta.last_log_id),
                membership: stored
                    .as_ref()
                    .map(|s| s.meta.last_membership.clone())
                    .unwrap_or_default(),
                image,
                snapshot: Arc::new(std::sync::Mutex::new(stored.map(Arc::new))),
                published,
            },
            rx,
        ))
    }

    fn store_snapshot(&mut self, stored: Stored) -> io::Result<()> {
        let mut slot = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        write_json_durably(&self.dir.join(SNAPSHOT), &stored)?;
        *slot = Some(Arc::new(stored));
        Ok(())
    }
}

fn to_snapshot(stored: &Stored) -> io::Result<Snapshot> {
    Ok(Snapshot {
        meta: stored.meta.clone(),
        snapshot: serde_json::to_vec(&stored.image).map_err(io::Error::other)?,
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let stored = Stored {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
            },
            image: self.image.clone(),
        };
        let snapshot = to_snapshot(&stored)?;
        self.store_snapshot(stored)?;
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + openraft::OptionalSend,
    {
        // Answers wait until the image showing their records is published: whoever is
        // answered reads that image next.
        let mut answers = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            self.last_applied = Some(entry.log_id);
            let applied = match &entry.payload {
                EntryPayload::Blank => Applied::default(),
                EntryPayload::Normal(record) => match self.image.apply(record) {
                    Ok(()) => Applied::default(),
                    Err(e) => {
                        tracing::warn!(%record, error = %e, "metadata record did not apply");
                        Applied {
                            error: Some(e.to_string()),
                        }
                    }
                },
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Applied::default()
                }
            };
            if let Some(r) = responder {
                answers.push((r, applied));
            }
        }
        self.published.send_replace(Arc::new(self.image.clone()));
        for (r, applied) in answers {
            r.send(applied);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let image: MetadataImage = serde_json::from_slice(&snapshot)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        self.store_snapshot(Stored {
            meta: meta.clone(),
            image: image.clone(),
        })?;
        self.image = image;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.published.send_replace(Arc::new(self.image.clone()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let current = self
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        current.as_deref().map(to_snapshot).transpose()
    }
}
