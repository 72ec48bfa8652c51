//! The active controller over a three-node quorum: brokers register and heartbeat through any
//! node, a silent broker is fenced and its leaderships move, it returns as a new incarnation,
//! leaders change ISRs, a new controller gives brokers a full lease, and a controlled shutdown
//! moves leaderships away first.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_replication::controller::ControllerError;
use sluice_replication::image::MetadataImage;
use sluice_replication::quorum::client::ControllerClient;
use sluice_replication::quorum::service::{
    ControllerRequest, ControllerResponse, Service, ServiceConfig,
};
use sluice_replication::quorum::{QuorumConfig, QuorumNode};
use tokio::net::TcpListener;

const SESSION: Duration = Duration::from_millis(1500);

fn service_config() -> ServiceConfig {
    ServiceConfig {
        session_timeout: SESSION,
        check_interval: Duration::from_millis(100),
        leader_rebalance: None,
    }
}

fn quorum_config() -> QuorumConfig {
    QuorumConfig {
        heartbeat_interval: Duration::from_millis(100),
        election_timeout: (Duration::from_millis(400), Duration::from_millis(800)),
        snapshot_after: 1000,
    }
}

async fn ask(client: &mut ControllerClient, req: ControllerRequest) -> ControllerResponse {
    client
        .send(&req, Duration::from_secs(20))
        .await
        .expect("controller answers")
}

