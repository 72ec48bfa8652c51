//! Metadata changes a client asks any broker for (CreateTopics, DeleteTopics,
//! CreatePartitions, AlterConfigs, ElectLeaders): forwarded to the active controller, then
//! awaited in this broker's own image, so the client's next request here sees the change.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_replication::acl::{AclBinding, AclBindingFilter};
use sluice_replication::controller::ControllerError;
use sluice_replication::image::MetadataImage;
use sluice_replication::quorum::service::{ControllerRequest, ControllerResponse};
use uuid::Uuid;

use super::Cluster;
use crate::error::BrokerError;
use crate::replica_manager::ReplicaManager;

/// How long to wait for a committed change to reach this broker.
const PROPAGATION: Duration = Duration::from_secs(10);

impl Cluster {
    async fn visible(
        &self,
        what: &str,
        done: impl FnMut(&MetadataImage) -> bool,
    ) -> Result<(), BrokerError> {
        if self.wait_for(PROPAGATION, done).await {
            Ok(())
        } else {
            Err(BrokerError::ControllerUnavailable(format!(
                "{what} was committed but has not reached this broker yet"
            )))
        }
    }

    /// Creates a topic (-1 partitions or replication factor: the broker defaults), its
    /// replicas placed by the controller or, with `assignments` ((partition, replicas) as
    /// the request lists them, and both counts -1), as assigned.
    pub async fn create_topic(
        &self,
        rm: &ReplicaManager,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        assignments: Vec<(i32, Vec<i32>)>,
    ) -> Result<Uuid, BrokerError> {
        rm.validate_new_topic(name, &configs)?;
        let (partitions, replication_factor) = if assignments.is_empty() {
            rm.config().topic_shape(partitions, replication_factor)
        } else {
            // The controller checks that a manual assignment comes with no counts.
            (partitions, replication_factor)
        };
        let req = ControllerRequest::CreateTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs,
            assignments,
        };
        match self.decide(req).await? {
            ControllerResponse::Created { id } => {
                self.visible("the topic", |i| i.topics.contains_key(&id))
                    .await?;
                tracing::info!(
                    topic = name,
                    partitions,
                    replication_factor,
                    "created topic"
                );
                Ok(id)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Creates `name` with the broker defaults unless it exists (auto-creation).
    pub async fn auto_create(&self, rm: &ReplicaManager, name: &str) -> Result<(), BrokerError> {
        if rm.topic(name).is_some() {
            return Ok(());
        }
        match self
            .create_topic(rm, name, -1, -1, BTreeMap::new(), Vec::new())
            .await
        {
            Ok(_) => Ok(()),
            Err(BrokerError::Controller(ControllerError::TopicAlreadyExists(_))) => {
                // Created concurrently by another request: wait until it is visible here.
                let name = name.to_string();
                self.visible("the topic", |i| i.topic_ids.contains_key(&name))
                    .await
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        let id = self.image().topic_ids.get(name).copied();
        match self
            .decide(ControllerRequest::DeleteTopic {
                name: name.to_string(),
            })
            .await?
        {
            ControllerResponse::Done => {
                self.visible("the deletion", |i| {
                    id.is_none_or(|id| !i.topics.contains_key(&id))
                })
                .await?;
                tracing::info!(topic = name, "deleted topic");
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    /// Grows a topic to `total` partitions, placed by the controller or as `assignments`
    /// says (the replicas of each new partition).
    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        assignments: Option<Vec<Vec<i32>>>,
    ) -> Result<(), BrokerError> {
        let req = ControllerRequest::CreatePartitions {
            name: name.to_string(),
            total,
            assignments,
        };
        match self.decide(req).await? {
            ControllerResponse::Done => {
                let name = name.to_string();
                self.visible("the new partitions", |i| {
                    i.topic_by_name(&name)
                        .is_some_and(|t| t.partitions.len() as i32 >= total)
                })
                .await
            }
            other => Err(unexpected(other)),
        }
    }

    /// Sets (`Some`) or removes (`None`) topic configs.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> Result<(), BrokerError> {
        let req = ControllerRequest::AlterTopicConfigs {
            name: name.to_string(),
            changes: changes.clone(),
        };
        match self.decide(req).await? {
            ControllerResponse::Done => {
                let name = name.to_string();
                self.visible("the config change", |i| {
                    i.topic_by_name(&name).is_some_and(|t| {
                        changes.iter().all(|(k, v)| t.configs.get(k) == v.as_ref())
                    })
                })
                .await
            }
            other => Err(unexpected(other)),
        }
    }

    /// Runs an ElectLeaders election over `partitions` (all when `None`): PREFERRED moves
    /// leadership to preferred replicas, UNCLEAN gives offline partitions a leader, from
    /// outside the ISR if need be.
    pub async fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<(), BrokerError> {
        let req = if unclean {
            ControllerRequest::ElectUnclean { partitions }
        } else {
            ControllerRequest::ElectPreferred { partitions }
        };
        match self.decide(req).await? {
            ControllerResponse::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

impl Cluster {
    /// CreateAcls: per binding, whether it was refused. Awaited here like every other change,
    /// so this broker authorizes by the new bindings once the client has its answer.
    pub async fn create_acls(
        &self,
        acls: Vec<AclBinding>,
    ) -> Result<Vec<Result<(), ControllerError>>, BrokerError> {
        match self
            .decide(ControllerRequest::CreateAcls { acls: acls.clone() })
            .await?
        {
            ControllerResponse::AclsCreated { results } => {
                let created: Vec<AclBinding> = acls
                    .into_iter()
                    .zip(&results)
                    .filter(|(_, r)| r.is_ok())
                    .map(|(a, _)| a)
                    .collect();
                self.visible("the ACLs", |i| {
                    created.iter().all(|a| i.acls.values().any(|b| b == a))
                })
                .await?;
                Ok(results)
            }
            other => Err(unexpected(other)),
        }
    }

    /// DeleteAcls: per filter, the bindings it deleted or why it was refused.
    #[allow(clippy::type_complexity)]
    pub async fn delete_acls(
        &self,
        filters: Vec<AclBindingFilter>,
    ) -> Result<Vec<Result<Vec<AclBinding>, ControllerError>>, BrokerError> {
        match self
            .decide(ControllerRequest::DeleteAcls { filters })
            .await?
        {
            ControllerResponse::AclsDeleted { results } => {
                let gone: Vec<AclBinding> = results
                    .iter()
                    .flat_map(|r| r.iter().flatten().cloned())
                    .collect();
                self.visible("the ACL deletion", |i| {
                    !i.acls.values().any(|b| gone.contains(b))
                })
                .await?;
                Ok(results)
            }
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(answer: ControllerResponse) -> BrokerError {
    BrokerError::Metadata(format!("unexpected controller answer {answer:?}"))
}
