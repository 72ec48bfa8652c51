//! The client's view of the cluster: bootstrap, metadata cache, a connection per broker, the
//! group coordinator lookup, and retries with backoff.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use parking_lot::RwLock;

use crate::connection::Connection;
use crate::error::{Error, Result};

/// Settings shared by the producer, consumer and admin client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `bootstrap.servers`: `host:port` addresses to learn the cluster from.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`, sent with every request.
    pub client_id: String,
    /// `request.timeout.ms`: how long to wait for any one response.
    pub request_timeout: Duration,
    /// `retry.backoff.ms`: first pause before retrying; doubles up to one second.
    pub retry_backoff: Duration,
    /// `default.api.timeout.ms`: how long an operation keeps retrying retriable errors.
    pub api_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: vec!["localhost:9092".to_string()],
            client_id: "sluice-client".to_string(),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            api_timeout: Duration::from_secs(60),
        }
    }
}

impl ClientConfig {
    /// A configuration for the given comma-separated `bootstrap.servers`.
    pub fn new(bootstrap_servers: &str) -> ClientConfig {
        ClientConfig {
            bootstrap_servers: bootstrap_servers
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            ..ClientConfig::default()
        }
    }
}

/// A broker as the cluster describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// `node.id`.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader's node id, or -1 when there is none.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Kafka error code for this partition (0 when healthy).
    pub error_code: i16,
}

/// A topic and its partitions, ordered by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (all zeros from brokers that do not assign ids).
    pub id: uuid::Uuid,
    /// Whether the topic is internal (`__consumer_offsets`).
    pub internal: bool,
    /// Partitions by index.
    pub partitions: Vec<PartitionInfo>,
}

/// What a Metadata request returned.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// Cluster id, if the broker reports one.
    pub cluster_id: Option<String>,
    /// The active controller's node id.
    pub controller_id: i32,
    /// Brokers by node id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicInfo>,
}

/// Shared connection and metadata state. Cheap to share behind an `Arc`.
pub struct Cluster {
    config: ClientConfig,
    connections: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
    metadata: RwLock<Metadata>,
    coordinators: RwLock<HashMap<String, BrokerInfo>>,
}

impl Cluster {
    /// A cluster handle; connects lazily.
    pub fn new(config: ClientConfig) -> Result<Cluster> {
        if config.bootstrap_servers.is_empty() {
            return Err(Error::Invalid("bootstrap.servers is empty".into()));
        }
        Ok(Cluster {
            config,
            connections: Default::default(),
            metadata: Default::default(),
            coordinators: Default::default(),
        })
    }

    /// The configuration this cluster was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// A connection to `addr`, reusing an open one.
    pub async fn connection(&self, addr: &str) -> Result<Arc<Connection>> {
        let mut conns = self.connections.lock().await;
        if let Some(c) = conns.get(addr) {
            if !c.is_closed() {
                return Ok(Arc::clone(c));
            }
        }
        let c = Arc::new(
            Connection::connect(addr, &self.config.client_id, self.config.request_timeout).await?,
        );
        conns.insert(addr.to_string(), Arc::clone(&c));
        Ok(c)
    }

