//! A broker's life in the cluster: join the quorum as a learner (non-voters), register for a
//! new incarnation epoch, heartbeat to keep its lease (unfenced once it has caught up with
//! the metadata log), and on shutdown ask the controller to move its leaderships away first.

use std::sync::Arc;
use std::time::Duration;

use sluice_replication::quorum::service::{ControllerRequest, ControllerResponse};
use sluice_replication::record::Endpoint;

use super::Cluster;

/// How this broker presents itself to the controller.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Listeners as advertised: PLAINTEXT for clients, INTERNAL when configured.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
}

/// Registers and heartbeats, for as long as the broker runs (the task is aborted at
/// shutdown).
pub async fn run(cluster: Arc<Cluster>, reg: Registration) {
    let backoff = Duration::from_millis(200);
    // One per process: a registration retried after a lost answer is recognised as ours,
    // while another process taking this node id is refused until our session ends.
    let incarnation = uuid::Uuid::new_v4();
    if !cluster.voter {
        loop {
            let req = ControllerRequest::AddLearner {
                id: cluster.node_id,
                addr: cluster.raft_addr.clone(),
            };
            match cluster.request(req).await {
                Ok(ControllerResponse::Done) => break,
                Ok(other) => {
                    tracing::warn!(answer = ?other, "joining the metadata quorum as a learner")
                }
                Err(e) => tracing::warn!(error = %e, "joining the metadata quorum as a learner"),
            }
            tokio::time::sleep(backoff).await;
        }
    }
    'register: loop {
        let req = ControllerRequest::RegisterBroker {
            id: cluster.node_id,
            endpoints: reg.endpoints.clone(),
            rack: reg.rack.clone(),
            incarnation: Some(incarnation),
        };
        let (epoch, caught_up_at) = match cluster.request(req).await {
            Ok(ControllerResponse::Registered {
                epoch,
                metadata_offset,
            }) => (epoch, metadata_offset),
            Ok(other) => {
                tracing::warn!(answer = ?other, "registration refused");
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "registration failed");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        tracing::info!(
            node = cluster.node_id,
            epoch,
            "registered with the controller"
        );
        cluster.set_broker_epoch(epoch);
        let mut fenced = true;
        loop {
            let req = ControllerRequest::Heartbeat {
                id: cluster.node_id,
                epoch,
                caught_up: cluster.caught_up_to(caught_up_at),
                shutting_down: false,
            };
            match cluster.request(req).await {
                Ok(ControllerResponse::Heartbeat { fenced: now, .. }) => {
                    if now != fenced {
                        tracing::info!(
                            node = cluster.node_id,
                            fenced = now,
                            "broker fencing changed"
                        );
                        fenced = now;
                    }
                }
                Ok(ControllerResponse::Error(e)) if e.registration_lost() => {
                    tracing::warn!(error = %e, "registration lost; registering again");
                    continue 'register;
                }
                Ok(other) => tracing::warn!(answer = ?other, "heartbeat refused"),
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
            // Heartbeat faster until unfenced, so a starting broker takes load sooner.
            let wait = if fenced {
                reg.heartbeat_interval.min(Duration::from_millis(100))
            } else {
                reg.heartbeat_interval
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Asks the controller to move this broker's leaderships to other in-sync replicas, and waits
/// (up to `within`) until it leads nothing, so clients switch without waiting out a lease.
pub async fn controlled_shutdown(cluster: &Cluster, within: Duration) {
    let Some(epoch) = cluster.broker_epoch() else {
        return;
    };
    // Each request may itself wait for a controller: the whole handover is bounded.
    let handover = async {
        loop {
            let req = ControllerRequest::Heartbeat {
                id: cluster.node_id,
                epoch,
                caught_up: true,
                shutting_down: true,
            };
            match cluster.request(req).await {
                Ok(ControllerResponse::Heartbeat {
                    shutdown_ready: true,
                    ..
                }) => {
                    tracing::info!("controlled shutdown: leaderships moved away");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "controlled shutdown: no controller; stopping anyway");
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(within, handover).await.is_err() {
        tracing::warn!("controlled shutdown did not finish in time; stopping anyway");
    }
}
