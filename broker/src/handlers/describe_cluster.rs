//! DescribeCluster (KIP-700): this node as the whole cluster and its controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{str_bytes, Context};

pub(super) fn handle(ctx: &Context, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let node = ctx.rm.config().node_id;
    let (host, port) = ctx.advertised.clone();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(ctx.rm.config().cluster_id.clone()))
        .with_controller_id(BrokerId(node))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(node))
            .with_host(str_bytes(host))
            .with_port(port as i32)])
}
