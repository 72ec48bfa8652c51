//! Brokers in the cluster, as Kafka's ClusterControlManager keeps them: registration of a
//! new incarnation, fencing when a lease runs out, unfencing once caught up, and controlled
//! shutdown. Each takes a broker's leaderships and ISR places away or gives them back.

use uuid::Uuid;

use super::election::{elect, unclean_allowed};
use super::{change, ControllerError};
use crate::image::{Broker, MetadataImage, NO_LEADER};
use crate::record::MetadataRecord;

/// Broker `id` as registered, checked to be incarnation `epoch` when one is given.
pub fn registered(
    image: &MetadataImage,
    id: i32,
    epoch: Option<i64>,
) -> Result<&Broker, ControllerError> {
    let b = image.brokers.get(&id).ok_or_else(|| {
        ControllerError::BrokerNotRegistered(format!("broker {id} is not registered"))
    })?;
    match epoch {
        Some(epoch) if epoch != b.epoch => Err(ControllerError::StaleBrokerEpoch(format!(
            "broker {id} epoch {epoch} is stale (current {})",
            b.epoch
        ))),
        _ => Ok(b),
    }
}

/// What a registration decides: the broker's epoch and the records that make it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The incarnation epoch the broker is to use.
    pub epoch: i64,
    /// The records to commit (none when a retried registration is answered again).
    pub records: Vec<MetadataRecord>,
}

/// Registers broker `id` as a new incarnation, as Kafka's ClusterControlManager does. While
/// the registered incarnation still holds a valid session (`session_valid`: unfenced, lease
/// not run out) another process may not take the id: DUPLICATE_BROKER_REGISTRATION; the same
/// process retrying (same `incarnation`) gets its epoch again. The new incarnation starts
/// fenced, so the old one's leaderships and ISR places go at once (the new process has not
/// caught up with anything yet).
pub fn register_broker(
    image: &MetadataImage,
    id: i32,
    incarnation: Option<Uuid>,
    endpoints: Vec<crate::record::Endpoint>,
    rack: Option<String>,
    session_valid: bool,
) -> Result<Registration, ControllerError> {
    let existing = image.brokers.get(&id);
    if let Some(b) = existing.filter(|_| session_valid) {
        if incarnation.is_some() && b.incarnation == incarnation {
            return Ok(Registration {
                epoch: b.epoch,
                records: Vec::new(),
            });
        }
        return Err(ControllerError::DuplicateBrokerRegistration(format!(
                "broker {id} is registered as epoch {} with a valid session; another process may not take its id before that session ends",
                b.epoch
            ),
        ));
    }
    let epoch = existing.map_or(0, |b| b.epoch) + 1;
    let mut records = vec![MetadataRecord::RegisterBroker {
        id,
        epoch,
        endpoints,
        rack,
        incarnation,
    }];
    let mut after = image.clone();
    after
        .apply(&records[0])
        .map_err(|e| ControllerError::RecordsRejected(e.to_string()))?;
    records.extend(move_away(&after, id));
    Ok(Registration { epoch, records })
}

/// Fences broker `id` (its lease ran out, or its controlled shutdown is done): it leaves
/// every ISR, and partitions it led get a new leader from the ISR (or go offline).
pub fn fence_broker(
    image: &MetadataImage,
    id: i32,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let b = registered(image, id, None)?;
    let mut out = Vec::new();
    if !b.fenced {
        out.push(MetadataRecord::FenceBroker { id, epoch: b.epoch });
    }
    let mut after = image.clone();
    for r in &out {
        // Applying our own record to a copy cannot fail: the broker and epoch came from it.
        after.apply(r).expect("fence applies");
    }
    out.extend(move_away(&after, id));
    Ok(out)
}

/// Partition changes that take broker `id` out of ISRs and leaderships (Kafka's
/// `generateLeaderAndIsrUpdates` with a broker to remove). The last member of an ISR stays
/// in it, so a partition that goes offline waits for that replica to return rather than
/// losing track of who holds its committed records.
pub(super) fn move_away(image: &MetadataImage, id: i32) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader == id {
                let (leader, isr) = elect(image, t.id, p, id);
                out.push(change(t.id, i, p, Some(leader), Some(isr)));
            } else if p.isr.contains(&id) && p.isr.len() > 1 {
                let isr: Vec<i32> = p.isr.iter().copied().filter(|r| *r != id).collect();
                out.push(change(t.id, i, p, None, Some(isr)));
            }
        }
    }
    out
}

/// Broker ids that led something or were in an ISR while fenced: a fence whose partition
/// changes did not all commit (a controller that failed over in between) is finished by
/// [`super::repair`].
pub fn fenced_with_duties(image: &MetadataImage) -> Vec<i32> {
    image
        .brokers
        .values()
        .filter(|b| b.fenced)
        .map(|b| b.id)
        .filter(|id| !move_away(image, *id).is_empty())
        .collect()
}

/// Unfences broker `id` of incarnation `epoch`: it may lead again; offline partitions whose
/// last in-sync replica it is come back with it as leader, and offline partitions of topics
/// allowing unclean election take it as leader if it is a replica.
pub fn unfence_broker(
    image: &MetadataImage,
    id: i32,
    epoch: i64,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let b = registered(image, id, Some(epoch))?;
    let mut out = Vec::new();
    if b.fenced || b.shutting_down {
        out.push(MetadataRecord::UnfenceBroker { id, epoch });
    }
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader != NO_LEADER || !p.replicas.contains(&id) {
                continue;
            }
            if p.isr.contains(&id) {
                out.push(change(t.id, i, p, Some(id), None));
            } else if unclean_allowed(image, t.id) {
                // Records only the lost ISR had are gone; this replica's log is the truth.
                out.push(change(t.id, i, p, Some(id), Some(vec![id])));
            }
        }
    }
    Ok(out)
}

/// Controlled shutdown of broker `id`, as Kafka's `handleBrokerInControlledShutdown`: it
/// leaves every ISR and its leaderships move to other in-sync replicas at once, so acks=all
/// producers stop waiting for it and clients switch leaders without waiting out a lease.
/// A partition it is the last in-sync replica of goes offline until it returns.
pub fn begin_shutdown(
    image: &MetadataImage,
    id: i32,
    epoch: i64,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    registered(image, id, Some(epoch))?;
    let mut out = vec![MetadataRecord::BeginShutdown { id, epoch }];
    let mut after = image.clone();
    after.apply(&out[0]).expect("epoch checked above");
    out.extend(move_away(&after, id));
    Ok(out)
}

/// Whether broker `id` leads no partition.
pub fn leads_nothing(image: &MetadataImage, id: i32) -> bool {
    image
        .topics
        .values()
        .all(|t| t.partitions.iter().all(|p| p.leader != id))
}

/// The end of a controlled shutdown: once broker `id` (incarnation `epoch`) leads nothing it
/// is fenced at once (Kafka's SHUTDOWN_NOW), rather than when its lease runs out.
pub fn finish_shutdown(
    image: &MetadataImage,
    id: i32,
    epoch: i64,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let b = registered(image, id, Some(epoch))?;
    if !b.shutting_down || b.fenced || !leads_nothing(image, id) {
        return Ok(Vec::new());
    }
    fence_broker(image, id)
}
