//! The consumer's group membership (Kafka's `ConsumerCoordinator`): joining and syncing with
//! the classic protocol, leading the assignment, revoking and assigning partitions,
//! heartbeats, and committing offsets.

use super::*;

impl Consumer {
    pub(super) fn identity(&self) -> CommitIdentity {
        match &self.group {
            Some(g) => {
                let m = g.member.lock();
                CommitIdentity {
                    generation: if m.joined { m.generation } else { -1 },
                    member_id: if m.joined {
                        m.member_id.clone()
                    } else {
                        String::new()
                    },
                    group_instance_id: self.config.group_instance_id.clone(),
                }
            }
            None => CommitIdentity::default(),
        }
    }

    /// Commits the current position of every assigned partition.
    pub async fn commit(&mut self) -> Result<()> {
        let offsets: BTreeMap<TopicPartition, i64> = self
            .assigned
            .iter()
            .filter_map(|tp| self.positions.get(tp).map(|o| (tp.clone(), *o)))
            .collect();
        self.commit_offsets(&offsets).await
    }

    /// Commits `offsets` (the next offset to read, per partition) for the group.
    pub async fn commit_offsets(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        let Some(g) = &self.group else {
            return Err(Error::Invalid("committing offsets needs a group.id".into()));
        };
        let identity = self.identity();
        let r = offsets::commit(&self.cluster, &g.id, &identity, offsets).await;
        if let Err(e) = &r {
            // ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS: the group moved on.
            if e.kafka().is_some_and(|k| [22, 25, 27].contains(&k.code())) {
                tracing::debug!(error = %e, generation = identity.generation, "commit asks to rejoin");
                g.rejoin.about(identity.generation);
            }
        }
        self.last_commit = Instant::now();
        r
    }

    pub(super) async fn auto_commit(&mut self) {
        if let Err(e) = self.commit().await {
            tracing::warn!(error = %e, "auto-commit failed");
        }
    }

    /// Joins or rejoins the group when needed, and auto-commits on schedule.
    pub(super) async fn maintain_group(&mut self) -> Result<()> {
        let Some(g) = &self.group else {
            return Ok(());
        };
        if self.subscription.is_empty() {
            return Ok(());
        }
        let due = self.config.enable_auto_commit
            && g.member.lock().joined
            && self.last_commit.elapsed() >= self.config.auto_commit_interval;
        if due {
            self.auto_commit().await;
        }
        let g = self.group.as_ref().expect("checked");
        let (joined, generation) = {
            let m = g.member.lock();
            (m.joined, m.generation)
        };
        if g.rejoin.take(generation) || !joined {
            self.join().await?;
        }
        Ok(())
    }

    pub(super) fn cooperative(&self) -> bool {
        self.config.assignors.iter().all(|a| a.is_cooperative())
    }

    pub(super) fn revoke(&mut self, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        if let Some(l) = &mut self.listener {
            let l = l.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
            l.on_partitions_revoked(partitions);
        }
    }

