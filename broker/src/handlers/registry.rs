//! The API registry: each API Sluice serves, declared once with its version range, its
//! handler, its metrics label and the ACL resource and operation it needs. The ApiVersions
//! table, the request decoder's "is this served" check, the dispatch and the per-API metrics
//! all read this one table, so they cannot disagree.

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use super::*;

/// A Kafka ACL resource type (KIP-11), as the security work will check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The cluster itself.
    Cluster,
    /// The topics the request names.
    Topic,
    /// The consumer group the request names.
    Group,
    /// The transactional id the request names.
    TransactionalId,
}

/// A Kafka ACL operation (KIP-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

/// What a request needs to be allowed, as Kafka's authorizer table lists it for the API's
/// main resource. The checks are made where the refusal is answered, since each API answers
/// it in its own response shape: per topic in the topic handlers, in `group_access` for the
/// group APIs, in `cluster_access` for the cluster ones and in `acls` for the ACL APIs
/// (DescribeCluster, as in Kafka, only fills its authorized operations from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any client, before or without authentication (ApiVersions).
    Anyone,
    /// `operation` on the request's `resource`.
    Needs(Resource, Operation),
}

/// One served API.
pub struct Api {
    /// The API key.
    pub key: ApiKey,
    /// Lowest version served: the protocol crate's lowest, or higher.
    pub min_version: i16,
    /// Highest version served: what the handler implements and the tests exercise.
    pub max_version: i16,
    /// Its name, as metrics label it.
    pub name: &'static str,
    /// What the request needs to be allowed.
    pub access: Access,
    handle: fn(Context, RequestKind) -> Reply,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("key", &self.key)
            .field("versions", &(self.min_version..=self.max_version))
            .field("access", &self.access)
            .finish()
    }
}

/// The reply to a request whose body is not of the API it was registered under: the decoder
/// decodes bodies by API key, so this is a bug; the connection gets an error, not silence.
fn mismatch(key: ApiKey, req: &RequestKind) -> Reply {
    tracing::error!(api = ?key, request = ?std::mem::discriminant(req), "request body of another API");
    Reply::Refused(format!("request body does not belong to {key:?}"))
}

/// Declares one API. The handler form says what the handler returns:
/// `reply` a [`Reply`] from `(Context, Request)` (`reply_ref`: from `(&Context, Request)`),
/// `now` a response from `(&Context, Request)`,
/// `later` a future of a response from `(Context, Request)`.
macro_rules! api {
    ($key:ident, $lo:expr, $hi:expr, $access:expr, reply $handler:path) => {
        api!(@ $key, $lo, $hi, $access, |ctx, r| $handler(ctx, r))
    };
    ($key:ident, $lo:expr, $hi:expr, $access:expr, reply_ref $handler:path) => {
        api!(@ $key, $lo, $hi, $access, |ctx, r| $handler(&ctx, r))
    };
    ($key:ident, $lo:expr, $hi:expr, $access:expr, now $handler:path) => {
        api!(@ $key, $lo, $hi, $access, |ctx, r| Reply::now(ResponseKind::$key($handler(&ctx, r))))
    };
    ($key:ident, $lo:expr, $hi:expr, $access:expr, later $handler:path) => {
        api!(@ $key, $lo, $hi, $access, |ctx, r| Reply::Later(Box::pin(async move {
            ResponseKind::$key($handler(ctx, r).await)
        })))
    };
    (@ $key:ident, $lo:expr, $hi:expr, $access:expr, $call:expr) => {
        Api {
            key: ApiKey::$key,
            min_version: $lo,
            max_version: $hi,
            name: stringify!($key),
            access: $access,
            handle: |ctx, req| match req {
                RequestKind::$key(r) => {
                    let call: fn(Context, _) -> Reply = $call;
                    call(ctx, r)
                }
                other => mismatch(ApiKey::$key, &other),
            },
        }
    };
}

use Access::{Anyone, Needs};
use Operation::*;
use Resource::*;

