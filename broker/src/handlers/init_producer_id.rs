//! InitProducerId for idempotent producers: a fresh producer id (from blocks the controller
//! allocates, unique over the cluster), epoch 0. Transactional ids
//! need a transaction coordinator, which Sluice does not have yet: refused, not faked.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use sluice_replication::acl::{AclOperation, ResourceType};

use super::registry::Operation;
use super::Context;
use crate::error::BrokerError;
use crate::error_map;
use crate::security::authorizer::authorize_any;

pub(super) async fn handle(ctx: Context, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        let e =
            BrokerError::CoordinatorNotAvailable("transactional ids are not supported yet".into());
        return resp.with_error_code(error_map::code(&e));
    }
    // IDEMPOTENT_WRITE on the cluster, or (as Kafka allows since 2.8) WRITE on any topic.
    let image = ctx.cluster.image();
    let allowed = ctx.cluster_authorized(Operation::IdempotentWrite)
        || authorize_any(
            &ctx.rm.config().authorizer,
            image.acls.values(),
            &ctx.session,
            ResourceType::Topic,
            AclOperation::Write,
        );
    if !allowed {
        return resp.with_error_code(error_map::code(&BrokerError::ClusterAuthorizationFailed));
    }
    match ctx.cluster.next_producer_id().await {
        Ok(id) => resp
            .with_producer_id(ProducerId(id.0))
            .with_producer_epoch(0),
        Err(e) => resp.with_error_code(error_map::code(&e)),
    }
}
