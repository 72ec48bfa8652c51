//! DescribeCluster (KIP-700): the live brokers and the active controller, from the metadata
//! image.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{str_bytes, Context};

pub(super) fn handle(ctx: &Context, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let image = ctx.cluster.image();
    let brokers = super::live_brokers(&image, ctx.session.listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            let mut r = DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port);
            r.rack = rack.map(str_bytes);
            r
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(ctx.rm.config().cluster_id.clone()))
        .with_controller_id(BrokerId(ctx.cluster.controller_id().unwrap_or(-1)))
        .with_brokers(brokers)
}