    /// A connection to any reachable broker: known brokers first, then the bootstrap list.
    pub async fn any(&self) -> Result<Arc<Connection>> {
        let mut addrs: Vec<String> = self
            .metadata
            .read()
            .brokers
            .values()
            .map(BrokerInfo::addr)
            .collect();
        addrs.extend(self.config.bootstrap_servers.iter().cloned());
        let mut last = None;
        for addr in &addrs {
            match self.connection(addr).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(broker = %addr, error = %e, "broker unreachable");
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e @ Error::Unsupported { .. }) => e,
            Some(e) if addrs.len() == 1 => e,
            _ => Error::NoBroker {
                tried: addrs.join(", "),
            },
        })
    }

    /// A connection to broker `node_id`, refreshing metadata if it is not known yet.
    pub async fn broker(&self, node_id: i32) -> Result<Arc<Connection>> {
        let known = self
            .metadata
            .read()
            .brokers
            .get(&node_id)
            .map(BrokerInfo::addr);
        let addr = match known {
            Some(a) => a,
            None => self
                .refresh(Some(&[]), false)
                .await?
                .brokers
                .get(&node_id)
                .map(BrokerInfo::addr)
                .ok_or_else(|| Error::Invalid(format!("broker {node_id} is not in the cluster")))?,
        };
        self.connection(&addr).await
    }

    /// The cached metadata (possibly empty or stale).
    pub fn cached(&self) -> Metadata {
        self.metadata.read().clone()
    }

    /// Asks a broker for metadata of `topics` (`None` = all topics), merges it into the cache
    /// and returns what the broker said.
    pub async fn refresh(&self, topics: Option<&[String]>, auto_create: bool) -> Result<Metadata> {
        let conn = self.any().await?;
        let request = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(auto_create);
        let r = conn.call(&request).await?;
        let fresh = Metadata {
            cluster_id: r.cluster_id.map(|s| s.to_string()),
            controller_id: r.controller_id.0,
            brokers: r
                .brokers
                .into_iter()
                .map(|b| {
                    (
                        b.node_id.0,
                        BrokerInfo {
                            node_id: b.node_id.0,
                            host: b.host.to_string(),
                            port: b.port,
                            rack: b.rack.map(|r| r.to_string()),
                        },
                    )
                })
                .collect(),
            topics: r
                .topics
                .into_iter()
                .filter_map(|t| {
                    let name = t.name?.0.to_string();
                    if t.error_code != 0 {
                        // The caller sees the absence; `topic()` reports the code.
                        self.metadata.write().topics.remove(&name);
                        return None;
                    }
                    let mut partitions: Vec<PartitionInfo> = t
                        .partitions
                        .into_iter()
                        .map(|p| PartitionInfo {
                            partition: p.partition_index,
                            leader: p.leader_id.0,
                            leader_epoch: p.leader_epoch,
                            replicas: p.replica_nodes.iter().map(|b: &BrokerId| b.0).collect(),
                            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                            error_code: p.error_code,
                        })
                        .collect();
                    partitions.sort_by_key(|p| p.partition);
                    Some((
                        name.clone(),
                        TopicInfo {
                            name,
                            id: t.topic_id,
                            internal: t.is_internal,
                            partitions,
                        },
                    ))
                })
                .collect(),
        };
        let mut m = self.metadata.write();
        m.cluster_id = fresh.cluster_id.clone();
        m.controller_id = fresh.controller_id;
        m.brokers = fresh.brokers.clone();
        if topics.is_none() {
            m.topics.clear();
        }
        for (k, v) in &fresh.topics {
            m.topics.insert(k.clone(), v.clone());
        }
        Ok(fresh)
    }

    /// Metadata of one topic, from the cache or the cluster. Creates the topic if the broker
    /// auto-creates topics and `auto_create` is set. Retries while the topic has no leaders yet.
    pub async fn topic(&self, name: &str, auto_create: bool) -> Result<TopicInfo> {
        if let Some(t) = self.metadata.read().topics.get(name) {
            return Ok(t.clone());
        }
        self.retry(&format!("metadata of topic {name}"), || async {
            let conn = self.any().await?;
            let request = MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                    TopicName(StrBytes::from_string(name.to_string())),
                ))]))
                .with_allow_auto_topic_creation(auto_create);
            let r = conn.call(&request).await?;
            let t = r
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
                .ok_or_else(|| Error::Protocol {
                    broker: conn.addr().to_string(),
                    message: format!("Metadata response without topic {name}"),
                })?;
            if let Some(e) = topic_error(name, t.error_code) {
                return Err(e);
            }
            if t.partitions.iter().any(|p| p.error_code == 5) {
                return Err(Error::from_code(5, || format!("topic {name}")).expect("non-zero"));
            }
            self.refresh(Some(&[name.to_string()]), false).await?;
            self.metadata
                .read()
                .topics
                .get(name)
                .cloned()
                .ok_or_else(|| Error::from_code(3, || format!("topic {name}")).expect("non-zero"))
        })
        .await
    }

    /// Forgets cached metadata of `topic`, so the next lookup asks the cluster (after a
    /// NOT_LEADER_OR_FOLLOWER, for instance).
    pub fn invalidate(&self, topic: &str) {
        self.metadata.write().topics.remove(topic);
    }

    /// A connection to the coordinator of `group`.
    pub async fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        let known = self.coordinators.read().get(group).cloned();
        if let Some(b) = known {
            return self.connection(&b.addr()).await;
        }
        let b = self
            .retry(&format!("coordinator of group {group}"), || async {
                let conn = self.any().await?;
                let r: FindCoordinatorResponse = conn
                    .call(
                        &FindCoordinatorRequest::default()
                            .with_key(StrBytes::from_string(group.to_string()))
                            .with_key_type(0),
                    )
                    .await?;
                crate::error::check(r.error_code, || {
                    format!("finding the coordinator of group {group}")
                })?;
                Ok(BrokerInfo {
                    node_id: r.node_id.0,
                    host: r.host.to_string(),
                    port: r.port,
                    rack: None,
                })
            })
            .await?;
        self.coordinators
            .write()
            .insert(group.to_string(), b.clone());
        self.connection(&b.addr()).await
    }

    /// Forgets the coordinator of `group` (after NOT_COORDINATOR or a connection failure).
    pub fn invalidate_coordinator(&self, group: &str) {
        self.coordinators.write().remove(group);
    }

    /// Runs `op` until it succeeds, fails with an error that is not retriable, or
    /// `default.api.timeout.ms` passes. Backs off exponentially between attempts.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.config.api_timeout;
        let mut backoff = self.config.retry_backoff;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() && Instant::now() + backoff < deadline => {
                    tracing::debug!(error = %e, "{what}: retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn topic_error(name: &str, code: i16) -> Option<Error> {
    Error::from_code(code, || format!("topic {name}"))
}
