//! Turns committed metadata into this broker's state: every new image is applied to the
//! replica manager (logs, roles, ISRs), the fetchers follow the new leaders, and the group
//! coordinator takes or gives up the `__consumer_offsets` partitions it now leads or not.
//! Also proposes ISR changes for the partitions this node leads.

use std::sync::Arc;
use std::time::Duration;

use sluice_replication::isr;
use sluice_replication::pending_isr::{AfterAnswer, AlterIsrAnswer, PendingIsr};
use sluice_replication::quorum::service::{ControllerRequest, ControllerResponse};
use tokio::sync::watch;

use super::fetcher::Fetchers;
use super::Cluster;
use crate::clock::now_ms;
use crate::group::GroupCoordinator;
use crate::replica_manager::{Partition, ReplicaManager};

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
    let mut previous: Option<Arc<sluice_replication::image::MetadataImage>> = None;
    loop {
        let image = images.borrow_and_update().clone();
        let rm2 = Arc::clone(&rm);
        // Led here only by the incarnation the image registered.
        let image2 = match image.as_led_by(rm.node_id(), cluster.broker_epoch()) {
            std::borrow::Cow::Borrowed(_) => Arc::clone(&image),
            std::borrow::Cow::Owned(view) => Arc::new(view),
        };
        if let Err(e) = tokio::task::spawn_blocking(move || rm2.apply_image(&image2)).await {
            tracing::error!(error = %e, "applying metadata panicked");
        }
        // Each load on a blocking thread of its own, not awaited: the reconciler goes on
        // applying images (and requests for other groups go on) while a partition replays.
        for load in groups.follow_leadership() {
            let p = load.partition();
            let replay = tokio::task::spawn_blocking(move || {
                tracing::debug!(partition = p, "replaying consumer groups");
                load.run()
            });
            // Awaited apart, so that a panic's message reaches the log (the slot itself is
            // marked failed by the load's drop).
            tokio::spawn(async move {
                if let Err(e) = replay.await {
                    tracing::error!(partition = p, error = %e, "loading consumer groups panicked");
                }
            });
        }
        // Topics gone (or recreated under a new id): their committed offsets go too, so a
        // recreated topic starts from auto.offset.reset (issue 22 item 6).
        let deleted: std::collections::HashSet<String> = previous
            .iter()
            .flat_map(|prev| prev.topic_ids.iter())
            .filter(|(name, id)| image.topic_ids.get(*name) != Some(*id))
            .map(|(name, _)| name.clone())
            .collect();
        if !deleted.is_empty() {
            let groups = Arc::clone(&groups);
            let done = tokio::task::spawn_blocking(move || {
                groups.delete_topic_offsets(&|t| deleted.contains(t))
            })
            .await;
            if let Err(e) = done {
                tracing::error!(error = %e, "removing the offsets of deleted topics panicked");
            }
        }
        previous = Some(Arc::clone(&image));
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
/// the partitions this node leads, until `stop`. A change whose outcome is unknown stays
/// pending and is sent again (Kafka's AlterPartitionManager); what each answer means is
/// [`sluice_replication::pending_isr::after_answer`]'s.
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
        let eligible = |broker: i32, fetched_epoch: Option<i64>| {
            image.brokers.get(&broker).is_some_and(|b| {
                !b.fenced
                    && !b.shutting_down
                    && isr::broker_epoch_eligible(fetched_epoch, Some(b.epoch))
            })
        };
        for p in rm.led() {
            let Some(change) = p.isr_change_to_propose(now, eligible) else {
                continue;
            };
            let Some(topic) = image.topic_by_name(&p.tp.topic).map(|t| t.id) else {
                // Never sent: nothing can have changed.
                p.isr_change_answered(change.id, AlterIsrAnswer::NotSent);
                continue;
            };
            tracing::info!(partition = %p.tp, isr = ?change.isr, "proposing an ISR change");
            let (cluster, stop) = (Arc::clone(&cluster), stop.clone());
            tokio::spawn(alter_isr(cluster, p, topic, change, stop));
        }
    }
}

/// First wait before sending an unanswered ISR change again; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Kafka's AlterPartitionManager backs off to at most a few seconds between attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Sends `change` to the controller until an answer settles it, the change is no longer
/// pending, or `stop`.
async fn alter_isr(
    cluster: Arc<Cluster>,
    p: Arc<Partition>,
    topic: uuid::Uuid,
    change: PendingIsr,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = RETRY_FIRST;
    // The incarnation each proposed follower fetched as, for the controller to check.
    let broker_epochs: Vec<(i32, i64)> = p
        .replica()
        .followers
        .map(|t| {
            change
                .isr
                .iter()
                .filter_map(|r| t.broker_epoch(*r).map(|e| (*r, e)))
                .collect()
        })
        .unwrap_or_default();
    loop {
        let req = ControllerRequest::AlterIsr {
            leader: cluster.node_id,
            topic,
            partition: p.tp.partition,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            isr: change.isr.clone(),
            broker_epochs: broker_epochs.clone(),
        };
        let answer = match cluster.request(req).await {
            Ok(ControllerResponse::Altered) => AlterIsrAnswer::Altered,
            Ok(ControllerResponse::Error(e)) => {
                tracing::info!(partition = %p.tp, error = %e, "ISR change refused");
                AlterIsrAnswer::Refused(e)
            }
            Ok(other) => {
                tracing::info!(partition = %p.tp, answer = ?other, "ISR change unanswered");
                AlterIsrAnswer::Unanswered
            }
            Err(e) => {
                tracing::info!(partition = %p.tp, error = %e, "ISR change unanswered");
                AlterIsrAnswer::Unanswered
            }
        };
        match p.isr_change_answered(change.id, answer) {
            AfterAnswer::Retry => {}
            AfterAnswer::Ignore | AfterAnswer::AwaitImage | AfterAnswer::Revert => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(RETRY_MAX);
        // The image may have settled it meanwhile.
        if p.replica()
            .pending_isr
            .as_ref()
            .is_none_or(|c| c.id != change.id)
        {
            return;
        }
    }
}
