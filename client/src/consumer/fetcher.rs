//! The consumer's fetching (Kafka's `Fetcher`): where each assigned partition starts, one
//! pipelined Fetch per leader, and turning answers into records and new positions.

use super::*;

impl Consumer {
    /// Finds a start offset for every assigned partition that has none.
    pub(super) async fn resolve_positions(&mut self) -> Result<()> {
        let missing: Vec<TopicPartition> = self
            .assigned
            .iter()
            .filter(|tp| !self.positions.contains_key(*tp))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut by_time: BTreeMap<i64, Vec<TopicPartition>> = BTreeMap::new();
        let mut need_committed = Vec::new();
        for tp in missing {
            match self.seeks.get(&tp) {
                Some(Offset::At(o)) => {
                    self.positions.insert(tp, *o);
                }
                Some(Offset::Beginning) => by_time.entry(EARLIEST).or_default().push(tp),
                Some(Offset::End) => by_time.entry(LATEST).or_default().push(tp),
                Some(Offset::Timestamp(t)) => by_time.entry(*t).or_default().push(tp),
                None => need_committed.push(tp),
            }
        }
        if !need_committed.is_empty() {
            let committed = match &self.group {
                Some(g) => offsets::committed(&self.cluster, &g.id, Some(&need_committed)).await?,
                None => BTreeMap::new(),
            };
            for tp in need_committed {
                match committed.get(&tp) {
                    Some(c) => {
                        self.positions.insert(tp, c.offset);
                    }
                    None => match self.config.auto_offset_reset {
                        OffsetReset::Earliest => by_time.entry(EARLIEST).or_default().push(tp),
                        OffsetReset::Latest => by_time.entry(LATEST).or_default().push(tp),
                        OffsetReset::None => {
                            return Err(Error::Invalid(format!(
                                "no committed offset for {}-{} and auto.offset.reset is none",
                                tp.0, tp.1
                            )))
                        }
                    },
                }
            }
        }
        for (timestamp, tps) in by_time {
            let found = offsets::list_offsets(&self.cluster, &tps, timestamp).await?;
            let mut no_match = Vec::new();
            for tp in tps {
                match found.get(&tp) {
                    Some(o) if *o >= 0 => {
                        self.positions.insert(tp.clone(), *o);
                        self.seeks.remove(&tp);
                    }
                    _ => no_match.push(tp),
                }
            }
            if !no_match.is_empty() {
                // No record that late: start at the end, as Kafka's tools do.
                let ends = offsets::list_offsets(&self.cluster, &no_match, LATEST).await?;
                for (tp, o) in ends {
                    self.seeks.remove(&tp);
                    self.positions.insert(tp, o);
                }
            }
        }
        Ok(())
    }

    /// Sends a Fetch to every leader that has none outstanding.
    pub(super) async fn start_fetches(&mut self) {
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        let cached = self.cluster.cached();
        let mut unknown = BTreeSet::new();
        for tp in &self.assigned {
            let Some(&offset) = self.positions.get(tp) else {
                continue;
            };
            let leader = cached
                .topics
                .get(&tp.0)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == tp.1))
                .map(|p| p.leader);
            match leader {
                Some(l) if l >= 0 => by_leader.entry(l).or_default().push((tp.clone(), offset)),
                _ => {
                    unknown.insert(tp.0.clone());
                }
            }
        }
        for topic in unknown {
            if let Err(e) = self.cluster.topic(&topic, false).await {
                tracing::debug!(%topic, error = %e, "no metadata for an assigned topic yet");
            }
        }
        for (leader, offsets) in by_leader {
            if !self.fetching.insert(leader) {
                continue;
            }
            let mut topics: Vec<FetchTopic> = Vec::new();
            for ((t, p), o) in &offsets {
                let part = FetchPartition::default()
                    .with_partition(*p)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(*o)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(self.config.max_partition_fetch_bytes);
                match topics.iter_mut().find(|x| x.topic.0.as_str() == t) {
                    Some(x) => x.partitions.push(part),
                    None => topics.push(
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(vec![part]),
                    ),
                }
            }
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(self.config.fetch_max_wait.as_millis() as i32)
                .with_min_bytes(self.config.fetch_min_bytes)
                .with_max_bytes(self.config.fetch_max_bytes)
                .with_isolation_level(0)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(topics);
            let cluster = Arc::clone(&self.cluster);
            let tx = self.results_tx.clone();
            let epoch = self.epoch;
            let timeout = self.config.client.request_timeout + self.config.fetch_max_wait;
            tokio::spawn(async move {
                let response = async {
                    let conn = cluster.broker(leader).await?;
                    conn.start(&request)
                        .await?
                        .with_timeout(timeout)
                        .wait()
                        .await
                }
                .await;
                // The consumer may be gone; then nobody needs the answer.
                let _ = tx.send(FetchResult {
                    leader,
                    epoch,
                    offsets,
                    response,
                });
            });
        }
    }

    pub(super) async fn handle_fetch(&mut self, result: FetchResult) -> Result<()> {
        self.fetching.remove(&result.leader);
        let response = match result.response {
            Ok(r) => r,
            Err(e) if e.is_retriable() => {
                tracing::debug!(leader = result.leader, error = %e, "fetch failed; retrying");
                for ((t, _), _) in &result.offsets {
                    self.cluster.invalidate(t);
                }
                tokio::time::sleep(self.config.client.retry_backoff).await;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        crate::error::check(response.error_code, || {
            format!("fetching from broker {}", result.leader)
        })?;
        let stale = result.epoch != self.epoch;
        for topic in response.responses {
            let name = self.topic_name(topic.topic.0.as_str());
            for p in topic.partitions {
                let tp = (name.to_string(), p.partition_index);
                let Some(fetched_at) = result
                    .offsets
                    .iter()
                    .find(|(x, _)| *x == tp)
                    .map(|(_, o)| *o)
                else {
                    continue;
                };
                if stale || self.positions.get(&tp) != Some(&fetched_at) {
                    continue; // the application moved the position meanwhile
                }
                match p.error_code {
                    0 => {
                        self.high_watermarks.insert(tp.clone(), p.high_watermark);
                        let data = p.records.unwrap_or_default();
                        let (records, next) = decode_batches(&name, tp.1, data, fetched_at)?;
                        if let Some(next) = next {
                            self.positions.insert(tp, next.max(fetched_at));
                        }
                        self.buffered.extend(records);
                    }
                    // OFFSET_OUT_OF_RANGE
                    1 => {
                        let reset = match self.config.auto_offset_reset {
                            OffsetReset::Earliest => Offset::Beginning,
                            OffsetReset::Latest => Offset::End,
                            OffsetReset::None => {
                                return Err(Error::from_code(1, || {
                                    format!(
                                        "offset {fetched_at} of {}-{} (auto.offset.reset is none)",
                                        tp.0, tp.1
                                    )
                                })
                                .expect("non-zero"))
                            }
                        };
                        tracing::info!(topic = %tp.0, partition = tp.1, offset = fetched_at, "offset out of range; resetting");
                        self.seek(tp, reset);
                    }
                    code => {
                        let e = Error::from_code(code, || {
                            format!("fetching {}-{} from broker {}", tp.0, tp.1, result.leader)
                        })
                        .expect("non-zero");
                        if !e.is_retriable() {
                            return Err(e);
                        }
                        self.cluster.invalidate(&tp.0);
                    }
                }
            }
        }
        Ok(())
    }
}
