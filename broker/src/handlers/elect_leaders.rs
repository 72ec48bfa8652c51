//! ElectLeaders (KIP-460). PREFERRED: leadership moves back to each partition's first
//! replica where it is alive and in sync. UNCLEAN: an offline partition gets a leader, a live
//! in-sync replica if one is back, else any live replica (losing what only the others had).
//! Decided by the controller; answered once this broker's metadata shows the new leaders.

use std::time::Duration;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use sluice_replication::controller;
use sluice_replication::image::{MetadataImage, Partition, NO_LEADER};

use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::error_map;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// (partition, error code, error message)
type Outcome = (i32, i16, Option<String>);

fn partition<'a>(image: &'a MetadataImage, topic: &str, p: i32) -> Option<&'a Partition> {
    image
        .topic_by_name(topic)
        .and_then(|t| t.partitions.get(usize::try_from(p).ok()?))
}

fn unknown() -> BrokerError {
    BrokerError::UnknownTopicOrPartition
}

/// Why partition `p` of `topic` cannot (or need not) get an unclean election, if so.
fn precheck_unclean(image: &MetadataImage, topic: &str, p: i32) -> Option<BrokerError> {
    let Some(part) = partition(image, topic, p) else {
        return Some(unknown());
    };
    if part.leader != NO_LEADER {
        return Some(BrokerError::ElectionNotNeeded(format!(
            "broker {} leads",
            part.leader
        )));
    }
    if controller::unclean_candidate(image, part).is_none() {
        return Some(BrokerError::EligibleLeadersNotAvailable(
            "no replica is live".to_string(),
        ));
    }
    None
}

/// Why partition `p` of `topic` cannot (or need not) move to its preferred leader, if so.
fn precheck(image: &MetadataImage, topic: &str, p: i32) -> Option<BrokerError> {
    let Some(part) = partition(image, topic, p) else {
        return Some(unknown());
    };
    let preferred = part.replicas[0];
    if part.leader == preferred {
        return Some(BrokerError::ElectionNotNeeded(format!(
            "broker {preferred} already leads"
        )));
    }
    let shutting_down = image
        .brokers
        .get(&preferred)
        .is_some_and(|b| b.shutting_down);
    if !part.isr.contains(&preferred) || !image.is_live(preferred) || shutting_down {
        return Some(BrokerError::PreferredLeaderNotAvailable(format!(
            "preferred leader {preferred} is not a live in-sync replica"
        )));
    }
    None
}

pub(super) async fn handle(ctx: Context, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let image = ctx.cluster.image();
    let wanted: Vec<(String, Vec<i32>)> = match &req.topic_partitions {
        Some(tps) => tps
            .iter()
            .map(|t| (t.topic.as_str().to_string(), t.partitions.clone()))
            .collect(),
        None => image
            .topics
            .values()
            .map(|t| (t.name.clone(), (0..t.partitions.len() as i32).collect()))
            .collect(),
    };
    let mut results: Vec<(String, Vec<Outcome>)> = Vec::new();
    let mut to_elect = Vec::new();
    for (topic, partitions) in &wanted {
        let mut rs = Vec::new();
        for p in partitions {
            let refusal = match req.election_type {
                PREFERRED => precheck(&image, topic, *p),
                UNCLEAN => precheck_unclean(&image, topic, *p),
                other => Some(BrokerError::InvalidRequest(format!(
                    "unknown election type {other}"
                ))),
            };
            match refusal {
                Some(e) => rs.push((*p, error_map::code(&e), Some(e.to_string()))),
                None => {
                    to_elect.push((topic.clone(), *p));
                    rs.push((*p, 0, None));
                }
            }
        }
        results.push((topic.clone(), rs));
    }
    if !to_elect.is_empty() {
        let unclean = req.election_type == UNCLEAN;
        let decided = ctx
            .cluster
            .elect_leaders(unclean, Some(to_elect.clone()))
            .await;
        let outcome = match decided {
            Ok(()) => {
                let within = Duration::from_millis(req.timeout_ms.clamp(1000, 60_000) as u64);
                let elected = |x: &Partition| {
                    if unclean {
                        x.leader != NO_LEADER
                    } else {
                        x.leader == x.replicas[0]
                    }
                };
                let done = ctx
                    .cluster
                    .wait_for(within, |i| {
                        to_elect
                            .iter()
                            .all(|(t, p)| partition(i, t, *p).is_some_and(elected))
                    })
                    .await;
                if done {
                    Ok(())
                } else {
                    let e = BrokerError::TimedOut("the election did not happen in time".into());
                    Err((error_map::code(&e), e.to_string()))
                }
            }
            Err(e) => Err((error_map::code(&e), e.to_string())),
        };
        if let Err((code, why)) = outcome {
            for (topic, rs) in &mut results {
                for r in rs.iter_mut() {
                    if r.1 == 0 && to_elect.contains(&(topic.clone(), r.0)) {
                        *r = (r.0, code, Some(why.clone()));
                    }
                }
            }
        }
    }
    let results = results
        .into_iter()
        .map(|(topic, rs)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(str_bytes(topic)))
                .with_partition_result(
                    rs.into_iter()
                        .map(|(p, code, msg)| {
                            PartitionResult::default()
                                .with_partition_id(p)
                                .with_error_code(code)
                                .with_error_message(msg.map(str_bytes))
                        })
                        .collect(),
                )
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}
