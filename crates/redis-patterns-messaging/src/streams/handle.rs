//! Handling fetched entries: a handler task per entry (bounded by `concurrency`; at concurrency
//! 1 the first attempts run in the reading task, all but a batch's last), retries after
//! the retry policy's wait, decode failures and exhausted entries to the dead-letter stream,
//! successes to one acknowledging task (one message per batch).

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use futures_util::FutureExt as _;
use redis_core::{Codec, TopologyBackoff, redis};
use serde::de::DeserializeOwned;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinSet,
};

use super::{
    PAYLOAD_FIELD,
    consumer::{Consumer, Delivery},
    held::RunState,
    reply::Fetched,
};
use crate::{metrics, scripts::RETRY};

/// The handler side of one run: the handler tasks in flight and the way to the acknowledger.
pub(super) struct Workers<C: Codec, T, F> {
    consumer: Consumer<C>,
    handler: Arc<F>,
    permits: Arc<Semaphore>,
    tasks: JoinSet<()>,
    acks: mpsc::UnboundedSender<Vec<String>>,
    state: Arc<RunState>,
    /// Concurrency 1: first attempts run in [`dispatch`](Self::dispatch)'s caller.
    one_at_a_time: bool,
    _payload: PhantomData<fn(T)>,
}

impl<C, T, F, Fut, E> Workers<C, T, F>
where
    C: Codec,
    T: DeserializeOwned + Send + 'static,
    F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    pub(super) fn new(
        consumer: Consumer<C>,
        handler: F,
        acks: mpsc::UnboundedSender<Vec<String>>,
        state: Arc<RunState>,
    ) -> Self {
        let concurrency = consumer.inner.settings.concurrency;
        Self {
            consumer,
            handler: Arc::new(handler),
            permits: Arc::new(Semaphore::new(concurrency)),
            tasks: JoinSet::new(),
            acks,
            state,
            one_at_a_time: concurrency == 1,
            _payload: PhantomData,
        }
    }

    /// Workers sharing this one's handler, permits and acknowledger, with tasks of their own.
    pub(super) fn fork(&self) -> Self {
        Self {
            consumer: self.consumer.clone(),
            handler: self.handler.clone(),
            permits: self.permits.clone(),
            tasks: JoinSet::new(),
            acks: self.acks.clone(),
            state: self.state.clone(),
            one_at_a_time: self.one_at_a_time,
            _payload: PhantomData,
        }
    }

    /// The run's shutdown signal.
    pub(super) fn shutdown(&self) -> &tokio_util::sync::CancellationToken {
        &self.state.shutdown
    }

    /// Forgets the handler tasks that have finished.
    pub(super) fn reap(&mut self) {
        while self.tasks.try_join_next().is_some() {}
    }

    /// Hands each entry to a handler task, waiting for a free permit first. Once the run is
    /// shutting down, the entries not started yet are handed back instead. The successes of one
    /// call are acknowledged together, in one `XACK`.
    ///
    /// At concurrency 1 the entries run one at a time whatever runs them, so every entry but
    /// the last has its first attempt right here, in the caller's task: a task per entry would
    /// add a spawn and two task switches to each. The last one still gets a task of its own,
    /// so that the next read overlaps it, and a failed attempt waits for its retry in a task,
    /// as at any concurrency.
    pub(super) async fn dispatch(&mut self, entries: Vec<Fetched>) {
        if entries.is_empty() {
            return;
        }
        self.state.hold(entries.iter().map(|e| e.id.as_str()));
        let batch = Arc::new(BatchAcks::new(entries.len(), self.acks.clone()));
        let mut entries = entries.into_iter();
        while let Some(entry) = entries.next() {
            let permit = tokio::select! {
                biased;
                () = self.state.shutdown.cancelled() => None,
                permit = self.permits.clone().acquire_owned() => permit.ok(),
            };
            let Some(permit) = permit else {
                for entry in std::iter::once(entry).chain(entries.by_ref()) {
                    self.state.give_back(entry.id, true);
                    batch.settle(None);
                }
                return;
            };
            let mut task = Task {
                acks: self.acks.clone(),
                batch: Some(batch.clone()),
                state: self.state.clone(),
                permits: self.permits.clone(),
            };
            if self.one_at_a_time && entries.len() > 0 {
                let (consumer, handler, first) = (&self.consumer, &*self.handler, entry.attempt);
                if attempt(consumer, &entry, first, handler, &mut task).await == "failed" {
                    let (consumer, handler) = (consumer.clone(), self.handler.clone());
                    self.tasks.spawn(async move {
                        retry(&consumer, entry, &*handler, task, permit).await;
                    });
                }
                continue;
            }
            let (consumer, handler) = (self.consumer.clone(), self.handler.clone());
            self.tasks.spawn(async move {
                let first = entry.attempt;
                if attempt(&consumer, &entry, first, &*handler, &mut task).await == "failed" {
                    retry(&consumer, entry, &*handler, task, permit).await;
                }
            });
        }
    }

    /// Waits for every handler task; dropping the last sender then ends the acknowledger.
    pub(super) async fn finish(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The successes of one dispatched batch, sent to the acknowledger together once every entry of
/// the batch has settled (succeeded, failed, or was handed back).
struct BatchAcks {
    ids: Mutex<Vec<String>>,
    remaining: AtomicUsize,
    acks: mpsc::UnboundedSender<Vec<String>>,
}

impl BatchAcks {
    fn new(len: usize, acks: mpsc::UnboundedSender<Vec<String>>) -> Self {
        Self {
            ids: Mutex::new(Vec::with_capacity(len)),
            remaining: AtomicUsize::new(len),
            acks,
        }
    }

    /// One entry settled: `Some(id)` to acknowledge, `None` for nothing to acknowledge here.
    fn settle(&self, id: Option<String>) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = id {
            ids.push(id);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 && !ids.is_empty() {
            // The acknowledger outlives every handler task of the run.
            let _ = self.acks.send(std::mem::take(&mut *ids));
        }
    }
}

/// What a handler task needs besides the consumer, the entry and the handler.
struct Task {
    acks: mpsc::UnboundedSender<Vec<String>>,
    /// The entry's batch until it first settles; retries are acknowledged on their own.
    batch: Option<Arc<BatchAcks>>,
    state: Arc<RunState>,
    permits: Arc<Semaphore>,
}

impl Task {
    fn settle(&mut self, ack: Option<String>) {
        match (self.batch.take(), ack) {
            (Some(batch), ack) => batch.settle(ack),
            (None, Some(id)) => {
                let _ = self.acks.send(vec![id]);
            }
            (None, None) => {}
        }
    }
}

/// After a failed attempt: waits for the retry policy's delay (without a permit; heartbeats keep
/// the entry this consumer's) and runs the entry again as the next attempt, until it succeeds,
/// runs out of attempts, or the run shuts down while it waits (then it is handed back).
async fn retry<C, T, F, Fut, E>(
    consumer: &Consumer<C>,
    entry: Fetched,
    handler: &F,
    mut task: Task,
    permit: OwnedSemaphorePermit,
) where
    C: Codec,
    T: DeserializeOwned,
    F: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = std::result::Result<(), E>>,
    E: fmt::Display,
{
    let inner = &consumer.inner;
    let mut permit = Some(permit);
    let mut failed = entry.attempt;
    loop {
        drop(permit.take());
        let delay = inner.settings.retry.delay(failed);
        let shutdown = &task.state.shutdown;
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            () = tokio::time::sleep(delay) => tokio::select! {
                biased;
                () = shutdown.cancelled() => None,
                p = task.permits.clone().acquire_owned() => p.ok(),
            },
        };
        let Some(next) = next else {
            task.state.give_back(entry.id, false);
            return;
        };
        permit = Some(next);
        let this = failed + 1;
        if !consumer.retry(&entry.id, this).await {
            task.state.release([entry.id.as_str()]);
            return;
        }
        if attempt(consumer, &entry, this, handler, &mut task).await != "failed" {
            return;
        }
        failed = this;
    }
}

