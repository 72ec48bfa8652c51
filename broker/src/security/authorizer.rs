//! Whether a session may do an operation on a resource: Kafka's StandardAuthorizer rules,
//! as a pure function of the settings, the ACLs of the metadata image and the request.
//!
//! In order: no authorizer configured allows everything; a super user is allowed
//! everything; a matching DENY refuses, whatever ALLOWs match; a matching ALLOW allows;
//! otherwise a resource some ACL names (for any principal, host or operation) is refused,
//! and one no ACL names is allowed only with `allow.everyone.if.no.acl.found`.
//! An ACL names the resource when its pattern is the LITERAL name, the LITERAL `*`, or a
//! PREFIXED prefix of the name; it matches the request when, further, its principal is the
//! session's or `User:*`, its host is the client's address or `*`, and its operation is
//! the one asked, ALL, or (ALLOW only) one that implies it: READ, WRITE, DELETE and ALTER
//! imply DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS.

use sluice_replication::acl::{
    AclBinding, AclOperation, AclPermissionType, PatternType, ResourceType, WILDCARD_HOST,
    WILDCARD_PRINCIPAL, WILDCARD_RESOURCE,
};

use super::Session;
use crate::config::AuthorizerConfig;

/// One request to authorize: `operation` on the resource `resource_type`:`name`.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    /// The resource type (never ANY or UNKNOWN).
    pub resource_type: ResourceType,
    /// The resource's name (`kafka-cluster` for the cluster).
    pub name: &'a str,
    /// The operation (never ANY or UNKNOWN).
    pub operation: AclOperation,
}

/// Whether `session` may do `action`, given the authorizer settings and every ACL binding.
pub fn authorize<'a>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a AclBinding>,
    session: &Session,
    action: Action<'_>,
) -> bool {
    if !config.enabled {
        return true;
    }
    let principal = session.principal.to_string();
    if config.super_users.contains(&principal) {
        return true;
    }
    // Kafka matches hosts on the bare address; sessions print it as `/10.0.0.7`.
    let host = session
        .client_host
        .strip_prefix('/')
        .unwrap_or(&session.client_host);
    let mut resource_has_acls = false;
    let mut allowed = false;
    for acl in acls {
        if !names(acl, action) {
            continue;
        }
        resource_has_acls = true;
        match applies(acl, &principal, host, action.operation) {
            Some(AclPermissionType::Deny) => return false,
            Some(AclPermissionType::Allow) => allowed = true,
            Some(AclPermissionType::Any | AclPermissionType::Unknown) | None => {}
        }
    }
    allowed || (!resource_has_acls && config.allow_everyone_if_no_acl_found)
}

/// Whether `session` may do `operation` on at least one resource of `resource_type`
/// (Kafka's `authorizeByResourceType`, which lets a producer with WRITE on some topic get an
/// idempotent producer id): allowed where a resource nobody named would be, or where an
/// ALLOW of the operation (or ALL) is not covered by a DENY of it: a DENY of `*` covers
/// everything, a literal DENY its name, a prefixed DENY every name it starts.
pub fn authorize_any<'a>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
    session: &Session,
    resource_type: ResourceType,
    operation: AclOperation,
) -> bool {
    // Kafka checks a made-up name first, so that super users and open resources pass.
    let hardcode = Action {
        resource_type,
        name: "hardcode",
        operation,
    };
    if authorize(config, acls.clone(), session, hardcode) {
        return true;
    }
    let principal = session.principal.to_string();
    let host = session
        .client_host
        .strip_prefix('/')
        .unwrap_or(&session.client_host);
    let relevant = |a: &&AclBinding| {
        a.resource_type == resource_type
            && (a.principal == principal || a.principal == WILDCARD_PRINCIPAL)
            && (a.host == host || a.host == WILDCARD_HOST)
            && (a.operation == operation || a.operation == AclOperation::All)
    };
    let mut deny_literals = Vec::new();
    let mut deny_prefixes = Vec::new();
    let mut allows = Vec::new();
    for a in acls.into_iter().filter(relevant) {
        match (a.permission, a.pattern_type) {
            (AclPermissionType::Deny, PatternType::Literal)
                if a.resource_name == WILDCARD_RESOURCE =>
            {
                return false
            }
            (AclPermissionType::Deny, PatternType::Literal) => deny_literals.push(a),
            (AclPermissionType::Deny, PatternType::Prefixed) => deny_prefixes.push(a),
            (AclPermissionType::Allow, _) => allows.push(a),
            _ => {}
        }
    }
    let denied_prefix = |name: &str| {
        deny_prefixes
            .iter()
            .any(|d| name.starts_with(&d.resource_name))
    };
    allows.iter().any(|a| match a.pattern_type {
        PatternType::Literal => {
            a.resource_name == WILDCARD_RESOURCE
                || (!deny_literals
                    .iter()
                    .any(|d| d.resource_name == a.resource_name)
                    && !denied_prefix(&a.resource_name))
        }
        PatternType::Prefixed => !denied_prefix(&a.resource_name),
        PatternType::Any | PatternType::Match | PatternType::Unknown => false,
    })
}

/// Whether `acl`'s pattern covers the action's resource.
fn names(acl: &AclBinding, action: Action<'_>) -> bool {
    if acl.resource_type != action.resource_type {
        return false;
    }
    match acl.pattern_type {
        PatternType::Literal => {
            acl.resource_name == action.name || acl.resource_name == WILDCARD_RESOURCE
        }
        PatternType::Prefixed => action.name.starts_with(&acl.resource_name),
        // Never stored: the image refuses them.
        PatternType::Any | PatternType::Match | PatternType::Unknown => false,
    }
}

/// The permission `acl` gives this principal, host and operation, if it applies to them.
fn applies(
    acl: &AclBinding,
    principal: &str,
    host: &str,
    operation: AclOperation,
) -> Option<AclPermissionType> {
    if acl.principal != principal && acl.principal != WILDCARD_PRINCIPAL {
        return None;
    }
    if acl.host != WILDCARD_HOST && acl.host != host {
        return None;
    }
    let op_matches = acl.operation == AclOperation::All
        || acl.operation == operation
        || (acl.permission == AclPermissionType::Allow && implies(acl.operation, operation));
    op_matches.then_some(acl.permission)
}

/// Whether an ALLOW of `granted` also allows `asked` (a DENY of it denies only itself).
fn implies(granted: AclOperation, asked: AclOperation) -> bool {
    use AclOperation::*;
    match asked {
        Describe => matches!(granted, Read | Write | Delete | Alter),
        DescribeConfigs => granted == AlterConfigs,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