    pub(super) async fn join(&mut self) -> Result<()> {
        let cooperative = self.cooperative();
        if !cooperative && !self.assigned.is_empty() {
            if self.config.enable_auto_commit {
                self.auto_commit().await;
            }
            let all = self.assignment();
            self.revoke(&all);
            self.set_assignment(BTreeSet::new());
        }
        let group_id = self.group.as_ref().expect("in a group").id.clone();
        let started = Instant::now();
        loop {
            match self.join_once(&group_id).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let code = e.kafka().map(|k| k.code());
                    // UNKNOWN_MEMBER_ID / FENCED: start over with a fresh member id.
                    if code == Some(25) {
                        self.group
                            .as_ref()
                            .expect("group")
                            .member
                            .lock()
                            .member_id
                            .clear();
                    }
                    let retry = e.is_retriable() || matches!(code, Some(25 | 22 | 27 | 79));
                    if !retry || started.elapsed() > self.config.rebalance_timeout {
                        return Err(e);
                    }
                    tracing::debug!(group = %group_id, error = %e, "rejoining");
                    tokio::time::sleep(self.config.client.retry_backoff).await;
                }
            }
        }
    }

    pub(super) async fn join_once(&mut self, group_id: &str) -> Result<()> {
        let cooperative = self.cooperative();
        let owned: Vec<OwnedTopic> = group_topics(&self.assigned)
            .into_iter()
            .map(|(t, ps)| {
                OwnedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t)))
                    .with_partitions(ps)
            })
            .collect();
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(
                self.subscription
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            )
            .with_owned_partitions(if cooperative { owned } else { Vec::new() });
        let metadata = encode_versioned(&subscription, 1)?;
        let (member, g_member) = {
            let g = self.group.as_ref().expect("in a group");
            (g.member.lock().clone(), Arc::clone(&g.member))
        };
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group_id.to_string())))
            .with_session_timeout_ms(self.config.session_timeout.as_millis() as i32)
            .with_rebalance_timeout_ms(self.config.rebalance_timeout.as_millis() as i32)
            .with_member_id(StrBytes::from_string(member.member_id.clone()))
            .with_group_instance_id(
                self.config
                    .group_instance_id
                    .clone()
                    .map(StrBytes::from_string),
            )
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(
                self.config
                    .assignors
                    .iter()
                    .map(|a| {
                        JoinGroupRequestProtocol::default()
                            .with_name(StrBytes::from_static_str(a.name()))
                            .with_metadata(metadata.clone())
                    })
                    .collect(),
            );
        let conn = self.cluster.coordinator(group_id).await?;
        let wait = self.config.rebalance_timeout + Duration::from_secs(5);
        // Whatever asked for a rejoin until now (a heartbeat, a failed commit) is answered by
        // this join; leaving the flag set would start yet another rebalance right after it.
        if let Some(g) = &self.group {
            g.rejoin.clear();
        }
        let r = conn.start(&join).await?.with_timeout(wait).wait().await?;
        if r.error_code == 79 {
            // MEMBER_ID_REQUIRED (KIP-394): rejoin with the id the coordinator chose.
            g_member.lock().member_id = r.member_id.to_string();
        }
        offsets::coordinator_check(&self.cluster, group_id, r.error_code, "joining")?;
        let member_id = r.member_id.to_string();
        let generation = r.generation_id;
        let protocol = r
            .protocol_name
            .as_ref()
            .and_then(|n| Assignor::from_name(n.as_str()))
            .ok_or_else(|| Error::Protocol {
                broker: conn.addr().to_string(),
                message: format!(
                    "group {group_id} chose an unknown protocol {:?}",
                    r.protocol_name
                ),
            })?;
        {
            let mut m = g_member.lock();
            m.member_id = member_id.clone();
            m.generation = generation;
        }
        let assignments = if r.leader == r.member_id {
            self.lead(protocol, &r.members).await?
        } else {
            Vec::new()
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group_id.to_string())))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.clone()))
            .with_group_instance_id(
                self.config
                    .group_instance_id
                    .clone()
                    .map(StrBytes::from_string),
            )
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str(protocol.name())))
            .with_assignments(assignments);
        let s = conn.start(&sync).await?.with_timeout(wait).wait().await?;
        offsets::coordinator_check(&self.cluster, group_id, s.error_code, "syncing with")?;
        let assigned = decode_assignment(s.assignment)?;
        tracing::debug!(group = group_id, member = %member_id, generation, partitions = assigned.len(), "joined");
        g_member.lock().joined = true;
        if let Some(g) = &mut self.group {
            g.protocol = Some(protocol);
        }
        self.apply_assignment(assigned, protocol.is_cooperative())
            .await;
        self.ensure_heartbeat();
        Ok(())
    }

    /// As the group leader: runs the assignor over every member's subscription.
    pub(super) async fn lead(
        &self,
        protocol: Assignor,
        members: &[kafka_protocol::messages::join_group_response::JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut subs = Vec::new();
        for m in members {
            let s = decode_subscription(m.metadata.clone())?;
            subs.push(MemberSubscription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                topics: s.topics.iter().map(|t| t.to_string()).collect(),
                owned: s
                    .owned_partitions
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(move |p| (t.topic.0.to_string(), *p))
                    })
                    .collect(),
            });
        }
        let topics: BTreeSet<String> = subs.iter().flat_map(|s| s.topics.clone()).collect();
        let topics: Vec<String> = topics.into_iter().collect();
        let metadata = self.cluster.refresh(Some(&topics), false).await?;
        let counts: BTreeMap<String, i32> = metadata
            .topics
            .values()
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect();
        let plan = protocol.assign(&subs, &counts);
        let mut out = Vec::new();
        for (member, tps) in plan {
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                group_topics(&tps.into_iter().collect())
                    .into_iter()
                    .map(|(t, ps)| {
                        AssignedTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
            out.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(encode_versioned(&assignment, 1)?),
            );
        }
        Ok(out)
    }

    pub(super) async fn apply_assignment(
        &mut self,
        new: BTreeSet<TopicPartition>,
        cooperative: bool,
    ) {
        let revoked: Vec<TopicPartition> = self.assigned.difference(&new).cloned().collect();
        let added: Vec<TopicPartition> = new.difference(&self.assigned).cloned().collect();
        if !revoked.is_empty() {
            if self.config.enable_auto_commit {
                let offsets: BTreeMap<TopicPartition, i64> = revoked
                    .iter()
                    .filter_map(|tp| self.positions.get(tp).map(|o| (tp.clone(), *o)))
                    .collect();
                if let Err(e) = self.commit_offsets(&offsets).await {
                    tracing::warn!(error = %e, "committing revoked partitions failed");
                }
            }
            self.revoke(&revoked);
            if cooperative {
                // KIP-429: after giving partitions up, rejoin so they can move.
                if let Some(g) = &self.group {
                    g.rejoin.now();
                }
            }
        }
        self.set_assignment(new);
        if let Some(l) = &mut self.listener {
            if !added.is_empty() {
                let l = l.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
                l.on_partitions_assigned(&added);
            }
        }
    }

    pub(super) fn ensure_heartbeat(&mut self) {
        let Some(g) = &mut self.group else { return };
        if g.heartbeat.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let cluster = Arc::clone(&self.cluster);
        let member = Arc::clone(&g.member);
        let rejoin = Arc::clone(&g.rejoin);
        let group_id = g.id.clone();
        let instance = self.config.group_instance_id.clone();
        let interval = self.config.heartbeat_interval;
        g.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let m = member.lock().clone();
                if !m.joined {
                    continue;
                }
                let request = HeartbeatRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group_id.clone())))
                    .with_generation_id(m.generation)
                    .with_member_id(StrBytes::from_string(m.member_id.clone()))
                    .with_group_instance_id(instance.clone().map(StrBytes::from_string));
                let r = async { cluster.coordinator(&group_id).await?.call(&request).await }.await;
                if member.lock().generation != m.generation {
                    // A rebalance finished while this heartbeat was out: its answer is stale.
                    continue;
                }
                match r {
                    Ok(r) => match r.error_code {
                        0 => {}
                        // REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID
                        27 | 22 | 25 | 82 => {
                            tracing::debug!(group = %group_id, code = r.error_code, generation = m.generation, "heartbeat asks to rejoin");
                            if r.error_code == 25 {
                                member.lock().member_id.clear();
                            }
                            if r.error_code != 27 {
                                member.lock().joined = false;
                            }
                            rejoin.about(m.generation);
                        }
                        15 | 16 => cluster.invalidate_coordinator(&group_id),
                        code => tracing::warn!(group = %group_id, code, "heartbeat failed"),
                    },
                    Err(e) => {
                        tracing::debug!(group = %group_id, error = %e, "heartbeat failed");
                        cluster.invalidate_coordinator(&group_id);
                    }
                }
            }
        }));
    }
}