/// One attempt, in its own `messaging.handle` span: decodes the entry and runs the handler. A
/// success goes to the acknowledger, a failure on the last attempt is dead-lettered (an earlier
/// one is `failed`: to be retried), a payload that does not decode is dead-lettered at once.
/// Returns the outcome, which the span records too. The span is a root, whether the attempt runs
/// in a task of its own or in the reading task (whose caller's span is no parent of an entry's
/// work). Stream entry ids are server timestamps, neither a key nor a payload.
async fn attempt<C, T, F, Fut, E>(
    consumer: &Consumer<C>,
    entry: &Fetched,
    attempt: u64,
    handler: &F,
    task: &mut Task,
) -> &'static str
where
    C: Codec,
    T: DeserializeOwned,
    F: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = std::result::Result<(), E>>,
    E: fmt::Display,
{
    let inner = &consumer.inner;
    let span = redis_core::operation_span!(
        inner.redis,
        parent: None,
        "messaging.handle",
        name = %inner.label,
        messaging.message.id = %entry.id,
        delivery_count = attempt,
        outcome = tracing::field::Empty,
    );
    let mut run = async || -> &'static str {
        let payload = match &entry.payload {
            Some(bytes) => inner.codec.decode::<T>(bytes),
            None => Err(redis_core::Error::Decode(
                format!("entry has no `{PAYLOAD_FIELD}` field").into(),
            )),
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("payload does not decode: {}", error_chain(&e));
                consumer.dead_letter(&entry.id, &reason, attempt).await;
                task.state.release([entry.id.as_str()]);
                task.settle(None);
                return "undecodable";
            }
        };
        // Metrics first, the stats after: whoever sees the stats finds the metrics recorded.
        inner.metrics.delivered.increment(1);
        inner.counters.delivered.fetch_add(1, Ordering::Relaxed);
        let delivery = Delivery {
            id: entry.id.clone(),
            payload,
            attempt,
            first_delivered: entry.first,
            job_id: entry.job.clone(),
            consumer: inner.name.clone(),
        };
        // No clock read when nothing records it.
        let started = metrics::ENABLED.then(Instant::now);
        let outcome = AssertUnwindSafe(handler(delivery)).catch_unwind().await;
        if let Some(started) = started {
            inner
                .metrics
                .handler_duration
                .record_duration(started.elapsed());
        }
        let reason = match outcome {
            Ok(Ok(())) => {
                task.settle(Some(entry.id.clone()));
                return "ok";
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "handler panicked".to_owned(),
        };
        inner.metrics.failed.increment(1);
        inner.counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id = %entry.id, attempt, %reason, "handler failed");
        task.settle(None);
        if attempt < inner.settings.max_deliveries {
            return "failed";
        }
        let moved = consumer.dead_letter(&entry.id, &reason, attempt).await;
        task.state.release([entry.id.as_str()]);
        // Not moved: another consumer claimed it meanwhile (or the move failed and it stays
        // pending); either way this consumer is done with it.
        if moved { "dead_lettered" } else { "lost" }
    };
    let outcome = redis_core::in_span!(span, run());
    span.record("outcome", outcome);
    outcome
}

