//! Three Sluice nodes in this process, each a controller-quorum voter and a broker, on free
//! local ports: for the tests that need replication without containers.

use std::path::Path;

use sluice_broker::config::BrokerConfig;
use sluice_broker::server::Server;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Fast failure detection, as in the Python cluster tests.
pub const FAST: [(&str, &str); 4] = [
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "300"),
    ("replica.lag.time.max.ms", "4000"),
    ("replica.fetch.backoff.ms", "200"),
];

/// `n` distinct ports below Linux's ephemeral range, free right now. Test binaries started
/// together have consecutive process ids: each starts its search in a window of its own, or
/// two clusters would probe the same ports, both find them free, and talk to each other.
fn free_ports(n: usize) -> Vec<u16> {
    let first = 20000 + (std::process::id() % 1000) as u16 * 12;
    // Held until all are found, so the same port is not handed out twice.
    let held: Vec<std::net::TcpListener> = (first..32000)
        .filter_map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
        .take(n)
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

pub struct Node {
    pub id: i32,
    pub port: u16,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts nodes 1..=3 (every one a voter and a broker) and returns once all serve.
pub async fn cluster(dir: &Path) -> Vec<Node> {
    let free = free_ports(6);
    let ports: Vec<(u16, u16)> = free.chunks(2).map(|p| (p[0], p[1])).collect();
    let voters = ports
        .iter()
        .enumerate()
        .map(|(i, (_, raft))| format!("{}@127.0.0.1:{raft}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    let mut ready = Vec::new();
    for (i, (port, raft)) in ports.into_iter().enumerate() {
        let id = i as i32 + 1;
        let mut c = BrokerConfig::default();
        c.set("node.id", &id.to_string()).unwrap();
        c.set(
            "listeners",
            &format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{raft}"),
        )
        .unwrap();
        c.set("controller.quorum.voters", &voters).unwrap();
        c.set(
            "log.dirs",
            &dir.join(format!("node{id}")).display().to_string(),
        )
        .unwrap();
        c.set("sluice.metrics.listener", "").unwrap();
        for (k, v) in FAST {
            c.set(k, v).unwrap();
        }
        let (stop, rx) = watch::channel(false);
        let (up, is_up) = tokio::sync::oneshot::channel();
        // All bind at once: a node serves only once a quorum of voters has formed.
        let task = tokio::spawn(async move {
            let server = Server::bind(c).await.expect("bind");
            let _ = up.send(());
            server.run(rx).await.expect("broker runs");
        });
        ready.push(is_up);
        nodes.push(Node {
            id,
            port,
            stop,
            task,
        });
    }
    for r in ready {
        r.await.expect("node up");
    }
    nodes
}

impl Node {
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

/// Sends the tests' logs to the test output, filtered by `RUST_LOG`.
#[allow(dead_code)] // not every test binary uses it
pub fn trace_to_test_output() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// A client of the whole cluster, with time for elections in its API timeout.
#[allow(dead_code)]
pub fn client_config(nodes: &[Node]) -> sluice_client::ClientConfig {
    let bootstrap = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect::<Vec<_>>()
        .join(",");
    sluice_client::ClientConfig {
        api_timeout: std::time::Duration::from_secs(30),
        ..sluice_client::ClientConfig::new(&bootstrap)
    }
}
