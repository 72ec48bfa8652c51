//! ACL bindings as the metadata log stores them (Kafka's `AccessControlEntryRecord`): a
//! resource pattern (type, name, LITERAL or PREFIXED) and an entry (principal, host,
//! operation, ALLOW or DENY), with Kafka's codes for each enum, the rules a binding must
//! meet to be created, and the filters DescribeAcls and DeleteAcls select bindings with.

use serde::{Deserialize, Serialize};

/// The resource name that matches every resource of its type (LITERAL patterns only).
pub const WILDCARD_RESOURCE: &str = "*";
/// The principal that matches every principal (`User:*`).
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The host that matches every client address.
pub const WILDCARD_HOST: &str = "*";
/// The only name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Declares a Kafka ACL enum with its wire codes; unknown codes read as `Unknown`, as
/// Kafka's `fromCode` does.
macro_rules! coded {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $code:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vm])* $v),* }

        impl $name {
            /// Kafka's code.
            pub fn code(self) -> i8 {
                match self { $($name::$v => $code),* }
            }

            /// The value of a Kafka code; codes Kafka does not define read as `Unknown`.
            pub fn from_code(code: i8) -> $name {
                match code {
                    $($code => $name::$v,)*
                    _ => $name::Unknown,
                }
            }
        }
    };
}

coded!(
    /// Kafka's `ResourceType`.
    ResourceType {
        /// A code this broker does not know.
        Unknown = 0,
        /// Filters only: any type.
        Any = 1,
        /// A topic.
        Topic = 2,
        /// A consumer group.
        Group = 3,
        /// The cluster (named `kafka-cluster`).
        Cluster = 4,
        /// A transactional id.
        TransactionalId = 5,
        /// A delegation token.
        DelegationToken = 6,
        /// A user (quotas, SCRAM credentials).
        User = 7,
    }
);

coded!(
    /// Kafka's `PatternType`.
    PatternType {
        /// A code this broker does not know.
        Unknown = 0,
        /// Filters only: LITERAL or PREFIXED, with the name matched exactly.
        Any = 1,
        /// Filters only: every binding that would apply to the named resource.
        Match = 2,
        /// The name is the resource's name, or `*` for every resource.
        Literal = 3,
        /// The name is a prefix of the resources' names.
        Prefixed = 4,
    }
);

coded!(
    /// Kafka's `AclOperation`.
    AclOperation {
        /// A code this broker does not know.
        Unknown = 0,
        /// Filters only: any operation.
        Any = 1,
        /// Every operation.
        All = 2,
        #[allow(missing_docs)]
        Read = 3,
        #[allow(missing_docs)]
        Write = 4,
        #[allow(missing_docs)]
        Create = 5,
        #[allow(missing_docs)]
        Delete = 6,
        #[allow(missing_docs)]
        Alter = 7,
        #[allow(missing_docs)]
        Describe = 8,
        #[allow(missing_docs)]
        ClusterAction = 9,
        #[allow(missing_docs)]
        DescribeConfigs = 10,
        #[allow(missing_docs)]
        AlterConfigs = 11,
        #[allow(missing_docs)]
        IdempotentWrite = 12,
        #[allow(missing_docs)]
        CreateTokens = 13,
        #[allow(missing_docs)]
        DescribeTokens = 14,
    }
);

coded!(
    /// Kafka's `AclPermissionType`.
    AclPermissionType {
        /// A code this broker does not know.
        Unknown = 0,
        /// Filters only: ALLOW or DENY.
        Any = 1,
        /// The binding forbids; it wins over any ALLOW.
        Deny = 2,
        /// The binding permits.
        Allow = 3,
    }
);

/// One ACL: who (`principal` from `host`) may or may not do `operation` on the resources
/// the pattern names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// The resource type.
    pub resource_type: ResourceType,
    /// The resource name, prefix, or `*`.
    pub resource_name: String,
    /// LITERAL or PREFIXED.
    pub pattern_type: PatternType,
    /// `Type:name`, e.g. `User:alice`, or `User:*`.
    pub principal: String,
    /// A client IP address, or `*`.
    pub host: String,
    /// The operation.
    pub operation: AclOperation,
    /// ALLOW or DENY.
    pub permission: AclPermissionType,
}

