//! ACLs through the admin client: CreateAcls, DescribeAcls and DeleteAcls (v1+, KIP-290
//! prefixed patterns), with Kafka's names and codes for resource types, pattern types,
//! operations and permissions.

use std::fmt;
use std::str::FromStr;

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::{check, Result};

/// Declares a Kafka ACL enum: its codes, and its names as Kafka's tools print and parse them
/// (upper case with underscores; parsing ignores case and accepts camel case, as
/// kafka-acls.sh does: `--operation Read`, `IdempotentWrite`).
macro_rules! coded {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $code:expr, $text:expr;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vm])* $v),* }

        impl $name {
            /// Kafka's code.
            pub fn code(self) -> i8 {
                match self { $($name::$v => $code),* }
            }

            /// The value of a code; unknown codes read as `Unknown`.
            pub fn from_code(code: i8) -> $name {
                match code {
                    $($code => $name::$v,)*
                    _ => $name::Unknown,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($name::$v => $text),* })
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> std::result::Result<$name, String> {
                let wanted = s.replace(['_', '-'], "").to_ascii_uppercase();
                $(if $text.replace('_', "") == wanted {
                    return Ok($name::$v);
                })*
                Err(format!(
                    "unknown {} {s:?}; expected one of {}",
                    stringify!($name),
                    [$($text),*].join(", ")
                ))
            }
        }
    };
}

coded!(
    /// Kafka's resource types.
    ResourceType {
        /// A code this client does not know.
        Unknown = 0, "UNKNOWN";
        /// Filters only: any type.
        Any = 1, "ANY";
        /// A topic.
        Topic = 2, "TOPIC";
        /// A consumer group.
        Group = 3, "GROUP";
        /// The cluster, named `kafka-cluster`.
        Cluster = 4, "CLUSTER";
        /// A transactional id.
        TransactionalId = 5, "TRANSACTIONAL_ID";
        /// A delegation token.
        DelegationToken = 6, "DELEGATION_TOKEN";
        /// A user.
        User = 7, "USER";
    }
);

coded!(
    /// Kafka's pattern types.
    PatternType {
        /// A code this client does not know.
        Unknown = 0, "UNKNOWN";
        /// Filters only: LITERAL or PREFIXED, the name matched exactly.
        Any = 1, "ANY";
        /// Filters only: every binding that applies to the named resource.
        Match = 2, "MATCH";
        /// The resource's name, or `*` for all.
        Literal = 3, "LITERAL";
        /// A prefix of the resources' names.
        Prefixed = 4, "PREFIXED";
    }
);

coded!(
    /// Kafka's ACL operations.
    AclOperation {
        /// A code this client does not know.
        Unknown = 0, "UNKNOWN";
        /// Filters only: any operation.
        Any = 1, "ANY";
        /// Every operation.
        All = 2, "ALL";
        #[allow(missing_docs)]
        Read = 3, "READ";
        #[allow(missing_docs)]
        Write = 4, "WRITE";
        #[allow(missing_docs)]
        Create = 5, "CREATE";
        #[allow(missing_docs)]
        Delete = 6, "DELETE";
        #[allow(missing_docs)]
        Alter = 7, "ALTER";
        #[allow(missing_docs)]
        Describe = 8, "DESCRIBE";
        #[allow(missing_docs)]
        ClusterAction = 9, "CLUSTER_ACTION";
        #[allow(missing_docs)]
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        #[allow(missing_docs)]
        AlterConfigs = 11, "ALTER_CONFIGS";
        #[allow(missing_docs)]
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        #[allow(missing_docs)]
        CreateTokens = 13, "CREATE_TOKENS";
        #[allow(missing_docs)]
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
);

coded!(
    /// Kafka's permission types.
    AclPermissionType {
        /// A code this client does not know.
        Unknown = 0, "UNKNOWN";
        /// Filters only: either.
        Any = 1, "ANY";
        /// Forbids; wins over any ALLOW.
        Deny = 2, "DENY";
        /// Permits.
        Allow = 3, "ALLOW";
    }
);

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    /// Resource type.
    pub resource_type: ResourceType,
    /// Resource name, prefix or `*`.
    pub resource_name: String,
    /// LITERAL or PREFIXED.
    pub pattern_type: PatternType,
    /// `User:alice`, or `User:*`.
    pub principal: String,
    /// A client address, or `*`.
    pub host: String,
    /// The operation.
    pub operation: AclOperation,
    /// ALLOW or DENY.
    pub permission: AclPermissionType,
}

impl fmt::Display for AclBinding {
    /// As kafka-acls.sh prints an entry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(principal={}, host={}, operation={}, permissionType={})",
            self.principal, self.host, self.operation, self.permission
        )
    }
}

/// A selection of ACLs: `None` and ANY match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclBindingFilter {
    /// Resource type, or ANY.
    pub resource_type: ResourceType,
    /// Resource name, or any.
    pub resource_name: Option<String>,
    /// Pattern type, ANY, or MATCH.
    pub pattern_type: PatternType,
    /// Principal, or any.
    pub principal: Option<String>,
    /// Host, or any.
    pub host: Option<String>,
    /// Operation, or ANY.
    pub operation: AclOperation,
    /// Permission, or ANY.
    pub permission: AclPermissionType,
}

