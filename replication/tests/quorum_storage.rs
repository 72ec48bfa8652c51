//! The metadata log store and state machine pass openraft's storage test suite, and the log
//! survives a reopen with a torn journal tail.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use sluice_replication::quorum::log_store::LogStore;
use sluice_replication::quorum::state_machine::StateMachine;
use sluice_replication::quorum::TypeConfig;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tmp");
        let log = LogStore::open(&dir.path().join("log")).expect("log");
        let (sm, _image) = StateMachine::open(&dir.path().join("sm")).expect("sm");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_openraft_storage_suite() {
    Suite::test_all(Builder).await.expect("storage suite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_journal_tail_is_cut_and_the_rest_kept() {
    use openraft::entry::RaftEntry;
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::RaftLogReader;
    use sluice_replication::quorum::{Entry, LogId};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let leader = <openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>>::new(1);
    {
        let mut log = LogStore::open(&path).unwrap();
        let entries: Vec<Entry> = (1..=5)
            .map(|i| Entry::new_blank(LogId::new(leader, i)))
            .collect();
        log.append(entries, IOFlushed::Noop).await.unwrap();
    }
    // A crash mid-write: half a frame at the end.
    let journal = path.join("journal");
    let len = std::fs::metadata(&journal).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    f.set_len(len - 10).unwrap();
    drop(f);

    let mut log = LogStore::open(&path).unwrap();
    let got = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    // Appends continue after the cut, and survive another reopen.
    log.append(
        vec![Entry::new_blank(LogId::new(leader, 5))],
        IOFlushed::Noop,
    )
    .await
    .unwrap();
    drop(log);
    let mut log = LogStore::open(&path).unwrap();
    assert_eq!(log.try_get_log_entries(0..100).await.unwrap().len(), 5);
}
