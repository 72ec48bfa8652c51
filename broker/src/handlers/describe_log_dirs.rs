//! DescribeLogDirs: partition sizes per data directory, each directory's space (KIP-827) and
//! KAFKA_STORAGE_ERROR for one whose writes fail.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::{error_map, log_dirs};

pub(super) fn handle(ctx: &Context, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted = |topic: &str, p: i32| {
        req.topics.as_ref().is_none_or(|ts| {
            ts.iter()
                .any(|t| t.topic.as_str() == topic && t.partitions.contains(&p))
        })
    };
    let mut by_dir: BTreeMap<String, BTreeMap<String, Vec<DescribeLogDirsPartition>>> =
        BTreeMap::new();
    for d in &ctx.rm.config().log_dirs {
        by_dir.entry(d.display().to_string()).or_default();
    }
    for (tp, size, lag, dir) in ctx.rm.log_sizes() {
        if wanted(&tp.topic, tp.partition) {
            by_dir
                .entry(dir)
                .or_default()
                .entry(tp.topic)
                .or_default()
                .push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(tp.partition)
                        .with_partition_size(size as i64)
                        .with_offset_lag(lag),
                );
        }
    }
    let results = by_dir
        .into_iter()
        .map(|(dir, topics)| {
            let topics = topics
                .into_iter()
                .map(|(name, partitions)| {
                    DescribeLogDirsTopic::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partitions(partitions)
                })
                .collect();
            let path = std::path::Path::new(&dir);
            // A directory whose writes fail is offline, as Kafka reports one (its partitions
            // are still listed: they remain readable here).
            let error = match ctx.rm.log_dir_health().failure(path) {
                Some(_) => error_map::code(&BrokerError::LogDirOffline(dir.clone())),
                None => 0,
            };
            let (total, usable) =
                log_dirs::space(path).map_or((-1, -1), |(t, u)| (t as i64, u as i64));
            DescribeLogDirsResult::default()
                .with_error_code(error)
                .with_log_dir(str_bytes(dir))
                .with_topics(topics)
                .with_total_bytes(total)
                .with_usable_bytes(usable)
        })
        .collect();
    DescribeLogDirsResponse::default().with_results(results)
}
