//! The producer's sender (Kafka's `Sender`): a background task that drains sealed batches
//! from the accumulator into one Produce request per leader, keeps the in-flight limit,
//! and settles each batch's delivery futures from the answer, retrying what may be retried.

use super::*;

/// One Produce request being assembled: one batch per partition, all for one leader.
pub(super) struct Flight {
    leader: i32,
    batches: Vec<(Arc<str>, i32, SealedBatch)>,
}

/// The background task that turns sealed batches into Produce requests.
pub(super) async fn sender(inner: Arc<Inner>) {
    loop {
        let wake = inner.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let (flights, deadline, stale, stop) = collect(&inner);
        for topic in stale {
            refresh_leaders(&inner, &topic).await;
        }
        let sent_any = !flights.is_empty();
        for flight in flights {
            dispatch(&inner, flight).await;
        }
        if stop {
            return;
        }
        if sent_any {
            continue; // more may be sendable now (pipelining up to max.in.flight)
        }
        match deadline {
            Some(d) => {
                tokio::select! {
                    _ = &mut wake => {}
                    _ = tokio::time::sleep_until(d.into()) => {}
                }
            }
            None => wake.await,
        }
    }
}

type Collected = (Vec<Flight>, Option<Instant>, Vec<Arc<str>>, bool);

/// Under the lock: seals batches that are due and takes the sendable ones, grouped by leader.
pub(super) fn collect(inner: &Inner) -> Collected {
    let config = &inner.config;
    let now = Instant::now();
    let mut guard = inner.state.lock();
    let st = &mut *guard;
    if st.closed && st.outstanding == 0 {
        return (Vec::new(), None, Vec::new(), true);
    }
    let mut deadline: Option<Instant> = None;
    let mut stale = Vec::new();
    let mut flights: HashMap<i32, Flight> = HashMap::new();
    let mut expired = Vec::new();
    let idempotent = inner.idempotent.is_some();
    let flush = st.flush || st.closed;
    for topic in st.topics.values_mut() {
        for (p, part) in topic.partitions.iter_mut().enumerate() {
            if let Some(open) = &part.open {
                let due = open.created + config.linger;
                if flush || now >= due {
                    let open = part.open.take().expect("checked");
                    seal(part, open, idempotent);
                } else {
                    deadline = Some(deadline.map_or(due, |d| d.min(due)));
                }
            }
            while part
                .queue
                .front()
                .is_some_and(|b| now >= b.created + config.delivery_timeout)
            {
                expired.push((
                    Arc::clone(&topic.name),
                    p as i32,
                    part.queue.pop_front().expect("front"),
                ));
            }
            if part.queue.is_empty() || part.in_flight >= config.max_in_flight || topic.stale {
                continue;
            }
            let leader = topic.leaders[p];
            if leader < 0 {
                topic.stale = true;
                continue;
            }
            let busy = st.broker_in_flight.get(&leader).copied().unwrap_or(0);
            let flight = flights.entry(leader).or_insert_with(|| Flight {
                leader,
                batches: Vec::new(),
            });
            if busy >= config.max_in_flight {
                continue;
            }
            let request_bytes: usize = flight.batches.iter().map(|(_, _, b)| b.bytes).sum();
            let next = part.queue.front().expect("not empty");
            if !flight.batches.is_empty() && request_bytes + next.bytes > config.max_request_size {
                continue;
            }
            flight.batches.push((
                Arc::clone(&topic.name),
                p as i32,
                part.queue.pop_front().expect("not empty"),
            ));
            part.in_flight += 1;
        }
        if topic.stale {
            stale.push(Arc::clone(&topic.name));
        }
    }
    let flights: Vec<Flight> = flights
        .into_values()
        .filter(|f| !f.batches.is_empty())
        .collect();
    for f in &flights {
        *st.broker_in_flight.entry(f.leader).or_default() += 1;
    }
    for (topic, partition, batch) in expired {
        let e = Error::Timeout(format!(
            "delivery.timeout.ms expired for {} records to {topic}-{partition}",
            batch.count
        ));
        settle(inner, st, batch, Err(Arc::new(e)));
    }
    if !stale.is_empty() {
        // Retry the metadata refresh soon even if nothing else wakes the sender.
        let soon = now + config.client.retry_backoff;
        deadline = Some(deadline.map_or(soon, |d| d.min(soon)));
    }
    (flights, deadline, stale, false)
}

