//! Produce: append each partition's batches; answer per `acks` (0: no response; 1 and -1:
//! after the append, which on a single node is also the high watermark).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use sluice_storage::TopicPartition;

use super::{str_bytes, Context};
use crate::error_map;

pub(super) fn handle(ctx: &Context, req: ProduceRequest) -> Option<ProduceResponse> {
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let acks_ok = (-1..=1).contains(&req.acks);
    for td in req.topic_data {
        let name = td.name.as_str().to_string();
        let topic = ctx.rm.topic(&name).or_else(|| {
            // Kafka auto-creates on produce too when allowed; clients usually asked Metadata first.
            (ctx.rm.config().auto_create_topics)
                .then(|| ctx.rm.auto_create(&name).ok())
                .flatten()
        });
        let mut partitions = Vec::with_capacity(td.partition_data.len());
        for pd in td.partition_data {
            let mut r = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1);
            let tp = TopicPartition::new(name.clone(), pd.index);
            let result = if !acks_ok {
                Err(ResponseError::InvalidRequiredAcks.code())
            } else if topic.is_none() {
                Err(ResponseError::UnknownTopicOrPartition.code())
            } else {
                match pd.records.as_deref() {
                    None | Some([]) => Err(ResponseError::CorruptMessage.code()),
                    Some(records) => ctx.rm.append(&tp, records).map_err(|e| {
                        tracing::debug!(partition = %tp, error = %e, "produce refused");
                        r.error_message = Some(str_bytes(e.to_string()));
                        error_map::code(&e)
                    }),
                }
            };
            match result {
                Ok(info) => {
                    metrics::counter!(crate::observability::names::PRODUCE_BYTES)
                        .increment(info.bytes as u64);
                    r = r
                        .with_base_offset(info.first_offset.0)
                        .with_log_append_time_ms(info.log_append_time.unwrap_or(-1))
                        .with_log_start_offset(info.log_start_offset.0);
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
    (req.acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}
