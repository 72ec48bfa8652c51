//! CreateAcls, DescribeAcls and DeleteAcls (KIP-11, KIP-290 prefixed patterns): creation and
//! deletion are decided by the active controller; descriptions read this broker's image.
//! Create and Delete need ALTER on the cluster, Describe needs DESCRIBE on it; without an
//! authorizer all three answer SECURITY_DISABLED, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_replication::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType, ResourceType,
};

use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::error_map;

fn binding(c: &AclCreation) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::from_code(c.resource_type),
        resource_name: c.resource_name.to_string(),
        pattern_type: PatternType::from_code(c.resource_pattern_type),
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: AclOperation::from_code(c.operation),
        permission: AclPermissionType::from_code(c.permission_type),
    }
}

#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: ResourceType::from_code(resource_type),
        resource_name: name.as_ref().map(|s| s.to_string()),
        pattern_type: PatternType::from_code(pattern_type),
        principal: principal.as_ref().map(|s| s.to_string()),
        host: host.as_ref().map(|s| s.to_string()),
        operation: AclOperation::from_code(operation),
        permission: AclPermissionType::from_code(permission),
    }
}

fn delete_filter(f: &DeleteAclsFilter) -> AclBindingFilter {
    filter(
        f.resource_type_filter,
        &f.resource_name_filter,
        f.pattern_type_filter,
        &f.principal_filter,
        &f.host_filter,
        f.operation,
        f.permission_type,
    )
}

/// Why the whole request is refused before any binding is looked at: no DESCRIBE (ALTER) on
/// the cluster, or no authorizer.
fn refused(ctx: &Context, operation: AclOperation) -> Option<BrokerError> {
    if !ctx.cluster_authorized(operation) {
        Some(BrokerError::ClusterAuthorizationFailed)
    } else if !ctx.authorizer_enabled() {
        Some(BrokerError::SecurityDisabled)
    } else {
        None
    }
}

fn message(e: &impl std::fmt::Display) -> Option<StrBytes> {
    Some(str_bytes(e.to_string()))
}

pub(super) async fn create(ctx: Context, req: CreateAclsRequest) -> CreateAclsResponse {
    let failed = |code: i16, msg: Option<StrBytes>| {
        req.creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(msg.clone())
            })
            .collect::<Vec<_>>()
    };
    if let Some(e) = refused(&ctx, AclOperation::Alter) {
        return CreateAclsResponse::default()
            .with_results(failed(error_map::code(&e), message(&e)));
    }
    let acls = req.creations.iter().map(binding).collect();
    let results = match ctx.cluster.create_acls(acls).await {
        Err(e) => failed(error_map::code(&e), message(&e)),
        Ok(results) => results
            .into_iter()
            .map(|r| match r {
                Ok(()) => AclCreationResult::default().with_error_message(None),
                Err(e) => AclCreationResult::default()
                    .with_error_code(error_map::controller_error(&e).code())
                    .with_error_message(message(&e)),
            })
            .collect(),
    };
    CreateAclsResponse::default().with_results(results)
}

pub(super) fn describe(ctx: &Context, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let failed = |e: BrokerError| {
        DescribeAclsResponse::default()
            .with_error_code(error_map::code(&e))
            .with_error_message(message(&e))
    };
    if let Some(e) = refused(ctx, AclOperation::Describe) {
        return failed(e);
    }
    let f = filter(
        req.resource_type_filter,
        &req.resource_name_filter,
        req.pattern_type_filter,
        &req.principal_filter,
        &req.host_filter,
        req.operation,
        req.permission_type,
    );
    if let Some(why) = f.invalid() {
        return failed(BrokerError::InvalidRequest(why));
    }
    let image = ctx.cluster.image();
    // Grouped by resource pattern, as Kafka's DescribeAclsResponse.aclsResources does.
    let mut by_resource: BTreeMap<(ResourceType, &str, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for acl in image.acls.values().filter(|a| f.matches(a)) {
        by_resource
            .entry((acl.resource_type, &acl.resource_name, acl.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(acl.principal.clone()))
                    .with_host(str_bytes(acl.host.clone()))
                    .with_operation(acl.operation.code())
                    .with_permission_type(acl.permission.code()),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt.code())
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pt.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default()
        .with_error_message(None)
        .with_resources(resources)
}

pub(super) async fn delete(ctx: Context, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let failed = |code: i16, msg: Option<StrBytes>| {
        req.filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(msg.clone())
            })
            .collect::<Vec<_>>()
    };
    if let Some(e) = refused(&ctx, AclOperation::Alter) {
        return DeleteAclsResponse::default()
            .with_filter_results(failed(error_map::code(&e), message(&e)));
    }
    let filters = req.filters.iter().map(delete_filter).collect();
    let results = match ctx.cluster.delete_acls(filters).await {
        Err(e) => failed(error_map::code(&e), message(&e)),
        Ok(results) => results
            .into_iter()
            .map(|r| match r {
                Ok(deleted) => DeleteAclsFilterResult::default()
                    .with_error_message(None)
                    .with_matching_acls(deleted.iter().map(matching).collect()),
                Err(e) => DeleteAclsFilterResult::default()
                    .with_error_code(error_map::controller_error(&e).code())
                    .with_error_message(message(&e)),
            })
            .collect(),
    };
    DeleteAclsResponse::default().with_filter_results(results)
}

fn matching(acl: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_error_message(None)
        .with_resource_type(acl.resource_type.code())
        .with_resource_name(str_bytes(acl.resource_name.clone()))
        .with_pattern_type(acl.pattern_type.code())
        .with_principal(str_bytes(acl.principal.clone()))
        .with_host(str_bytes(acl.host.clone()))
        .with_operation(acl.operation.code())
        .with_permission_type(acl.permission.code())
}
