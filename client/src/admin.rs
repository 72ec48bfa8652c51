//! The admin client: topics, partitions, configs, consumer groups and their offsets, and the
//! cluster description.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    GroupId, IncrementalAlterConfigsRequest, ListGroupsRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::assignor::TopicPartition;
use crate::cluster::{ClientConfig, Cluster, Metadata, TopicInfo};
use crate::connection::Connection;
use crate::error::{check, Error, Result};
use crate::offsets::{self, CommitIdentity, Committed};

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partitions; -1 for the broker's `num.partitions`.
    pub partitions: i32,
    /// Replication factor; -1 for the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Topic configs (`cleanup.policy`, `retention.ms`, ...).
    pub configs: Vec<(String, String)>,
    /// The replicas of each partition, by partition index, to place them by hand (then both
    /// counts must be -1); empty to let the controller place them.
    pub replica_assignment: Vec<Vec<i32>>,
}

/// One config entry of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Key.
    pub name: String,
    /// Value (`None` for sensitive or unset values).
    pub value: Option<String>,
    /// Where the value comes from (Kafka's `ConfigSource`).
    pub source: ConfigSource,
    /// Whether it cannot be changed.
    pub read_only: bool,
    /// Whether the value is hidden.
    pub sensitive: bool,
}

/// Where a config value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    Topic,
    /// A dynamic broker config.
    DynamicBroker,
    /// The broker's static configuration.
    StaticBroker,
    /// Kafka's default.
    Default,
    /// Anything else.
    Other(i8),
}

impl ConfigSource {
    fn from_code(c: i8) -> ConfigSource {
        match c {
            1 => ConfigSource::Topic,
            2 | 3 => ConfigSource::DynamicBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            c => ConfigSource::Other(c),
        }
    }

    /// Kafka's name for it, as `kafka-configs.sh` prints.
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::Topic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::Other(_) => "UNKNOWN",
        }
    }
}

/// A config resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A topic.
    Topic(String),
    /// A broker by node id.
    Broker(i32),
}

impl Resource {
    fn code(&self) -> i8 {
        match self {
            Resource::Topic(_) => 2,
            Resource::Broker(_) => 4,
        }
    }

    fn name(&self) -> String {
        match self {
            Resource::Topic(t) => t.clone(),
            Resource::Broker(b) => b.to_string(),
        }
    }
}

