//! The authorization checks handlers make for their request's session, over the ACLs of
//! this broker's metadata image, and how the registry's access declarations map onto
//! Kafka's ACL resource types and operations.

use sluice_replication::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use sluice_replication::image::MetadataImage;

use super::authorizer::{authorize, Action};
use crate::handlers::registry::{Operation, Resource};
use crate::handlers::Context;

impl From<Resource> for ResourceType {
    fn from(r: Resource) -> ResourceType {
        match r {
            Resource::Cluster => ResourceType::Cluster,
            Resource::Topic => ResourceType::Topic,
            Resource::Group => ResourceType::Group,
            Resource::TransactionalId => ResourceType::TransactionalId,
        }
    }
}

impl From<Operation> for AclOperation {
    fn from(o: Operation) -> AclOperation {
        match o {
            Operation::Read => AclOperation::Read,
            Operation::Write => AclOperation::Write,
            Operation::Create => AclOperation::Create,
            Operation::Delete => AclOperation::Delete,
            Operation::Alter => AclOperation::Alter,
            Operation::Describe => AclOperation::Describe,
            Operation::ClusterAction => AclOperation::ClusterAction,
            Operation::DescribeConfigs => AclOperation::DescribeConfigs,
            Operation::AlterConfigs => AclOperation::AlterConfigs,
            Operation::IdempotentWrite => AclOperation::IdempotentWrite,
        }
    }
}

/// The operations a topic has, for Metadata's topic authorized operations (Kafka's
/// `AclEntry.supportedOperations(TOPIC)`).
pub const TOPIC_OPERATIONS: &[AclOperation] = &[
    AclOperation::Read,
    AclOperation::Write,
    AclOperation::Create,
    AclOperation::Describe,
    AclOperation::Delete,
    AclOperation::Alter,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];

/// The operations a group has (DescribeGroups' authorized operations).
pub const GROUP_OPERATIONS: &[AclOperation] = &[
    AclOperation::Read,
    AclOperation::Describe,
    AclOperation::Delete,
];

/// The operations the cluster has (Metadata and DescribeCluster's authorized operations).
pub const CLUSTER_OPERATIONS: &[AclOperation] = &[
    AclOperation::Create,
    AclOperation::ClusterAction,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
    AclOperation::IdempotentWrite,
    AclOperation::Alter,
    AclOperation::Describe,
];

impl Context {
    /// Whether the authorizer is on (`authorizer.class.name` is set).
    pub fn authorizer_enabled(&self) -> bool {
        self.rm.config().authorizer.enabled
    }

    /// Whether this request's session may do `operation` on `resource_type`:`name`.
    pub fn authorized(
        &self,
        resource_type: impl Into<ResourceType>,
        name: &str,
        operation: impl Into<AclOperation>,
    ) -> bool {
        if !self.authorizer_enabled() {
            return true;
        }
        self.authorized_in(&self.cluster.image(), resource_type, name, operation)
    }

    /// [`Context::authorized`] over `image`: a handler checking many resources reads the
    /// image once.
    pub fn authorized_in(
        &self,
        image: &MetadataImage,
        resource_type: impl Into<ResourceType>,
        name: &str,
        operation: impl Into<AclOperation>,
    ) -> bool {
        authorize(
            &self.rm.config().authorizer,
            image.acls.values(),
            &self.session,
            Action {
                resource_type: resource_type.into(),
                name,
                operation: operation.into(),
            },
        )
    }

    /// Whether this request's session may do `operation` on the cluster.
    pub fn cluster_authorized(&self, operation: impl Into<AclOperation>) -> bool {
        self.authorized(ResourceType::Cluster, CLUSTER_NAME, operation)
    }

    /// Kafka's authorized-operations bit field: bit `code` set for each of `operations` the
    /// session may do on the resource.
    pub fn authorized_operations(
        &self,
        image: &MetadataImage,
        resource_type: ResourceType,
        name: &str,
        operations: &[AclOperation],
    ) -> i32 {
        operations
            .iter()
            .filter(|op| self.authorized_in(image, resource_type, name, **op))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }
}