/// Completes a batch's delivery futures and returns its memory.
pub(super) fn settle(
    inner: &Inner,
    st: &mut State,
    batch: SealedBatch,
    outcome: std::result::Result<(i64, i64), Arc<Error>>,
) {
    st.outstanding -= batch.count as usize;
    inner.memory.add_permits(batch.bytes);
    // Nobody may be waiting: delivery futures are optional.
    let _ = batch.done.send(Some(outcome));
    if st.outstanding == 0 {
        inner.idle.notify_waiters();
    }
}

pub(super) async fn refresh_leaders(inner: &Inner, topic: &Arc<str>) {
    inner.cluster.invalidate(topic);
    match inner
        .cluster
        .refresh(Some(&[topic.to_string()]), false)
        .await
    {
        Ok(m) => {
            let Some(info) = m.topics.get(&**topic) else {
                return;
            };
            let mut st = inner.state.lock();
            if let Some(t) = st.topics.get_mut(&**topic) {
                if info.partitions.len() >= t.partitions.len() {
                    t.leaders = info.partitions.iter().map(|p| p.leader).collect();
                    t.partitions
                        .resize_with(info.partitions.len(), PartitionState::default);
                    t.stale = t.leaders.iter().any(|l| *l < 0);
                }
            }
        }
        Err(e) => tracing::debug!(%topic, error = %e, "metadata refresh failed"),
    }
}

/// Encodes a flight's batches, writes the request in order on the leader's connection, and
/// leaves waiting for the answer to a separate task.
pub(super) async fn dispatch(inner: &Arc<Inner>, mut flight: Flight) {
    let stamp = |b: &SealedBatch| match inner.idempotent {
        Some((id, epoch)) => ProducerStamp {
            id,
            epoch,
            base_sequence: b.base_sequence,
        },
        None => ProducerStamp::NONE,
    };
    let mut failed = Vec::new();
    let mut kept = Vec::new();
    for (topic, partition, mut batch) in flight.batches.drain(..) {
        if let Some(w) = batch.writer.take() {
            match w.finish(inner.config.compression, stamp(&batch)) {
                Ok(data) => batch.data = data,
                Err(e) => {
                    failed.push((topic, partition, batch, Arc::new(e)));
                    continue;
                }
            }
        }
        kept.push((topic, partition, batch));
    }
    flight.batches = kept;
    if !failed.is_empty() {
        let mut st = inner.state.lock();
        for (topic, partition, batch, e) in failed {
            release_partition(&mut st, &topic, partition);
            settle(inner, &mut st, batch, Err(e));
        }
    }
    if flight.batches.is_empty() {
        finish_flight(inner, flight.leader);
        return;
    }
    let mut by_topic: Vec<TopicProduceData> = Vec::new();
    for (topic, partition, batch) in &flight.batches {
        let data = PartitionProduceData::default()
            .with_index(*partition)
            .with_records(Some(batch.data.clone()));
        match by_topic.iter_mut().find(|t| t.name.0.as_str() == &**topic) {
            Some(t) => t.partition_data.push(data),
            None => by_topic.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    let request = ProduceRequest::default()
        .with_acks(inner.config.acks)
        .with_timeout_ms(
            inner
                .config
                .client
                .request_timeout
                .as_millis()
                .min(i32::MAX as u128) as i32,
        )
        .with_topic_data(by_topic);
    let conn = match inner.cluster.broker(flight.leader).await {
        Ok(c) => c,
        Err(e) => return answer(inner, flight, Err(e)),
    };
    if inner.config.acks == 0 {
        let r = conn.send_only(&request).await.map(|()| None);
        return answer(inner, flight, r);
    }
    match conn.start(&request).await {
        Ok(pending) => {
            let inner = Arc::clone(inner);
            tokio::spawn(async move {
                let r = pending.wait().await.map(Some);
                answer(&inner, flight, r);
            });
        }
        Err(e) => answer(inner, flight, Err(e)),
    }
}

pub(super) fn partition_mut<'a>(
    st: &'a mut State,
    topic: &str,
    partition: i32,
) -> Option<&'a mut PartitionState> {
    st.topics
        .get_mut(topic)?
        .partitions
        .get_mut(partition as usize)
}

