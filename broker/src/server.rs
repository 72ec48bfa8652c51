//! `Server`: joins the cluster, binds the listener, accepts connections (bounded by
//! `max.connections`), runs storage housekeeping every second and the replication tasks, and
//! shuts down in order on request: hand leaderships away, stop accepting, let connections
//! finish, stop replication and the quorum, then flush and close every log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use sluice_replication::record::Endpoint;

use crate::cluster::fetcher::{FetchSettings, Fetchers};
use crate::cluster::lifecycle::{self, Registration};
use crate::cluster::{reconcile, Cluster};
use crate::config::BrokerConfig;
use crate::connection::Shared;
use crate::error::BrokerError;
use crate::group::GroupCoordinator;
use crate::replica_manager::ReplicaManager;
use crate::security::ListenerSecurity;

/// A running broker.
pub struct Server {
    /// The Kafka listeners, in `listeners` order (the CONTROLLER listener is the quorum's).
    listeners: Vec<BoundListener>,
    shared: Arc<Shared>,
    max_connections: usize,
    tasks: ClusterTasks,
}

/// The tasks that keep this node in the cluster and its replicas in sync.
struct ClusterTasks {
    /// Registration and heartbeats; aborted at shutdown.
    life: tokio::task::JoinHandle<()>,
    // Replication stops after client connections, so acks=all waits can still finish.
    stop_replication: watch::Sender<bool>,
    reconciler: tokio::task::JoinHandle<()>,
    isr: tokio::task::JoinHandle<()>,
    fetchers: Arc<Fetchers>,
}

impl ClusterTasks {
    fn start(
        shared: &Arc<Shared>,
        registration: Registration,
        fetch: FetchSettings,
    ) -> ClusterTasks {
        let (stop_replication, replication_stopped) = watch::channel(false);
        let cluster = &shared.cluster;
        let rm = &shared.rm;
        let fetchers = Arc::new(Fetchers::new(
            Arc::clone(cluster),
            Arc::clone(rm),
            fetch,
            replication_stopped.clone(),
        ));
        ClusterTasks {
            reconciler: tokio::spawn(reconcile::run(
                Arc::clone(cluster),
                Arc::clone(rm),
                Arc::clone(&shared.groups),
                Arc::clone(&fetchers),
                replication_stopped.clone(),
            )),
            isr: tokio::spawn(reconcile::isr_updates(
                Arc::clone(cluster),
                Arc::clone(rm),
                replication_stopped,
            )),
            life: tokio::spawn(lifecycle::run(Arc::clone(cluster), registration)),
            stop_replication,
            fetchers,
        }
    }
}

impl Server {
    /// Opens storage, joins the cluster and then listens (port 0 picks a free port).
    pub async fn bind(config: BrokerConfig) -> Result<Server, BrokerError> {
        // Ports are taken now (their numbers are registered), but connections are refused
        // until this broker has joined: a client tries another broker instead of waiting.
        let mut reserved = Vec::new();
        let mut endpoints = Vec::new();
        for l in &config.listeners.kafka {
            let protocol = config.listeners.protocol(&l.name).ok_or_else(|| {
                BrokerError::InvalidConfig(format!(
                    "listener {} has no security protocol in listener.security.protocol.map",
                    l.name
                ))
            })?;
            let security = ListenerSecurity::build(&config, &l.name, protocol)
                .map_err(|e| BrokerError::InvalidConfig(e.to_string()))?;
            let (socket, port) = reserve(&l.host, l.port).await?;
            let (host, port) = config.listeners.advertised_address(l, port);
            endpoints.push(Endpoint {
                name: l.name.clone(),
                host,
                port,
            });
            reserved.push((socket, security));
        }
        let max_connections = config.max_connections;
        let group_config = config.groups.clone();
        let memory_limit = config.queued_max_request_bytes.clamp(1, u32::MAX as usize);
        let memory = Arc::new(Semaphore::new(memory_limit));
        let max_frame = config.socket_request_max_bytes;
        let registration = Registration {
            endpoints,
            rack: config.cluster.rack.clone(),
            heartbeat_interval: Duration::from_millis(config.cluster.heartbeat_interval_ms),
        };
        let fetch_settings = FetchSettings {
            wait_max_ms: config.cluster.replica_fetch_wait_max_ms,
            partition_max_bytes: config.cluster.replica_fetch_max_bytes,
            backoff: Duration::from_millis(config.cluster.replica_fetch_backoff_ms),
            listener: config.listeners.inter_broker_listener(),
        };
        let cluster = Cluster::start(&config).await?;
        let rm = Arc::new(tokio::task::block_in_place(|| {
            ReplicaManager::open(config)
        })?);
        let groups = Arc::new(GroupCoordinator::open(Arc::clone(&rm), group_config));
        let shared = Arc::new(Shared {
            memory,
            memory_limit,
            max_frame,
            rm,
            groups,
            cluster,
        });
        let tasks = ClusterTasks::start(&shared, registration, fetch_settings);
        // Like a Kafka broker, serve clients only once registered, caught up and unfenced.
        let node = shared.cluster.node_id;
        let cluster = Arc::clone(&shared.cluster);
        while !shared
            .cluster
            .wait_for(Duration::from_secs(10), |i| cluster.serving(i))
            .await
        {
            tracing::info!(
                node,
                "waiting to join the cluster (is a majority of controller.quorum.voters up?)"
            );
        }
        tracing::info!(node, "joined the cluster");
        let listen = |s: TcpSocket| {
            s.listen(1024)
                .map_err(|e| BrokerError::InvalidConfig(format!("cannot listen: {e}")))
        };
        let listeners = reserved
            .into_iter()
            .map(|(socket, security)| {
                Ok(BoundListener {
                    tcp: listen(socket)?,
                    security: Arc::new(security),
                })
            })
            .collect::<Result<Vec<_>, BrokerError>>()?;
        Ok(Server {
            listeners,
            shared,
            max_connections,
            tasks,
        })
    }

