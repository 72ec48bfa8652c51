//! `LogManager`: many logs across data directories, deletion, reopen, directory locking.

use sluice_storage::record::BatchBuilder;
use sluice_storage::{
    AppendOptions, LogConfig, LogManager, LogManagerConfig, Offset, TopicPartition,
};

fn config(dirs: &[&std::path::Path]) -> LogManagerConfig {
    LogManagerConfig {
        log_dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
        ..LogManagerConfig::new(dirs[0])
    }
}

#[test]
fn logs_spread_over_data_dirs_survive_restart_and_deletion_is_final() {
    let a = tempfile::tempdir().expect("tmp");
    let b = tempfile::tempdir().expect("tmp");
    let batch = BatchBuilder::new()
        .record(Some(b"k"), Some(b"v"), 1_700_000_000_000)
        .build();
    {
        let m = LogManager::open(config(&[a.path(), b.path()])).expect("open");
        for p in 0..4 {
            let log = m
                .get_or_create(&TopicPartition::new("orders", p), LogConfig::default())
                .expect("create");
            for _ in 0..=p {
                log.append(&batch, &AppendOptions::default())
                    .expect("append");
            }
        }
        assert!(
            a.path().join("orders-0").is_dir() && b.path().join("orders-1").is_dir(),
            "placed in the emptier directory"
        );
        assert!(
            LogManager::open(config(&[a.path()])).is_err(),
            "a locked data directory cannot be opened twice"
        );
        m.delete(&TopicPartition::new("orders", 3)).expect("delete");
        m.close().expect("close");
    }
    let m = LogManager::open(config(&[a.path(), b.path()])).expect("reopen");
    assert_eq!(m.logs().len(), 3);
    for p in 0..3 {
        let log = m
            .get(&TopicPartition::new("orders", p))
            .expect("log survives");
        assert_eq!(log.offsets().log_end, Offset(p as i64 + 1));
    }
    assert!(m.get(&TopicPartition::new("orders", 3)).is_none());
    m.housekeeping(1).expect("housekeeping");
}