/// A consumer group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// State (`Stable`, `Empty`, ...), when the broker reports it.
    pub state: String,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`, for static members.
    pub group_instance_id: Option<String>,
    /// `client.id`.
    pub client_id: String,
    /// The member's host as the broker saw it.
    pub host: String,
    /// Partitions assigned to it (consumer groups).
    pub assignment: Vec<TopicPartition>,
}

/// A consumer group in detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// The assignor chosen.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// An admin client.
#[derive(Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn detail(message: &Option<StrBytes>) -> String {
    message
        .as_ref()
        .filter(|m| !m.is_empty())
        .map(|m| format!(" ({m})"))
        .unwrap_or_default()
}

impl Admin {
    /// An admin client for the cluster at `config.bootstrap_servers`.
    pub fn new(config: ClientConfig) -> Result<Admin> {
        Ok(Admin {
            cluster: Arc::new(Cluster::new(config)?),
        })
    }

    /// The cluster handle this client uses.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    async fn controller(&self) -> Result<Arc<Connection>> {
        let m = self.cluster.refresh(Some(&[]), false).await?;
        match m.brokers.contains_key(&m.controller_id) {
            true => self.cluster.broker(m.controller_id).await,
            false => self.cluster.any().await,
        }
    }

    /// Creates topics; fails on the first topic the broker refuses.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_assignments(
                                t.replica_assignment
                                    .iter()
                                    .enumerate()
                                    .map(|(i, replicas)| {
                                        CreatableReplicaAssignment::default()
                                            .with_partition_index(i as i32)
                                            .with_broker_ids(
                                                replicas.iter().map(|b| BrokerId(*b)).collect(),
                                            )
                                    })
                                    .collect(),
                            )
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let r = self.controller().await?.call(&request).await?;
        for t in &r.topics {
            check(t.error_code, || {
                format!("creating topic {}{}", t.name.0, detail(&t.error_message))
            })?;
        }
        Ok(())
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&self, names: &[String]) -> Result<()> {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topic_names(names.iter().map(|n| topic_name(n)).collect());
        let r = self.controller().await?.call(&request).await?;
        for t in &r.responses {
            let name = t.name.as_ref().map_or(String::new(), |n| n.0.to_string());
            check(t.error_code, || {
                format!("deleting topic {name}{}", detail(&t.error_message))
            })?;
            self.cluster.invalidate(&name);
        }
        Ok(())
    }

    /// Every topic (internal ones included), with partitions.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let m = self.cluster.refresh(None, false).await?;
        Ok(m.topics.into_values().collect())
    }

    /// The named topics; an unknown name is an error naming it.
    pub async fn describe_topics(&self, names: &[String]) -> Result<Vec<TopicInfo>> {
        // Unlike a producer, an admin asking about a topic that does not exist wants to
        // hear so at once, not after retrying until the topic might appear.
        let metadata = self.cluster.refresh(Some(names), false).await?;
        names
            .iter()
            .map(|n| {
                metadata
                    .topics
                    .get(n)
                    .cloned()
                    .ok_or_else(|| Error::from_code(3, || format!("topic {n}")).expect("non-zero"))
            })
            .collect()
    }

    /// Grows `topic` to `total` partitions.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        self.create_partitions_assigned(topic, total, None).await
    }

    /// Grows `topic` to `total` partitions, the replicas of each new one as `assignment`
    /// lists them (one list per new partition), or placed by the controller when `None`.
    pub async fn create_partitions_assigned(
        &self,
        topic: &str,
        total: i32,
        assignment: Option<&[Vec<i32>]>,
    ) -> Result<()> {
        let assignments = assignment.map(|a| {
            a.iter()
                .map(|replicas| {
                    CreatePartitionsAssignment::default()
                        .with_broker_ids(replicas.iter().map(|b| BrokerId(*b)).collect())
                })
                .collect()
        });
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(total)
                .with_assignments(assignments)]);
        let r = self.controller().await?.call(&request).await?;
        for t in &r.results {
            check(t.error_code, || {
                format!(
                    "adding partitions to topic {}{}",
                    t.name.0,
                    detail(&t.error_message)
                )
            })?;
        }
        self.cluster.invalidate(topic);
        Ok(())
    }

    /// Every config of a resource, with its source.
    pub async fn describe_configs(&self, resource: &Resource) -> Result<Vec<ConfigEntry>> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource.code())
                .with_resource_name(StrBytes::from_string(resource.name()))
                .with_configuration_keys(None),
        ]);
        let conn = match resource {
            Resource::Broker(b) => self.cluster.broker(*b).await?,
            Resource::Topic(_) => self.cluster.any().await?,
        };
        let r = conn.call(&request).await?;
        let mut out = Vec::new();
        for res in &r.results {
            check(res.error_code, || {
                format!(
                    "describing configs of {}{}",
                    resource.name(),
                    detail(&res.error_message)
                )
            })?;
            out.extend(res.configs.iter().map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                source: ConfigSource::from_code(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            }));
        }
        Ok(out)
    }

    /// Sets (`Some`) or removes (`None`, back to the default) configs of a resource.
    pub async fn alter_configs(
        &self,
        resource: &Resource,
        changes: &[(String, Option<String>)],
    ) -> Result<()> {
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource.code())
                .with_resource_name(StrBytes::from_string(resource.name()))
                .with_configs(
                    changes
                        .iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                // 0 = SET, 1 = DELETE
                                .with_config_operation(if v.is_some() { 0 } else { 1 })
                                .with_value(v.clone().map(StrBytes::from_string))
                        })
                        .collect(),
                ),
        ]);
        let r = self.controller().await?.call(&request).await?;
        for res in &r.responses {
            check(res.error_code, || {
                format!(
                    "altering configs of {}{}",
                    resource.name(),
                    detail(&res.error_message)
                )
            })?;
        }
        Ok(())
    }

    /// The cluster: id, controller and brokers.
    pub async fn describe_cluster(&self) -> Result<Metadata> {
        self.cluster.refresh(Some(&[]), false).await
    }

    /// Every group known to any broker.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let m = self.cluster.refresh(Some(&[]), false).await?;
        let mut out = BTreeMap::new();
        for b in m.brokers.keys() {
            let r = self
                .cluster
                .broker(*b)
                .await?
                .call(&ListGroupsRequest::default())
                .await?;
            check(r.error_code, || format!("listing groups on broker {b}"))?;
            for g in r.groups {
                out.insert(
                    g.group_id.0.to_string(),
                    GroupListing {
                        group_id: g.group_id.0.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        state: g.group_state.to_string(),
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    /// Describes a group: state, assignor, members and their partitions.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let conn = self.cluster.coordinator(group).await?;
        let r = conn
            .call(
                &DescribeGroupsRequest::default()
                    .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]),
            )
            .await?;
        let g = r.groups.into_iter().next().ok_or_else(|| Error::Protocol {
            broker: conn.addr().to_string(),
            message: format!("DescribeGroups answered nothing for group {group}"),
        })?;
        offsets::coordinator_check(&self.cluster, group, g.error_code, "describing")?;
        let consumer = g.protocol_type.as_str() == "consumer";
        let members = g
            .members
            .iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment: if consumer {
                    decode_member_assignment(&m.member_assignment)
                } else {
                    Vec::new()
                },
            })
            .collect();
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members,
        })
    }

    /// Deletes groups (they must be empty).
    pub async fn delete_groups(&self, groups: &[String]) -> Result<()> {
        for group in groups {
            let conn = self.cluster.coordinator(group).await?;
            let r = conn
                .call(
                    &DeleteGroupsRequest::default()
                        .with_groups_names(vec![GroupId(StrBytes::from_string(group.clone()))]),
                )
                .await?;
            for res in &r.results {
                offsets::coordinator_check(&self.cluster, group, res.error_code, "deleting")?;
            }
        }
        Ok(())
    }

    /// Offsets committed by `group`.
    pub async fn group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, Committed>> {
        offsets::committed(&self.cluster, group, None).await
    }

    /// Overwrites `group`'s committed offsets; the group must have no active members.
    pub async fn set_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        offsets::commit(
            &self.cluster,
            group,
            &CommitIdentity {
                generation: -1,
                ..Default::default()
            },
            offsets,
        )
        .await
    }

    /// Offsets of `partitions` at `timestamp` ([`offsets::EARLIEST`], [`offsets::LATEST`] or a
    /// time in ms).
    pub async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        offsets::list_offsets(&self.cluster, partitions, timestamp).await
    }

    /// Every partition of `topics`.
    pub async fn partitions_of(&self, topics: &[String]) -> Result<Vec<TopicPartition>> {
        let mut out = BTreeSet::new();
        for t in self.describe_topics(topics).await? {
            out.extend(t.partitions.iter().map(|p| (t.name.clone(), p.partition)));
        }
        Ok(out.into_iter().collect())
    }
}

fn decode_member_assignment(b: &bytes::Bytes) -> Vec<TopicPartition> {
    if b.len() < 2 {
        return Vec::new();
    }
    let mut body = b.slice(2..);
    let version = i16::from_be_bytes([b[0], b[1]]).clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut body, version) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic.0.to_string(), *p))
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "undecodable member assignment");
            Vec::new()
        }
    }
}
