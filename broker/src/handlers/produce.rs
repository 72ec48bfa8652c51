//! Produce: append each partition's batches as its leader; answer per `acks`: 0 never,
//! 1 once appended here, -1 (all) once the records are below the high watermark, that is
//! on every in-sync replica, with at least `min.insync.replicas` of them.

use std::time::Duration;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use sluice_storage::{AppendOrigin, StorageError, TopicPartition};

use super::registry::{Operation, Resource};
use super::{str_bytes, Context, Reply};
use crate::error::BrokerError;
use crate::error_map;

pub(super) fn handle(ctx: Context, req: ProduceRequest) -> Reply {
    let missing: Vec<String> = req
        .topic_data
        .iter()
        .map(|t| t.name.as_str().to_string())
        .filter(|n| ctx.rm.topic(n).is_none())
        // Only topics this session may write, and create (on the cluster or the topic).
        .filter(|n| {
            ctx.authorized(Resource::Topic, n, Operation::Write)
                && (ctx.cluster_authorized(Operation::Create)
                    || ctx.authorized(Resource::Topic, n, Operation::Create))
        })
        .collect();
    if missing.is_empty() || !ctx.rm.config().auto_create_topics {
        return produce(ctx, req);
    }
    let req_acks_zero = req.acks == 0;
    // Kafka auto-creates on produce too when allowed; clients usually asked Metadata first.
    let create_then_produce = async move {
        for name in &missing {
            if let Err(e) = ctx.cluster.auto_create(&ctx.rm, name).await {
                tracing::info!(topic = %name, error = %e, "auto-creation failed");
            }
        }
        match produce(ctx, req) {
            Reply::Now(r) => Some(*r),
            Reply::Later(f) => Some(f.await),
            Reply::Nothing | Reply::Refused(_) => None,
        }
    };
    if req_acks_zero {
        // Nothing may be written back for acks=0, so the work goes on without a reply.
        tokio::spawn(create_then_produce);
        return Reply::Nothing;
    }
    Reply::Later(Box::pin(async move {
        create_then_produce
            .await
            .unwrap_or_else(|| ResponseKind::Produce(ProduceResponse::default()))
    }))
}

fn produce(ctx: Context, req: ProduceRequest) -> Reply {
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let acks_ok = (-1..=1).contains(&req.acks);
    let acks_all = req.acks == -1;
    let mut waiting = Vec::new();
    let image = ctx.cluster.image();
    // A transactional producer needs WRITE on its transactional id first; refused, nothing
    // of the request is appended.
    let txn_refused = req.transactional_id.as_ref().is_some_and(|id| {
        !ctx.authorized_in(&image, Resource::TransactionalId, id, Operation::Write)
    });
    for (ti, td) in req.topic_data.into_iter().enumerate() {
        let name = td.name.as_str().to_string();
        // Checked before existence: an unauthorized client learns nothing of the topic.
        let writable = ctx.authorized_in(&image, Resource::Topic, &name, Operation::Write);
        let topic = ctx.rm.topic(&name);
        let mut partitions = Vec::with_capacity(td.partition_data.len());
        for (pi, pd) in td.partition_data.into_iter().enumerate() {
            let mut r = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1);
            let tp = TopicPartition::new(name.clone(), pd.index);
            let result = if !acks_ok {
                Err(error_map::code(&BrokerError::InvalidRequiredAcks(req.acks)))
            } else if txn_refused {
                Err(error_map::code(
                    &BrokerError::TransactionalIdAuthorizationFailed,
                ))
            } else if !writable {
                Err(error_map::code(&BrokerError::TopicAuthorizationFailed))
            } else if topic.is_none() {
                Err(error_map::code(&BrokerError::UnknownTopicOrPartition))
            } else {
                match pd.records.as_deref() {
                    None | Some([]) => Err(error_map::code(&BrokerError::Storage(
                        StorageError::CorruptRecord("no records".into()),
                    ))),
                    Some(records) => ctx
                        .rm
                        .append(&tp, records, AppendOrigin::Client, acks_all)
                        .map_err(|e| {
                            tracing::debug!(partition = %tp, error = %e, "produce refused");
                            r.error_message = Some(str_bytes(e.to_string()));
                            r.record_errors = record_errors(&e);
                            error_map::code(&e)
                        }),
                }
            };
            match result {
                Ok(appended) => {
                    let info = appended.info;
                    metrics::counter!(crate::observability::names::PRODUCE_BYTES)
                        .increment(info.bytes as u64);
                    r = r
                        .with_base_offset(info.first_offset.0)
                        .with_log_append_time_ms(info.log_append_time.unwrap_or(-1))
                        .with_log_start_offset(info.log_start_offset.0);
                    if acks_all {
                        waiting.push((ti, pi, appended));
                    }
                }
                Err(code) => r.error_code = code,
            }
            partitions.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_partition_responses(partitions),
        );
    }
    if req.acks == 0 {
        return Reply::Nothing;
    }
    let resp = ProduceResponse::default().with_responses(responses);
    if waiting.is_empty() {
        return Reply::now(ResponseKind::Produce(resp));
    }
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    Reply::Later(Box::pin(async move {
        let mut resp = resp;
        let results = futures::future::join_all(
            waiting
                .into_iter()
                .map(|(ti, pi, a)| async move { (ti, pi, a.replicated(timeout).await) }),
        )
        .await;
        for (ti, pi, r) in results {
            if let Err(e) = r {
                let p = &mut resp.responses[ti].partition_responses[pi];
                p.error_code = error_map::code(&e);
                p.error_message = Some(str_bytes(e.to_string()));
                if !matches!(e, BrokerError::ReplicationTimedOut) {
                    p.base_offset = -1;
                }
            }
        }
        ResponseKind::Produce(resp)
    }))
}

/// The records a refusal names (KIP-467): clients fail exactly those and say why.
fn record_errors(e: &BrokerError) -> Vec<BatchIndexAndErrorMessage> {
    match e {
        BrokerError::Storage(
            StorageError::InvalidRecord { records, .. }
            | StorageError::InvalidTimestamp { records, .. },
        ) => records
            .iter()
            .map(|(index, why)| {
                BatchIndexAndErrorMessage::default()
                    .with_batch_index(*index)
                    .with_batch_index_error_message(Some(str_bytes(why.clone())))
            })
            .collect(),
        _ => Vec::new(),
    }
}