impl AclBinding {
    /// Why the binding may not be created, as Kafka's broker and controller refuse it
    /// (INVALID_REQUEST): filter-only values (ANY, MATCH, UNKNOWN), an empty name, a
    /// CLUSTER resource not named `kafka-cluster`, a principal that is not `Type:name`, and
    /// a PREFIXED `*` (it would read as every resource, which is LITERAL `*`'s job).
    pub fn invalid(&self) -> Option<String> {
        use AclOperation as Op;
        if matches!(
            self.resource_type,
            ResourceType::Unknown | ResourceType::Any
        ) {
            return Some(format!("Invalid resourceType {:?}", self.resource_type));
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return Some(format!("Invalid patternType {:?}", self.pattern_type));
        }
        if matches!(self.operation, Op::Unknown | Op::Any) {
            return Some(format!("Invalid operation {:?}", self.operation));
        }
        if !matches!(
            self.permission,
            AclPermissionType::Allow | AclPermissionType::Deny
        ) {
            return Some(format!("Invalid permissionType {:?}", self.permission));
        }
        if self.resource_name.is_empty() {
            return Some("Resource name should not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Some(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        if self.pattern_type == PatternType::Prefixed && self.resource_name == WILDCARD_RESOURCE {
            return Some("A PREFIXED pattern may not be `*`; use LITERAL `*`".into());
        }
        match self.principal.split_once(':') {
            Some((t, n)) if !t.is_empty() && !n.is_empty() => {}
            _ => {
                return Some(format!(
                    "Could not parse principal from `{}` (expected principalType:principalName)",
                    self.principal
                ))
            }
        }
        if self.host.is_empty() {
            return Some("Host should not be empty".into());
        }
        None
    }
}

impl std::fmt::Display for AclBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}:{:?}:{} {:?} {} {:?} from {}",
            self.resource_type,
            self.pattern_type,
            self.resource_name,
            self.permission,
            self.principal,
            self.operation,
            self.host
        )
    }
}

/// A selection of bindings (DescribeAcls, DeleteAcls): `None` fields and ANY values match
/// everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclBindingFilter {
    /// Resource type, or ANY.
    pub resource_type: ResourceType,
    /// Resource name, or `None` for any.
    pub resource_name: Option<String>,
    /// LITERAL, PREFIXED, ANY (either, name matched exactly) or MATCH (every binding that
    /// applies to the named resource: its literal, `*` and the prefixes of its name).
    pub pattern_type: PatternType,
    /// Principal, or `None` for any.
    pub principal: Option<String>,
    /// Host, or `None` for any.
    pub host: Option<String>,
    /// Operation, or ANY.
    pub operation: AclOperation,
    /// Permission, or ANY.
    pub permission: AclPermissionType,
}

impl AclBindingFilter {
    /// The filter that selects every binding.
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

    /// Why the filter cannot select anything meaningful (Kafka: INVALID_REQUEST for a filter
    /// with an UNKNOWN field).
    pub fn invalid(&self) -> Option<String> {
        if self.resource_type == ResourceType::Unknown || self.pattern_type == PatternType::Unknown
        {
            return Some("Unknown patternFilter.".into());
        }
        if self.operation == AclOperation::Unknown || self.permission == AclPermissionType::Unknown
        {
            return Some("Unknown entryFilter.".into());
        }
        None
    }

    /// Whether `b` is selected, by Kafka's `ResourcePatternFilter` and
    /// `AccessControlEntryFilter` rules.
    pub fn matches(&self, b: &AclBinding) -> bool {
        self.matches_pattern(b) && self.matches_entry(b)
    }

    fn matches_pattern(&self, b: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != b.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != b.pattern_type
        {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type == PatternType::Any || self.pattern_type == b.pattern_type {
            return *name == b.resource_name;
        }
        // MATCH: the bindings that would apply to the resource `name`.
        match b.pattern_type {
            PatternType::Literal => {
                *name == b.resource_name || b.resource_name == WILDCARD_RESOURCE
            }
            PatternType::Prefixed => name.starts_with(&b.resource_name),
            PatternType::Unknown | PatternType::Any | PatternType::Match => false,
        }
    }

    fn matches_entry(&self, b: &AclBinding) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == AclOperation::Any || self.operation == b.operation)
            && (self.permission == AclPermissionType::Any || self.permission == b.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(pattern: PatternType, name: &str) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermissionType::Allow,
        }
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_read_as_unknown() {
        for c in 0..=14 {
            assert_eq!(AclOperation::from_code(c).code(), c);
        }
        for c in 0..=7 {
            assert_eq!(ResourceType::from_code(c).code(), c);
        }
        assert_eq!(AclOperation::from_code(15), AclOperation::Unknown);
        assert_eq!(ResourceType::from_code(-1), ResourceType::Unknown);
        assert_eq!(PatternType::from_code(9), PatternType::Unknown);
        assert_eq!(AclPermissionType::from_code(4), AclPermissionType::Unknown);
        assert_eq!(PatternType::Prefixed.code(), 4);
        assert_eq!(AclPermissionType::Allow.code(), 3);
    }

