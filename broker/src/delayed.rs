//! Delayed operations (Kafka's purgatory): a request that cannot be answered yet waits on the
//! partitions it is about, and is re-checked each time one of them changes (an append, a
//! high-watermark or log-start move, a leadership change: everything that wakes a
//! partition's `appended`), until it completes or its deadline passes. acks=all produce,
//! the Fetch long poll and DeleteRecords all wait this way; none polls. ElectLeaders (and the
//! admin requests that wait for their change to reach this broker) complete on a metadata
//! change rather than a partition event, so they wait on the reconciled image's watch
//! (`Cluster::wait_for`), which wakes them on every image applied, likewise without polling.

use std::sync::Arc;

use tokio::time::Instant;

use crate::replica_manager::Partition;

/// Runs `try_complete` now and after every change to one of `partitions`, until it returns
/// `Some` or `deadline` passes (then `None`). Wake-ups are registered before each check, so a
/// change between the check and the wait is not missed. With no partition to wait on, it
/// waits out the deadline (as Kafka's delayed fetch of nothing does) and checks once more.
pub async fn wait_on<T>(
    partitions: &[Arc<Partition>],
    deadline: Instant,
    mut try_complete: impl FnMut() -> Option<T>,
) -> Option<T> {
    loop {
        let mut woken: Vec<_> = partitions
            .iter()
            .map(|p| Box::pin(p.appended.notified()))
            .collect();
        for w in &mut woken {
            w.as_mut().enable();
        }
        if let Some(done) = try_complete() {
            return Some(done);
        }
        if Instant::now() >= deadline {
            return None;
        }
        if woken.is_empty() {
            tokio::time::sleep_until(deadline).await;
            return try_complete();
        }
        let any = futures::future::select_all(woken.iter_mut().map(|w| w.as_mut()));
        if tokio::time::timeout_at(deadline, any).await.is_err() {
            return try_complete();
        }
    }
}
