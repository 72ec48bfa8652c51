//! A broker on port 0 in a temporary directory, for wire-level tests.

use sluice_broker::config::BrokerConfig;
use sluice_broker::server::Server;

/// A running broker; dropping the returned sender and directory ends it.
pub async fn start(
    settings: &[(&str, &str)],
) -> (
    std::net::SocketAddr,
    tempfile::TempDir,
    tokio::sync::watch::Sender<bool>,
) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = BrokerConfig::default();
    c.set("listeners", "PLAINTEXT://127.0.0.1:0")
        .expect("listeners");
    c.set("log.dirs", &dir.path().display().to_string())
        .expect("dirs");
    for (k, v) in settings {
        c.set(k, v).expect("setting");
    }
    let server = Server::bind(c).await.expect("bind");
    let addr = server.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server.run(rx));
    (addr, dir, tx)
}