pub(super) fn group_topics(tps: &BTreeSet<TopicPartition>) -> BTreeMap<String, Vec<i32>> {
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        out.entry(t.clone()).or_default().push(*p);
    }
    out
}

/// Consumer protocol payloads carry their version as a leading i16.
pub(super) fn encode_versioned<M: Encodable>(m: &M, version: i16) -> Result<Bytes> {
    let mut b = BytesMut::new();
    b.put_i16(version);
    m.encode(&mut b, version)
        .map_err(|e| Error::Invalid(format!("cannot encode group metadata: {e}")))?;
    Ok(b.freeze())
}

pub(super) fn decode_versioned<M: Decodable>(mut b: Bytes, what: &str) -> Result<M> {
    if b.len() < 2 {
        return Err(Error::Protocol {
            broker: "group coordinator".into(),
            message: format!("{what} of {} bytes", b.len()),
        });
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    let _ = bytes::Buf::get_i16(&mut b);
    // Newer versions only append fields; read them as the newest version known here.
    M::decode(&mut b, version.clamp(0, 3)).map_err(|e| Error::Protocol {
        broker: "group coordinator".into(),
        message: format!("cannot decode {what}: {e}"),
    })
}

pub(super) fn decode_subscription(b: Bytes) -> Result<ConsumerProtocolSubscription> {
    decode_versioned(b, "a member's subscription")
}

pub(super) fn decode_assignment(b: Bytes) -> Result<BTreeSet<TopicPartition>> {
    if b.is_empty() {
        return Ok(BTreeSet::new());
    }
    let a: ConsumerProtocolAssignment = decode_versioned(b, "the assignment")?;
    Ok(a.assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic.0.to_string(), *p))
        })
        .collect())
}