    #[test]
    fn a_binding_to_create_has_no_filter_only_values() {
        let ok = binding(PatternType::Literal, "t");
        assert_eq!(ok.invalid(), None);
        assert_eq!(binding(PatternType::Literal, "*").invalid(), None);
        assert_eq!(binding(PatternType::Prefixed, "t-").invalid(), None);
        let cases: Vec<(&str, AclBinding)> = vec![
            ("pattern ANY", binding(PatternType::Any, "t")),
            ("pattern MATCH", binding(PatternType::Match, "t")),
            ("pattern UNKNOWN", binding(PatternType::Unknown, "t")),
            ("prefixed *", binding(PatternType::Prefixed, "*")),
            ("empty name", binding(PatternType::Literal, "")),
            (
                "resource ANY",
                AclBinding {
                    resource_type: ResourceType::Any,
                    ..ok.clone()
                },
            ),
            (
                "resource UNKNOWN",
                AclBinding {
                    resource_type: ResourceType::Unknown,
                    ..ok.clone()
                },
            ),
            (
                "operation ANY",
                AclBinding {
                    operation: AclOperation::Any,
                    ..ok.clone()
                },
            ),
            (
                "operation UNKNOWN",
                AclBinding {
                    operation: AclOperation::Unknown,
                    ..ok.clone()
                },
            ),
            (
                "permission ANY",
                AclBinding {
                    permission: AclPermissionType::Any,
                    ..ok.clone()
                },
            ),
            (
                "principal without type",
                AclBinding {
                    principal: "alice".into(),
                    ..ok.clone()
                },
            ),
            (
                "principal with empty name",
                AclBinding {
                    principal: "User:".into(),
                    ..ok.clone()
                },
            ),
            (
                "cluster not named kafka-cluster",
                AclBinding {
                    resource_type: ResourceType::Cluster,
                    resource_name: "c".into(),
                    ..ok.clone()
                },
            ),
            (
                "empty host",
                AclBinding {
                    host: String::new(),
                    ..ok.clone()
                },
            ),
        ];
        for (what, b) in cases {
            assert!(b.invalid().is_some(), "{what} was accepted");
        }
    }

    #[test]
    fn filters_select_as_kafkas_resource_pattern_and_entry_filters_do() {
        let lit = binding(PatternType::Literal, "orders");
        let star = binding(PatternType::Literal, "*");
        let pre = binding(PatternType::Prefixed, "ord");
        let other = binding(PatternType::Prefixed, "pay");
        let f = |pattern: PatternType, name: Option<&str>| AclBindingFilter {
            pattern_type: pattern,
            resource_name: name.map(String::from),
            ..AclBindingFilter::any()
        };
        let selected = |filter: &AclBindingFilter| -> Vec<bool> {
            [&lit, &star, &pre, &other]
                .iter()
                .map(|b| filter.matches(b))
                .collect()
        };
        assert_eq!(selected(&AclBindingFilter::any()), [true, true, true, true]);
        assert_eq!(
            selected(&f(PatternType::Any, Some("orders"))),
            [true, false, false, false]
        );
        assert_eq!(
            selected(&f(PatternType::Literal, None)),
            [true, true, false, false]
        );
        assert_eq!(
            selected(&f(PatternType::Prefixed, Some("ord"))),
            [false, false, true, false]
        );
        assert_eq!(
            selected(&f(PatternType::Match, Some("orders"))),
            [true, true, true, false]
        );
        assert_eq!(
            selected(&f(PatternType::Match, Some("payments"))),
            [false, true, false, true]
        );
        let entry = AclBindingFilter {
            principal: Some("User:bob".into()),
            ..AclBindingFilter::any()
        };
        assert_eq!(selected(&entry), [false, false, false, false]);
        let op = AclBindingFilter {
            operation: AclOperation::Write,
            ..AclBindingFilter::any()
        };
        assert!(!op.matches(&lit));
        let perm = AclBindingFilter {
            permission: AclPermissionType::Allow,
            host: Some("*".into()),
            ..AclBindingFilter::any()
        };
        assert!(perm.matches(&lit));
        let group = AclBindingFilter {
            resource_type: ResourceType::Group,
            ..AclBindingFilter::any()
        };
        assert!(!group.matches(&lit));
    }

    #[test]
    fn filters_with_unknown_fields_are_invalid() {
        assert_eq!(AclBindingFilter::any().invalid(), None);
        for f in [
            AclBindingFilter {
                resource_type: ResourceType::Unknown,
                ..AclBindingFilter::any()
            },
            AclBindingFilter {
                pattern_type: PatternType::Unknown,
                ..AclBindingFilter::any()
            },
            AclBindingFilter {
                operation: AclOperation::Unknown,
                ..AclBindingFilter::any()
            },
            AclBindingFilter {
                permission: AclPermissionType::Unknown,
                ..AclBindingFilter::any()
            },
        ] {
            assert!(f.invalid().is_some(), "{f:?}");
        }
    }
}