/// Heartbeats broker `id` every 200 ms while `on` holds, with whatever epoch `epoch` holds.
fn heartbeat(
    voters: Vec<String>,
    id: i32,
    epoch: Arc<std::sync::atomic::AtomicI64>,
    on: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        let mut c = ControllerClient::new(voters, Duration::from_secs(2));
        loop {
            if on.load(Ordering::Relaxed) {
                let req = ControllerRequest::Heartbeat {
                    id,
                    epoch: epoch.load(Ordering::Relaxed),
                    caught_up: true,
                    shutting_down: false,
                };
                // A missed heartbeat during an election is what leases allow for.
                let _ = c.send(&req, Duration::from_secs(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

async fn wait_for(nodes: &[&QuorumNode], what: &str, ok: impl Fn(&MetadataImage) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes.iter().all(|n| ok(&n.image.borrow())) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three quorum nodes, each running the controller service, bootstrapped as one quorum.
async fn start_quorum(dir: &std::path::Path) -> (Vec<String>, Vec<Option<Arc<QuorumNode>>>) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let voters: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut nodes: Vec<Option<Arc<QuorumNode>>> = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let (node, inbox) = QuorumNode::start(
            i as u64 + 1,
            &dir.join(format!("n{i}")),
            l,
            &quorum_config(),
        )
        .await
        .unwrap();
        let node = Arc::new(node);
        Service::spawn(Arc::clone(&node), inbox, service_config());
        nodes.push(Some(node));
    }
    let members: BTreeMap<u64, String> = voters
        .iter()
        .enumerate()
        .map(|(i, a)| (i as u64 + 1, a.clone()))
        .collect();
    for n in nodes.iter().flatten() {
        n.bootstrap(&members).await.unwrap();
    }
    (voters, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_cut_off_from_its_quorum_answers_no_heartbeat_from_its_stale_image() {
    let dir = tempfile::tempdir().unwrap();
    let (voters, nodes) = start_quorum(dir.path()).await;
    let mut client = ControllerClient::new(voters.clone(), Duration::from_secs(2));
    let req = ControllerRequest::RegisterBroker {
        id: 1,
        endpoints: Vec::new(),
        rack: None,
        incarnation: None,
    };
    let ControllerResponse::Registered { epoch, .. } = ask(&mut client, req).await else {
        panic!("registration refused");
    };
    let heartbeat = ControllerRequest::Heartbeat {
        id: 1,
        epoch,
        caught_up: true,
        shutting_down: false,
    };
    let all: Vec<&QuorumNode> = nodes.iter().flatten().map(|n| &**n).collect();
    assert!(matches!(
        ask(&mut client, heartbeat.clone()).await,
        ControllerResponse::Heartbeat { .. }
    ));
    wait_for(&all, "broker 1 to be unfenced", |i| {
        i.live_brokers().count() == 1
    })
    .await;

    // The two other voters stop: the leader still believes it leads, but a newer controller
    // may have fenced broker 1 by now. It must not vouch for what its image says.
    let (leader, _) = all[0].leader().await.expect("a leader");
    for (i, n) in nodes.iter().flatten().enumerate() {
        if i as u64 + 1 != leader {
            n.shutdown().await;
        }
    }
    let mut only_leader = ControllerClient::new(
        vec![voters[leader as usize - 1].clone()],
        Duration::from_secs(3),
    );
    let answer = only_leader.send(&heartbeat, Duration::from_secs(4)).await;
    assert!(
        !matches!(answer, Ok(ControllerResponse::Heartbeat { .. })),
        "a controller that cannot reach a majority answered {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_are_fenced_when_silent_and_leaderships_move() {
    let dir = tempfile::tempdir().unwrap();
    let (voters, mut nodes) = start_quorum(dir.path()).await;

    // Three brokers register (through any node) and heartbeat.
    let mut client = ControllerClient::new(voters.clone(), Duration::from_secs(2));
    let mut epochs = Vec::new();
    let mut switches = Vec::new();
    for id in 1..=3 {
        let req = ControllerRequest::RegisterBroker {
            id,
            endpoints: Vec::new(),
            rack: None,
            incarnation: None,
        };
        let ControllerResponse::Registered { epoch, .. } = ask(&mut client, req).await else {
            panic!("registration refused");
        };
        assert_eq!(epoch, 1);
        let e = Arc::new(std::sync::atomic::AtomicI64::new(epoch));
        let on = Arc::new(AtomicBool::new(true));
        heartbeat(voters.clone(), id, Arc::clone(&e), Arc::clone(&on));
        epochs.push(e);
        switches.push(on);
    }
    let all: Vec<&QuorumNode> = nodes.iter().flatten().map(|n| &**n).collect();
    wait_for(&all, "brokers to be unfenced", |i| {
        i.live_brokers().count() == 3
    })
    .await;

    let req = ControllerRequest::CreateTopic {
        name: "orders".into(),
        partitions: 6,
        replication_factor: 3,
        configs: BTreeMap::new(),
        assignments: Vec::new(),
    };
    let ControllerResponse::Created { id: topic } = ask(&mut client, req).await else {
        panic!("topic refused");
    };
    let again = ControllerRequest::CreateTopic {
        name: "orders".into(),
        partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::new(),
        assignments: Vec::new(),
    };
    assert!(matches!(
        ask(&mut client, again).await,
        ControllerResponse::Error(ControllerError::TopicAlreadyExists(_))
    ));

    // Broker 1 goes silent: it is fenced, leads nothing, is in no ISR.
    switches[0].store(false, Ordering::Relaxed);
    wait_for(&all, "broker 1 to be fenced", |i| {
        i.brokers[&1].fenced
            && i.topics[&topic]
                .partitions
                .iter()
                .all(|p| p.leader != 1 && !p.isr.contains(&1) && p.leader > 0)
    })
    .await;

    // It restarts: a new incarnation, unfenced once caught up; a leader takes it back in.
    let req = ControllerRequest::RegisterBroker {
        id: 1,
        endpoints: Vec::new(),
        rack: None,
        incarnation: None,
    };
    let ControllerResponse::Registered { epoch, .. } = ask(&mut client, req).await else {
        panic!("re-registration refused");
    };
    assert_eq!(epoch, 2);
    let stale = ControllerRequest::Heartbeat {
        id: 1,
        epoch: 1,
        caught_up: true,
        shutting_down: false,
    };
    assert!(matches!(
        ask(&mut client, stale).await,
        ControllerResponse::Error(ControllerError::StaleBrokerEpoch(_))
    ));
    epochs[0].store(epoch, Ordering::Relaxed);
    switches[0].store(true, Ordering::Relaxed);
    wait_for(&all, "broker 1 to return", |i| !i.brokers[&1].fenced).await;
    let p = all[0].image.borrow().topics[&topic].partitions[0].clone();
    let mut isr = p.isr.clone();
    isr.push(1);
    let req = ControllerRequest::AlterIsr {
        leader: p.leader,
        topic,
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: isr.clone(),
        broker_epochs: vec![(1, epoch)],
    };
    assert_eq!(
        ask(&mut client, req.clone()).await,
        ControllerResponse::Altered
    );
    assert!(
        matches!(
            ask(&mut client, req).await,
            ControllerResponse::Error(ControllerError::InvalidUpdateVersion(_))
        ),
        "the same change again is at a stale partition epoch"
    );
    wait_for(&all, "the ISR change", |i| {
        i.topics[&topic].partitions[0].isr.len() == 3
    })
    .await;

    // The active controller dies. Its successor gives every broker a full lease: nobody is
    // fenced for heartbeats the old controller received.
    let (leader, _) = all[0].leader().await.unwrap();
    drop(all);
    let dead = nodes[leader as usize - 1].take().unwrap();
    dead.shutdown().await;
    let alive: Vec<&QuorumNode> = nodes.iter().flatten().map(|n| &**n).collect();
    let deadline = Instant::now() + SESSION * 3;
    while Instant::now() < deadline {
        for n in &alive {
            assert_eq!(
                n.image.borrow().live_brokers().count(),
                3,
                "no broker fenced by a new controller"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Controlled shutdown of broker 2: its leaderships move before it stops.
    let req = ControllerRequest::Heartbeat {
        id: 2,
        epoch: 1,
        caught_up: true,
        shutting_down: true,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ask(&mut client, req.clone()).await {
            ControllerResponse::Heartbeat {
                shutdown_ready: true,
                ..
            } => break,
            ControllerResponse::Heartbeat { .. } => {}
            other => panic!("{other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "broker 2 never became ready to stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for(&alive, "broker 2 to lead nothing", |i| {
        i.topics[&topic]
            .partitions
            .iter()
            .all(|p| p.leader != 2 && p.leader > 0)
    })
    .await;
}
