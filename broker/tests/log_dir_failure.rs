//! A disk failure under a log directory stops the broker, which reports the directory.

use std::time::Duration;

use sluice_broker::config::BrokerConfig;
use sluice_broker::error::BrokerError;
use sluice_broker::server::Server;
use sluice_storage::StorageError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_error_stops_the_broker_with_the_failed_directory() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = BrokerConfig::default();
    c.set("listeners", "PLAINTEXT://127.0.0.1:0")
        .expect("listeners");
    c.set("log.dirs", &dir.path().display().to_string())
        .expect("dirs");
    c.metrics_listener = None;
    let server = Server::bind(c).await.expect("bind");
    let rm = server.replica_manager();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(server.run(rx));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!running.is_finished());
    // A fetch met a bad sector in some segment under the directory.
    rm.storage_error(&StorageError::Io {
        path: dir.path().join("orders-0").join("00000000000000000000.log"),
        source: std::io::Error::from_raw_os_error(5),
    });
    assert_eq!(
        rm.log_dir_health().offline_dirs(),
        vec![dir.path().display().to_string()]
    );
    let stopped = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the broker stops")
        .expect("run task");
    match stopped {
        Err(BrokerError::LogDirOffline(dirs)) => {
            assert_eq!(dirs, dir.path().display().to_string())
        }
        other => panic!("stopped with {other:?}"),
    }
}