    /// The bound address of the first listener in `listeners`.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners
            .first()
            .ok_or_else(|| std::io::Error::other("no listener"))?
            .tcp
            .local_addr()
    }

    /// Every Kafka listener's name and bound address, in `listeners` order.
    pub fn listener_addrs(&self) -> std::io::Result<Vec<(String, SocketAddr)>> {
        self.listeners
            .iter()
            .map(|l| Ok((l.security.name.to_string(), l.tcp.local_addr()?)))
            .collect()
    }

    /// The partitions of this broker.
    pub fn replica_manager(&self) -> Arc<ReplicaManager> {
        Arc::clone(&self.shared.rm)
    }

    /// A handler context for `session`, as a connection builds one: tests dispatch requests
    /// through it as any principal, without a socket.
    #[cfg(test)]
    pub(crate) fn context(
        &self,
        session: crate::security::Session,
        version: i16,
    ) -> crate::handlers::Context {
        crate::handlers::Context {
            rm: Arc::clone(&self.shared.rm),
            session: Arc::new(session),
            version,
            client_id: Some("test".into()),
            groups: Arc::clone(&self.shared.groups),
            cluster: Arc::clone(&self.shared.cluster),
        }
    }

    /// Serves until `shutdown` turns true, then closes everything cleanly.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), BrokerError> {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut conns = JoinSet::new();
        let rm = Arc::clone(&self.shared.rm);
        let cluster = Arc::clone(&self.shared.cluster);
        let ClusterTasks {
            life,
            stop_replication,
            reconciler,
            isr,
            fetchers,
        } = self.tasks;
        // Background work stops when the server does, whether asked to or not (a failed log
        // directory stops it too).
        let (stop_background, background_stopping) = watch::channel(false);
        let housekeeping = tokio::spawn(housekeeping_loop(
            Arc::clone(&rm),
            background_stopping.clone(),
        ));
        let group_timers = tokio::spawn(group_timer_loop(
            Arc::clone(&self.shared.groups),
            background_stopping,
        ));
        // Connections outlive the shutdown signal until the controlled shutdown has moved
        // this node's leaderships away: until then it still leads, and its clients and
        // followers need it (Kafka stops its socket server after the controlled shutdown).
        let (close_connections, connections_closing) = watch::channel(false);
        let mut next_listener = 0;
        let mut dir_offline = rm.log_dir_health().offline_signal();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                // A failed log directory stops the broker, leaderships first (see `log_dirs`).
                _ = offline_dir(&mut dir_offline) => break,
                accepted = accept_any(&self.listeners, &mut next_listener) => {
                    let (stream, peer, security) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::warn!(%peer, "max.connections reached; refusing connection");
                        continue;
                    };
                    let shared = Arc::clone(&self.shared);
                    let mut stop = connections_closing.clone();
                    conns.spawn(async move {
                        let listener = security.name;
                        tracing::info!(%peer, listener, "connection opened");
                        metrics::gauge!(crate::observability::names::CONNECTIONS).increment(1.0);
                        tokio::select! {
                            r = security.serve(stream, peer, shared) => match r {
                                Ok(()) => tracing::info!(%peer, "connection closed"),
                                Err(e) => tracing::info!(%peer, reason = %e, "connection closed"),
                            },
                            _ = stop.changed() => tracing::info!(%peer, "connection closed by shutdown"),
                        }
                        metrics::gauge!(crate::observability::names::CONNECTIONS).decrement(1.0);
                        drop(slot);
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        // Fails only if both tasks already ended.
        let _ = stop_background.send(true);
        // Heartbeats stop here, even one waiting for a controller that is gone.
        life.abort();
        if let Err(e) = life.await {
            if !e.is_cancelled() {
                tracing::warn!(error = %e, "broker lifecycle task failed");
            }
        }
        // A single node too: its partitions go offline before it stops and it is fenced, so
        // its next start registers at once instead of waiting out this incarnation's session.
        lifecycle::controlled_shutdown(&cluster, Duration::from_secs(10)).await;
        cluster.resign(Duration::from_secs(2)).await;
        tracing::info!("shutting down: closing connections");
        // Fails only if no connection is left to tell.
        let _ = close_connections.send(true);
        while conns.join_next().await.is_some() {}
        // Fails only if every receiver is gone, which means the tasks already stopped.
        let _ = stop_replication.send(true);
        for (name, task) in [("reconciler", reconciler), ("ISR updates", isr)] {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "{name} task failed");
            }
        }
        fetchers.join().await;
        cluster.shutdown().await;
        if let Err(e) = group_timers.await {
            tracing::warn!(error = %e, "group timer task failed");
        }
        if let Err(e) = housekeeping.await {
            tracing::warn!(error = %e, "housekeeping task failed");
        }
        tracing::info!("flushing and closing logs");
        let closed = tokio::task::block_in_place(|| rm.close());
        let offline = rm.log_dir_health().offline_dirs();
        if !offline.is_empty() {
            return Err(BrokerError::LogDirOffline(offline.join(", ")));
        }
        closed?;
        Ok(())
    }
}

