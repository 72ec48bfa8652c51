//! The active controller's ordering over a scripted quorum, on tokio's paused clock: what a
//! heartbeat does while a decision waits for its commit, and what a controller that cannot
//! confirm its leadership answers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_replication::image::MetadataImage;
use sluice_replication::quorum::service::{ControllerRequest, ControllerResponse, Quorum, Service};
use sluice_replication::quorum::ProposeError;
use sluice_replication::record::MetadataRecord;
use tokio::sync::watch;

const SESSION: Duration = Duration::from_millis(1500);

/// A quorum of one whose commits the test holds back at will.
struct Scripted {
    image: Mutex<Arc<MetadataImage>>,
    leads: AtomicBool,
    /// Whether commits fail as a quorum whose storage broke does.
    broken: AtomicBool,
    applied: AtomicU64,
    held: watch::Sender<bool>,
    /// Every record committed, in order.
    committed: Mutex<Vec<MetadataRecord>>,
}

impl Scripted {
    fn new() -> Arc<Scripted> {
        Arc::new(Scripted {
            image: Mutex::new(Arc::new(MetadataImage::default())),
            leads: AtomicBool::new(true),
            broken: AtomicBool::new(false),
            applied: AtomicU64::new(0),
            held: watch::channel(false).0,
            committed: Mutex::new(Vec::new()),
        })
    }

    fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }

    /// The brokers fenced by the records committed so far.
    fn fences(&self) -> Vec<i32> {
        fn fenced(r: &MetadataRecord, out: &mut Vec<i32>) {
            match r {
                MetadataRecord::FenceBroker { id, .. } => out.push(*id),
                MetadataRecord::Batch(rs) => rs.iter().for_each(|r| fenced(r, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        for r in self.committed.lock().unwrap().iter() {
            fenced(r, &mut out);
        }
        out
    }
}

impl Quorum for Scripted {
    fn image(&self) -> Arc<MetadataImage> {
        self.image.lock().unwrap().clone()
    }

    async fn confirm_leadership(&self) -> Result<u64, ProposeError> {
        if self.leads.load(Ordering::SeqCst) {
            Ok(1)
        } else {
            Err(ProposeError::NotLeader {
                leader: Some((2, "node2:9093".into())),
            })
        }
    }

    async fn leader(&self) -> Option<(u64, String)> {
        None
    }

    async fn propose(&self, mut records: Vec<MetadataRecord>) -> Result<(), ProposeError> {
        let mut held = self.held.subscribe();
        held.wait_for(|h| !h).await.expect("sender lives");
        if self.broken.load(Ordering::SeqCst) {
            return Err(ProposeError::Failed("the log store cannot write".into()));
        }
        let r = match records.len() {
            1 => records.remove(0),
            _ => MetadataRecord::Batch(records),
        };
        let mut image = self.image.lock().unwrap();
        let mut next = (**image).clone();
        next.apply(&r)
            .map_err(|e| ProposeError::Rejected(e.to_string()))?;
        *image = Arc::new(next);
        self.committed.lock().unwrap().push(r);
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn add_learner(&self, _id: u64, _addr: &str) -> Result<(), ProposeError> {
        Ok(())
    }

    fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }
}

fn heartbeat(id: i32, epoch: i64) -> ControllerRequest {
    ControllerRequest::Heartbeat {
        id,
        epoch,
        caught_up: true,
        shutting_down: false,
    }
}

async fn live_broker(service: &Service<Scripted>, id: i32) -> i64 {
    let req = ControllerRequest::RegisterBroker {
        id,
        endpoints: Vec::new(),
        rack: None,
        incarnation: None,
    };
    let ControllerResponse::Registered { epoch, .. } = service.handle(req).await else {
        panic!("registration refused");
    };
    let answer = service.handle(heartbeat(id, epoch)).await;
    assert_eq!(
        answer,
        ControllerResponse::Heartbeat {
            fenced: false,
            shutdown_ready: false
        }
    );
    epoch
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_renews_its_lease_while_a_decision_waits_for_its_commit() {
    let quorum = Scripted::new();
    let service = Arc::new(Service::new(Arc::clone(&quorum), SESSION));
    let epochs = [
        live_broker(&service, 1).await,
        live_broker(&service, 2).await,
    ];

    // A topic creation waits five seconds for its commit, holding the decision lock; the
    // lease check comes next in line.
    quorum.hold(true);
    let create = tokio::spawn({
        let service = Arc::clone(&service);
        async move {
            service
                .handle(ControllerRequest::CreateTopic {
                    name: "t".into(),
                    partitions: 1,
                    replication_factor: 2,
                    configs: BTreeMap::new(),
                    assignments: Vec::new(),
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    let check = tokio::spawn({
        let service = Arc::clone(&service);
        async move { service.check().await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    // Both brokers keep heartbeating every half second; each heartbeat waits its turn.
    let mut beats = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (i, epoch) in epochs.iter().enumerate() {
            let service = Arc::clone(&service);
            let req = heartbeat(i as i32 + 1, *epoch);
            beats.push(tokio::spawn(async move { service.handle(req).await }));
        }
    }
    quorum.hold(false);
    assert!(matches!(
        create.await.unwrap(),
        ControllerResponse::Created { .. }
    ));
    check.await.unwrap();
    for b in beats {
        assert!(matches!(
            b.await.unwrap(),
            ControllerResponse::Heartbeat { fenced: false, .. }
        ));
    }
    assert_eq!(
        quorum.fences(),
        Vec::<i32>::new(),
        "brokers that heartbeated throughout were fenced"
    );

    // Silence does fence, once the lease has run out.
    tokio::time::sleep(SESSION + Duration::from_millis(1)).await;
    service.check().await;
    assert_eq!(quorum.fences(), vec![1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_controller_that_cannot_confirm_it_leads_decides_and_vouches_for_nothing() {
    let quorum = Scripted::new();
    let service = Service::new(Arc::clone(&quorum), SESSION);
    let epoch = live_broker(&service, 1).await;
    quorum.leads.store(false, Ordering::SeqCst);
    let applied = quorum.applied_index();
    assert_eq!(
        service.handle(heartbeat(1, epoch)).await,
        ControllerResponse::NotController {
            leader: Some((2, "node2:9093".into()))
        }
    );
    tokio::time::sleep(SESSION * 2).await;
    service.check().await;
    assert_eq!(quorum.applied_index(), applied, "it proposed something");
    assert!(!quorum.image().brokers[&1].fenced);
}

#[tokio::test(start_paused = true)]
async fn a_commit_the_quorum_fails_does_not_tell_a_broker_its_registration_is_lost() {
    let quorum = Scripted::new();
    let service = Service::new(Arc::clone(&quorum), SESSION);
    let req = ControllerRequest::RegisterBroker {
        id: 1,
        endpoints: Vec::new(),
        rack: None,
        incarnation: None,
    };
    let ControllerResponse::Registered { epoch, .. } = service.handle(req).await else {
        panic!("registration refused");
    };
    // The unfencing this heartbeat asks for cannot commit: the broker must keep its
    // incarnation and heartbeat again, not register anew (which fences it and moves every
    // leadership it has).
    quorum.broken.store(true, Ordering::SeqCst);
    let answer = service.handle(heartbeat(1, epoch)).await;
    let ControllerResponse::Error(e) = answer else {
        panic!("a failed commit answered {answer:?}");
    };
    assert!(!e.registration_lost(), "answered {e:?}");
}
