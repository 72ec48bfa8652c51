//! Three controller nodes and a learner, in this process over real TCP: records commit and
//! every node's image converges; the leader dies and the survivors elect another and go on;
//! the dead node restarts from its disk and catches up.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_replication::image::MetadataImage;
use sluice_replication::quorum::{ProposeError, QuorumConfig, QuorumNode};
use sluice_replication::record::MetadataRecord;
use tokio::net::TcpListener;

fn config() -> QuorumConfig {
    QuorumConfig {
        heartbeat_interval: Duration::from_millis(100),
        election_timeout: (Duration::from_millis(400), Duration::from_millis(800)),
        snapshot_after: 20,
    }
}

async fn start(id: u64, dir: &Path, addr: &str) -> QuorumNode {
    let listener = TcpListener::bind(addr).await.expect("bind");
    QuorumNode::start(id, &dir.join(format!("node{id}")), listener, &config())
        .await
        .expect("start")
        .0
}

fn register(id: i32, epoch: i64) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        id,
        epoch,
        endpoints: Vec::new(),
        rack: None,
        incarnation: None,
    }
}

/// Proposes through whichever node leads, following NotLeader answers.
async fn propose(nodes: &[&QuorumNode], records: Vec<MetadataRecord>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for n in nodes {
            match n.propose(records.clone()).await {
                Ok(()) => return,
                Err(ProposeError::NotLeader { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(Instant::now() < deadline, "no leader accepted the proposal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn converge(
    nodes: &[&QuorumNode],
    want: impl Fn(&MetadataImage) -> bool,
) -> Arc<MetadataImage> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let images: Vec<Arc<MetadataImage>> =
            nodes.iter().map(|n| n.image.borrow().clone()).collect();
        if images.iter().all(|i| want(i)) && images.windows(2).all(|w| w[0] == w[1]) {
            return images[0].clone();
        }
        assert!(Instant::now() < deadline, "images did not converge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_commit_survive_the_leader_and_reach_learners() {
    let dir = tempfile::tempdir().unwrap();
    let listeners: Vec<TcpListener> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        v
    };
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        nodes.push(Some(
            QuorumNode::start(
                i as u64 + 1,
                &dir.path().join(format!("node{}", i + 1)),
                l,
                &config(),
            )
            .await
            .unwrap()
            .0,
        ));
    }
    let voters: BTreeMap<u64, String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (i as u64 + 1, a.clone()))
        .collect();
    // Every voter bootstraps with the same list, as brokers started from one config would.
    for n in nodes.iter().flatten() {
        n.bootstrap(&voters).await.unwrap();
    }
    let all: Vec<&QuorumNode> = nodes.iter().flatten().collect();
    propose(&all, (1..=3).map(|id| register(id, 1)).collect()).await;
    converge(&all, |i| i.brokers.len() == 3).await;

    // A record that does not fit is committed but changes nothing, on every node alike.
    let (id, _) = all[0].leader().await.expect("a leader");
    assert!(matches!(
        all[id as usize - 1].propose(vec![register(1, 1)]).await,
        Err(ProposeError::Rejected(_))
    ));
    converge(&all, |i| i.brokers.len() == 3 && i.brokers[&1].epoch == 1).await;

    // The leader dies; the other two elect a leader and keep committing.
    let (leader_id, _) = all[0].leader().await.expect("a leader");
    let dead = nodes[leader_id as usize - 1].take().unwrap();
    dead.shutdown().await;
    let alive: Vec<&QuorumNode> = nodes.iter().flatten().collect();
    // One entry each (records proposed together would commit as one batch entry).
    for id in 4..=40 {
        propose(&alive, vec![register(id, 1)]).await;
    }
    converge(&alive, |i| i.brokers.len() == 40).await;
    // Past `snapshot_after` entries the survivors snapshot their image (and purge the log).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(1..=3u64).filter(|id| *id != leader_id).all(|id| {
        dir.path()
            .join(format!("node{id}/state/snapshot.json"))
            .exists()
    }) {
        assert!(Instant::now() < deadline, "no snapshot was taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // It restarts from its disk and catches up (from the log, or a snapshot where the
    // leader purged the log past it).
    let back = start(leader_id, dir.path(), &addrs[leader_id as usize - 1]).await;
    nodes[leader_id as usize - 1] = Some(back);
    let all: Vec<&QuorumNode> = nodes.iter().flatten().collect();
    converge(&all, |i| i.brokers.len() == 40).await;

    // A broker that does not vote follows the log as a learner.
    let learner_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let learner_addr = learner_listener.local_addr().unwrap().to_string();
    let learner = QuorumNode::start(9, &dir.path().join("node9"), learner_listener, &config())
        .await
        .unwrap()
        .0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut added = false;
        for n in &all {
            match n.add_learner(9, &learner_addr).await {
                Ok(()) => {
                    added = true;
                    break;
                }
                Err(ProposeError::NotLeader { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        if added {
            break;
        }
        assert!(Instant::now() < deadline, "no leader added the learner");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    propose(&all, vec![register(41, 1)]).await;
    let mut everyone = all.clone();
    everyone.push(&learner);
    converge(&everyone, |i| i.brokers.len() == 41).await;
    assert!(
        !sluice_replication::quorum::voters(&learner.raft).contains(&9),
        "learners do not vote"
    );

    learner.shutdown().await;
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proposer_is_answered_only_once_the_image_shows_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let node = Arc::new(
        QuorumNode::start(1, dir.path(), listener, &config())
            .await
            .unwrap()
            .0,
    );
    node.bootstrap(&BTreeMap::from([(1, addr)])).await.unwrap();
    propose(&[&node], vec![register(1000, 1)]).await;
    // Many proposers at once, so that several records apply in one batch: each must find its
    // own record in the image the moment it is answered.
    let mut tasks = Vec::new();
    for id in 1..=200 {
        let node = Arc::clone(&node);
        tasks.push(tokio::spawn(async move {
            node.propose(vec![register(id, 1)]).await.unwrap();
            node.image.borrow().brokers.contains_key(&id)
        }));
    }
    let mut missing = 0;
    for t in tasks {
        if !t.await.unwrap() {
            missing += 1;
        }
    }
    assert_eq!(missing, 0, "answered before the image showed the record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_resigns_hands_the_quorum_to_another_voter() {
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let voters: BTreeMap<u64, String> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
        .collect();
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let node = QuorumNode::start(id, &dir.path().join(format!("node{id}")), l, &config())
            .await
            .unwrap()
            .0;
        nodes.push(node);
    }
    for n in &nodes {
        n.bootstrap(&voters).await.unwrap();
    }
    let all: Vec<&QuorumNode> = nodes.iter().collect();
    propose(&all, vec![register(1, 1)]).await;
    converge(&all, |i| i.brokers.len() == 1).await;
    let (old, _) = all[0].leader().await.expect("a leader");
    // A healthy leader keeps leading; only resigning moves the quorum.
    nodes[old as usize - 1].resign(Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leaders: Vec<Option<u64>> = nodes.iter().map(|n| n.leader_id()).collect();
        if leaders.iter().all(|l| l.is_some_and(|l| l != old)) {
            break;
        }
        assert!(Instant::now() < deadline, "leadership stayed: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    propose(&all, vec![register(2, 1)]).await;
    converge(&all, |i| i.brokers.len() == 2).await;
}