impl AclBindingFilter {
    /// Every ACL.
    pub fn any() -> AclBindingFilter {
        AclBindingFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: AclPermissionType::Any,
        }
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn opt(s: &Option<String>) -> Option<StrBytes> {
    s.as_deref().map(text)
}

impl Admin {
    /// Creates `acls`; fails on the first one the broker refuses, naming it.
    pub async fn create_acls(&self, acls: &[AclBinding]) -> Result<()> {
        let request = CreateAclsRequest::default().with_creations(
            acls.iter()
                .map(|a| {
                    AclCreation::default()
                        .with_resource_type(a.resource_type.code())
                        .with_resource_name(text(&a.resource_name))
                        .with_resource_pattern_type(a.pattern_type.code())
                        .with_principal(text(&a.principal))
                        .with_host(text(&a.host))
                        .with_operation(a.operation.code())
                        .with_permission_type(a.permission.code())
                })
                .collect(),
        );
        let r = self.cluster().any().await?.call(&request).await?;
        for (acl, result) in acls.iter().zip(&r.results) {
            check(result.error_code, || {
                format!(
                    "creating ACL {acl} on {}:{}:{}{}",
                    acl.resource_type,
                    acl.pattern_type,
                    acl.resource_name,
                    detail(&result.error_message)
                )
            })?;
        }
        Ok(())
    }

    /// The ACLs `filter` selects.
    pub async fn describe_acls(&self, filter: &AclBindingFilter) -> Result<Vec<AclBinding>> {
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type.code())
            .with_resource_name_filter(opt(&filter.resource_name))
            .with_pattern_type_filter(filter.pattern_type.code())
            .with_principal_filter(opt(&filter.principal))
            .with_host_filter(opt(&filter.host))
            .with_operation(filter.operation.code())
            .with_permission_type(filter.permission.code());
        let r = self.cluster().any().await?.call(&request).await?;
        check(r.error_code, || {
            format!("describing ACLs{}", detail(&r.error_message))
        })?;
        Ok(r.resources
            .iter()
            .flat_map(|res| {
                res.acls.iter().map(move |a| AclBinding {
                    resource_type: ResourceType::from_code(res.resource_type),
                    resource_name: res.resource_name.to_string(),
                    pattern_type: PatternType::from_code(res.pattern_type),
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: AclOperation::from_code(a.operation),
                    permission: AclPermissionType::from_code(a.permission_type),
                })
            })
            .collect())
    }

    /// Deletes what `filters` select; returns the deleted ACLs.
    pub async fn delete_acls(&self, filters: &[AclBindingFilter]) -> Result<Vec<AclBinding>> {
        let request = DeleteAclsRequest::default().with_filters(
            filters
                .iter()
                .map(|f| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(f.resource_type.code())
                        .with_resource_name_filter(opt(&f.resource_name))
                        .with_pattern_type_filter(f.pattern_type.code())
                        .with_principal_filter(opt(&f.principal))
                        .with_host_filter(opt(&f.host))
                        .with_operation(f.operation.code())
                        .with_permission_type(f.permission.code())
                })
                .collect(),
        );
        let r = self.cluster().any().await?.call(&request).await?;
        let mut deleted = Vec::new();
        for result in &r.filter_results {
            check(result.error_code, || {
                format!("deleting ACLs{}", detail(&result.error_message))
            })?;
            deleted.extend(result.matching_acls.iter().map(|a| AclBinding {
                resource_type: ResourceType::from_code(a.resource_type),
                resource_name: a.resource_name.to_string(),
                pattern_type: PatternType::from_code(a.pattern_type),
                principal: a.principal.to_string(),
                host: a.host.to_string(),
                operation: AclOperation::from_code(a.operation),
                permission: AclPermissionType::from_code(a.permission_type),
            }));
        }
        Ok(deleted)
    }
}

fn detail(message: &Option<StrBytes>) -> String {
    message
        .as_ref()
        .filter(|m| !m.is_empty())
        .map(|m| format!(" ({m})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_kafka_acls_writes_them() {
        assert_eq!("Read".parse(), Ok(AclOperation::Read));
        assert_eq!("IdempotentWrite".parse(), Ok(AclOperation::IdempotentWrite));
        assert_eq!(
            "describe-configs".parse(),
            Ok(AclOperation::DescribeConfigs)
        );
        assert_eq!("prefixed".parse(), Ok(PatternType::Prefixed));
        assert_eq!(
            "TRANSACTIONAL_ID".parse(),
            Ok(ResourceType::TransactionalId)
        );
        assert!("Reed".parse::<AclOperation>().is_err());
        assert_eq!(AclOperation::ClusterAction.to_string(), "CLUSTER_ACTION");
        for c in 0..=14 {
            assert_eq!(AclOperation::from_code(c).code(), c);
        }
        assert_eq!(AclPermissionType::from_code(9), AclPermissionType::Unknown);
    }
}