impl<C: Codec> Consumer<C> {
    /// Before running `id` again as `attempt`: sets its delivery counter (so a consumer that
    /// claims it after a crash continues the count) if it is still this consumer's. A failure to
    /// reach the server is logged and the attempt goes ahead (the counter then lags by one).
    async fn retry(&self, id: &str, attempt: u64) -> bool {
        let inner = &self.inner;
        let mine: redis_core::Result<i64> = RETRY
            .call()
            .key(&inner.stream)
            .arg(&inner.group)
            .arg(&*inner.name)
            .arg(id)
            .arg(attempt)
            .invoke(&inner.redis)
            .await;
        match mine {
            Ok(0) => {
                tracing::debug!(%id, "entry was claimed by another consumer; not retried here");
                false
            }
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(%id, error = %e, "could not count the retry; running it anyway");
                true
            }
        }
    }
}

impl<C: Codec> Consumer<C> {
    /// Acknowledges handled entries in batches until every sender is gone: one `XACK` per burst,
    /// not per entry.
    pub(super) async fn acknowledge(
        self,
        mut ids: mpsc::UnboundedReceiver<Vec<String>>,
        state: Arc<RunState>,
    ) {
        let inner = &self.inner;
        let mut batches = Vec::new();
        let mut batch = Vec::new();
        // Restarts from its minimum when a new master is announced, so acknowledgements held up
        // by a failover go through as soon as it answers.
        let mut backoff =
            TopologyBackoff::new(inner.settings.backoff, inner.redis.topology_watch());
        while ids.recv_many(&mut batches, 64).await > 0 {
            batch.extend(batches.drain(..).flatten());
            backoff.reset();
            let mut attempt = 0;
            // The work is done: try hard to record it, or it is redone after min_idle.
            loop {
                let acked: redis_core::Result<i64> = inner
                    .redis
                    .query(
                        redis::cmd("XACK")
                            .arg(&inner.stream)
                            .arg(&inner.group)
                            .arg(&batch),
                    )
                    .await;
                match acked {
                    Ok(_) => {
                        inner.metrics.acked.increment(batch.len() as u64);
                        inner
                            .counters
                            .acked
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if e.is_retryable() && attempt < 8 => {
                        backoff.wait().await;
                        attempt += 1;
                    }
                    Err(e) => {
                        tracing::warn!(count = batch.len(), error = %e, "XACK failed; these entries will be delivered again");
                        break;
                    }
                }
            }
            state.release(batch.iter().map(String::as_str));
            batch.clear();
        }
    }
}

/// An error and its sources, joined with `": "`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decode_reason_names_every_cause() {
        let inner = std::io::Error::other("expected `,` at line 1");
        let outer = redis_core::Error::Decode(Box::new(inner));
        assert_eq!(
            error_chain(&outer),
            "failed to decode value: expected `,` at line 1"
        );
    }
}