pub(super) fn release_partition(st: &mut State, topic: &str, partition: i32) {
    if let Some(part) = partition_mut(st, topic, partition) {
        part.in_flight = part.in_flight.saturating_sub(1);
    }
}

pub(super) fn finish_flight(inner: &Inner, leader: i32) {
    let mut st = inner.state.lock();
    if let Some(n) = st.broker_in_flight.get_mut(&leader) {
        *n = n.saturating_sub(1);
    }
    drop(st);
    inner.wake.notify_one();
}

/// Settles or requeues every batch of a flight from the broker's answer.
pub(super) fn answer(
    inner: &Inner,
    flight: Flight,
    response: Result<Option<kafka_protocol::messages::ProduceResponse>>,
) {
    let idempotent = inner.idempotent.is_some();
    let mut guard = inner.state.lock();
    let st = &mut *guard;
    for (topic, partition, batch) in flight.batches {
        let outcome: std::result::Result<(i64, i64), Error> = match &response {
            Ok(None) => Ok((-1, -1)),
            Ok(Some(r)) => {
                let p = r
                    .responses
                    .iter()
                    .filter(|t| t.name.0.as_str() == &*topic)
                    .flat_map(|t| &t.partition_responses)
                    .find(|p| p.index == partition);
                match p {
                    None => Err(Error::Protocol {
                        broker: format!("node {}", flight.leader),
                        message: format!("Produce response without {topic}-{partition}"),
                    }),
                    // DUPLICATE_SEQUENCE_NUMBER: an earlier attempt was written already.
                    Some(p) if p.error_code == 0 || (p.error_code == 46 && idempotent) => {
                        Ok((p.base_offset, p.log_append_time_ms))
                    }
                    Some(p) => Err(Error::from_code(p.error_code, || {
                        let detail = p
                            .error_message
                            .as_ref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default();
                        format!(
                            "producing to {topic}-{partition} on broker {}{detail}",
                            flight.leader
                        )
                    })
                    .expect("non-zero")),
                }
            }
            Err(e) => Err(e.duplicate()),
        };
        release_partition(st, &topic, partition);
        match outcome {
            Ok(ok) => settle(inner, st, batch, Ok(ok)),
            Err(e) if retriable(&e, idempotent) => {
                tracing::debug!(error = %e, "retrying a batch");
                let Some(part) = partition_mut(st, &topic, partition) else {
                    settle(inner, st, batch, Err(Arc::new(e)));
                    continue;
                };
                let at = part
                    .queue
                    .iter()
                    .position(|b| idempotent && b.base_sequence > batch.base_sequence)
                    .unwrap_or(if idempotent { part.queue.len() } else { 0 });
                part.queue.insert(at, batch);
                if let Some(t) = st.topics.get_mut(&*topic) {
                    t.stale = true;
                }
            }
            Err(e) => {
                if e.kafka().is_some_and(|k| k.code() == 59 || k.code() == 47) {
                    // UNKNOWN_PRODUCER_ID / INVALID_PRODUCER_EPOCH: this producer is fenced.
                    st.fatal = Some(Arc::new(e.duplicate()));
                }
                settle(inner, st, batch, Err(Arc::new(e)));
            }
        }
    }
    if let Some(n) = st.broker_in_flight.get_mut(&flight.leader) {
        *n = n.saturating_sub(1);
    }
    drop(guard);
    inner.wake.notify_one();
}

pub(super) fn retriable(e: &Error, idempotent: bool) -> bool {
    // OUT_OF_ORDER_SEQUENCE_NUMBER follows a retried earlier batch; it clears when that
    // batch lands first.
    e.is_retriable() || (idempotent && e.kafka().is_some_and(|k| k.code() == 45))
}