/// Returns once a log directory has gone offline (at once if one already has).
async fn offline_dir(signal: &mut watch::Receiver<bool>) {
    if signal.wait_for(|offline| *offline).await.is_err() {
        // The health tracker is gone with the replica manager: nothing can fail any more.
        std::future::pending::<()>().await;
    }
}

/// Binds `host:port` without listening yet; returns the socket and the bound port.
async fn reserve(host: &str, port: u16) -> Result<(TcpSocket, u16), BrokerError> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    // Like TcpListener::bind on a name, but IPv4 first, as clients resolving `localhost` try.
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| BrokerError::InvalidConfig(format!("cannot resolve {host}:{port}: {e}")))?
        .collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    let addr = *addrs
        .first()
        .ok_or_else(|| BrokerError::InvalidConfig(format!("cannot resolve {host}:{port}")))?;
    let cannot =
        |e: std::io::Error| BrokerError::InvalidConfig(format!("cannot listen on {addr}: {e}"));
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(cannot)?;
    socket.set_reuseaddr(true).map_err(cannot)?;
    socket.bind(addr).map_err(cannot)?;
    let port = socket.local_addr().map_err(cannot)?.port();
    Ok((socket, port))
}

/// A bound Kafka listener and how its connections are secured.
struct BoundListener {
    tcp: TcpListener,
    security: Arc<ListenerSecurity>,
}

/// The next connection on any listener. Polling starts one listener further each time, so a
/// busy listener cannot starve the others.
async fn accept_any(
    listeners: &[BoundListener],
    next: &mut usize,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr, Arc<ListenerSecurity>)> {
    std::future::poll_fn(|cx| {
        let n = listeners.len();
        for i in 0..n {
            let l = &listeners[(*next + i) % n];
            if let Poll::Ready(r) = l.tcp.poll_accept(cx) {
                *next = (*next + i + 1) % n;
                return Poll::Ready(r.map(|(s, a)| (s, a, Arc::clone(&l.security))));
            }
        }
        Poll::Pending
    })
    .await
}

async fn housekeeping_loop(rm: Arc<ReplicaManager>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {
                let partitions = rm.partitions().len();
                metrics::gauge!(crate::observability::names::PARTITIONS).set(partitions as f64);
                let under = rm.under_replicated_count();
                metrics::gauge!(crate::observability::names::UNDER_REPLICATED).set(under as f64);
                let rm = Arc::clone(&rm);
                let now = crate::clock::now_ms();
                match tokio::task::spawn_blocking(move || rm.housekeeping(now)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "storage housekeeping failed"),
                    Err(e) => tracing::error!(error = %e, "storage housekeeping panicked"),
                }
            }
        }
    }
}

/// Drives group session expiry and rebalance deadlines. 100 ms is far below the smallest
/// session timeout Kafka allows by default (6 s).
async fn group_timer_loop(groups: Arc<GroupCoordinator>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {
                let groups = Arc::clone(&groups);
                if let Err(e) = tokio::task::spawn_blocking(move || groups.tick()).await {
                    tracing::error!(error = %e, "group timers panicked");
                }
            }
        }
    }
}