/// Every API served. Version bounds: see [`Api::min_version`] and [`Api::max_version`].
pub static APIS: &[Api] = &[
    api!(Produce, 3, 12, Needs(Topic, Write), reply produce::handle),
    api!(Fetch, 4, 16, Needs(Topic, Read), reply fetch::handle),
    api!(ListOffsets, 1, 8, Needs(Topic, Describe), now list_offsets::handle),
    api!(Metadata, 0, 12, Needs(Topic, Describe), reply metadata::handle),
    api!(ApiVersions, 0, 3, Anyone, now api_versions::handle),
    api!(SaslHandshake, 0, 1, Anyone, now sasl::handshake),
    api!(SaslAuthenticate, 0, 2, Anyone, now sasl::authenticate),
    api!(CreateTopics, 2, 7, Needs(Topic, Create), later create_topics::handle),
    api!(DeleteTopics, 1, 6, Needs(Topic, Delete), later delete_topics::handle),
    api!(InitProducerId, 0, 5, Needs(Cluster, IdempotentWrite), later init_producer_id::handle),
    api!(CreatePartitions, 0, 3, Needs(Topic, Alter), later create_partitions::handle),
    api!(DescribeConfigs, 1, 4, Needs(Topic, DescribeConfigs), now describe_configs::handle),
    api!(AlterConfigs, 0, 2, Needs(Topic, AlterConfigs), later alter_configs::handle),
    api!(IncrementalAlterConfigs, 0, 1, Needs(Topic, AlterConfigs), later alter_configs::handle_incremental),
    api!(DescribeCluster, 0, 1, Needs(Cluster, Describe), now cluster_access::describe_cluster),
    api!(DeleteRecords, 0, 2, Needs(Topic, Delete), later delete_records::handle),
    api!(DescribeLogDirs, 1, 4, Needs(Cluster, Describe), now cluster_access::describe_log_dirs),
    api!(FindCoordinator, 0, 4, Needs(Group, Describe), later group_access::find_coordinator),
    api!(JoinGroup, 0, 7, Needs(Group, Read), reply_ref group_access::join),
    api!(SyncGroup, 0, 5, Needs(Group, Read), reply_ref group_access::sync),
    api!(Heartbeat, 0, 4, Needs(Group, Read), now group_access::heartbeat),
    api!(LeaveGroup, 0, 5, Needs(Group, Read), reply_ref group_access::leave),
    api!(OffsetCommit, 2, 8, Needs(Group, Read), reply_ref group_access::offset_commit),
    api!(OffsetFetch, 1, 8, Needs(Group, Describe), now group_access::offset_fetch),
    api!(ListGroups, 0, 4, Needs(Cluster, Describe), now group_access::list_groups),
    api!(DescribeGroups, 0, 5, Needs(Group, Describe), now group_access::describe_groups),
    api!(DeleteGroups, 0, 2, Needs(Group, Delete), reply_ref group_access::delete_groups),
    api!(OffsetDelete, 0, 0, Needs(Group, Delete), reply_ref group_access::offset_delete),
    api!(OffsetForLeaderEpoch, 2, 4, Needs(Topic, Describe), now offset_for_leader_epoch::handle),
    api!(ElectLeaders, 0, 2, Needs(Cluster, Alter), later cluster_access::elect_leaders),
    api!(AlterPartitionReassignments, 0, 0, Needs(Cluster, Alter), later cluster_access::alter_reassignments),
    api!(ListPartitionReassignments, 0, 0, Needs(Cluster, Describe), now cluster_access::list_reassignments),
    api!(DescribeAcls, 1, 3, Needs(Cluster, Describe), now acls::describe),
    api!(CreateAcls, 1, 3, Needs(Cluster, Alter), later acls::create),
    api!(DeleteAcls, 1, 3, Needs(Cluster, Alter), later acls::delete),
];

/// The registry's entry for `key`, if served.
pub fn api(key: ApiKey) -> Option<&'static Api> {
    APIS.iter().find(|a| a.key == key)
}

/// The served version range of `key` (within what the protocol crate speaks), if served.
pub fn versions(key: ApiKey) -> Option<(i16, i16)> {
    let valid = key.valid_versions();
    api(key)
        .map(|a| (a.min_version.max(valid.min), a.max_version.min(valid.max)))
        .filter(|(lo, hi)| lo <= hi)
}

/// Routes a decoded request to its handler.
pub fn dispatch(ctx: Context, key: ApiKey, req: RequestKind) -> Reply {
    match api(key) {
        Some(a) => (a.handle)(ctx, req),
        // The decoder refuses unserved APIs first; answer as it would.
        None => Reply::Refused(format!("API {key:?} is not served")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_is_declared_once_with_its_own_name() {
        let mut keys: Vec<i16> = APIS.iter().map(|a| a.key as i16).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), APIS.len(), "an API declared twice");
        for a in APIS {
            assert_eq!(
                a.name,
                format!("{:?}", a.key),
                "metrics label of {:?}",
                a.key
            );
            assert!(
                versions(a.key).is_some(),
                "{:?} serves no version the protocol crate speaks",
                a.key
            );
        }
    }
}
