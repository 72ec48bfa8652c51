//! Prometheus metrics and the health endpoint.
//!
//! `GET /metrics` renders every metric in Prometheus' text format; `GET /health` answers
//! `ok` while the broker serves. A deliberately tiny HTTP/1.1 responder: two fixed routes do
//! not justify an HTTP framework in the broker's dependency tree.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Metric names, in one place so dashboards and code agree.
pub mod names {
    /// Requests handled, by API (`api` label).
    pub const REQUESTS: &str = "sluice_requests_total";
    /// Request handling latency in seconds, by API.
    pub const REQUEST_SECONDS: &str = "sluice_request_duration_seconds";
    /// Request bytes received.
    pub const BYTES_IN: &str = "sluice_bytes_in_total";
    /// Response bytes sent.
    pub const BYTES_OUT: &str = "sluice_bytes_out_total";
    /// Open client connections.
    pub const CONNECTIONS: &str = "sluice_active_connections";
    /// Partitions hosted.
    pub const PARTITIONS: &str = "sluice_partitions";
    /// Record bytes appended by producers.
    pub const PRODUCE_BYTES: &str = "sluice_produce_bytes_total";
    /// Gauge: partitions led here whose committed ISR (the one Metadata shows) is smaller
    /// than their replication factor: the replica set without replicas a reassignment is
    /// adding, as Kafka counts it (`Partition.isUnderReplicated`).
    pub const UNDER_REPLICATED: &str = "sluice_under_replicated_partitions";
    /// Gauge per log directory (`dir` label): 1 while writes to it fail (a full disk, an I/O
    /// error), 0 otherwise.
    pub const LOG_DIR_OFFLINE: &str = "sluice_log_dir_offline";
    /// Gauge per log directory (`dir` label): bytes available to the broker.
    pub const LOG_DIR_FREE_BYTES: &str = "sluice_log_dir_free_bytes";
    /// Gauge: compacted partitions whose records the cleaner could not decode, which it skips
    /// until they are reopened (Kafka's `uncleanable-partitions-count`).
    pub const UNCLEANABLE_PARTITIONS: &str = "sluice_uncleanable_partitions";
}

/// Installs the global recorder (once per process) and returns the handle to render it.
pub fn install() -> Option<PrometheusHandle> {
    match PrometheusBuilder::new().install_recorder() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}

/// Serves `/metrics` and `/health` on `addr` until shutdown.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics and health endpoint listening");
    loop {
        let (mut stream, _) = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            r = listener.accept() => r?,
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match stream.read(&mut buf).await {
                Ok(n) => n,
                Err(_) => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => ("200 OK", handle.render()),
                "/health" => ("200 OK", "ok\n".to_string()),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let response = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                tracing::debug!(error = %e, "metrics client went away");
            }
        });
    }
}
