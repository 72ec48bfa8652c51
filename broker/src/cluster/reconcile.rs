//! Turns committed metadata into this broker's state: every new image is applied to the
//! replica manager (logs, roles, ISRs), the fetchers follow the new leaders, and the group
//! coordinator takes or gives up the `__consumer_offsets` partitions it now leads or not.
//! Also proposes ISR changes for the partitions this node leads.

use std::sync::Arc;
use std::time::Duration;

use sluice_replication::quorum::service::{ControllerRequest, ControllerResponse};
use tokio::sync::watch;

use super::fetcher::Fetchers;
use super::Cluster;
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::replica_manager::{now_ms, ReplicaManager};

/// Applies every committed image until `stop`.
pub async fn run(
    cluster: Arc<Cluster>,
    rm: Arc<ReplicaManager>,
    groups: Arc<GroupCoordinator>,
    fetchers: Arc<Fetchers>,
    mut stop: watch::Receiver<bool>,
) {
    let mut images = cluster.quorum.image.clone();
    let mut strays_checked = false;
    loop {
        let image = images.borrow_and_update().clone();
        let rm2 = Arc::clone(&rm);
        // Led here only by the incarnation the image registered.
        let image2 = match image.as_led_by(rm.node_id(), cluster.broker_epoch()) {
            std::borrow::Cow::Borrowed(_) => Arc::clone(&image),
            std::borrow::Cow::Owned(view) => Arc::new(view),
        };
        let changed = match tokio::task::spawn_blocking(move || rm2.apply_image(&image2)).await {
            Ok(changed) => changed,
            Err(e) => {
                tracing::error!(error = %e, "applying metadata panicked");
                Vec::new()
            }
        };
        let node = rm.node_id();
        for p in changed.iter().filter(|p| p.tp.topic == OFFSETS_TOPIC) {
            let leads = p.replica().leader == node;
            let (groups, p) = (Arc::clone(&groups), Arc::clone(p));
            let result = tokio::task::spawn_blocking(move || {
                if leads {
                    groups.load_partition(&p)
                } else {
                    groups.unload_partition(p.tp.partition);
                    Ok(())
                }
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "loading consumer groups failed"),
                Err(e) => tracing::error!(error = %e, "loading consumer groups panicked"),
            }
        }
        fetchers.update();
        if !strays_checked && cluster.serving(&image) {
            // Caught up with the metadata log: what it does not assign here is stray.
            strays_checked = true;
            let (rm, image) = (Arc::clone(&rm), Arc::clone(&image));
            if let Err(e) = tokio::task::spawn_blocking(move || rm.delete_strays(&image)).await {
                tracing::error!(error = %e, "deleting stray logs panicked");
            }
        }
        cluster.publish_reconciled(image);
        tokio::select! {
            r = images.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

/// Proposes ISR changes (shrink after `replica.lag.time.max.ms`, expand when caught up) for
/// the partitions this node leads, until `stop`.
pub async fn isr_updates(
    cluster: Arc<Cluster>,
    rm: Arc<ReplicaManager>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = now_ms();
        let image = cluster.image();
        let eligible = |broker: i32| {
            image
                .brokers
                .get(&broker)
                .is_some_and(|b| !b.fenced && !b.shutting_down)
        };
        for p in rm.led() {
            let Some((leader_epoch, partition_epoch, isr)) = p.isr_change_to_propose(now, eligible)
            else {
                continue;
            };
            let Some(topic) = cluster.image().topic_by_name(&p.tp.topic).map(|t| t.id) else {
                p.isr_change_failed();
                continue;
            };
            tracing::info!(partition = %p.tp, ?isr, "proposing an ISR change");
            let cluster = Arc::clone(&cluster);
            tokio::spawn(async move {
                let req = ControllerRequest::AlterIsr {
                    leader: cluster.node_id,
                    topic,
                    partition: p.tp.partition,
                    leader_epoch,
                    partition_epoch,
                    isr,
                };
                match cluster.request(req).await {
                    Ok(ControllerResponse::Altered) => {}
                    other => {
                        tracing::info!(partition = %p.tp, answer = ?other, "ISR change not made");
                        p.isr_change_failed();
                    }
                }
            });
        }
    }
}
