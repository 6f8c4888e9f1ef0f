//! Handling fetched entries: a handler task per entry (bounded by `concurrency`), decode
//! failures and exhausted entries to the dead-letter stream, successes to one acknowledging task.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    panic::AssertUnwindSafe,
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use futures_util::FutureExt as _;
use redis_core::{Codec, redis};
use serde::de::DeserializeOwned;
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinSet,
};
use tracing::Instrument as _;

use super::{
    PAYLOAD_FIELD,
    consumer::{Consumer, Delivery},
    reply::Fetched,
};
use crate::metrics;

/// The handler side of one run: the handler tasks in flight and the way to the acknowledger.
pub(super) struct Workers<C: Codec, T, F> {
    consumer: Consumer<C>,
    handler: Arc<F>,
    permits: Arc<Semaphore>,
    tasks: JoinSet<()>,
    acks: mpsc::UnboundedSender<String>,
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
        acks: mpsc::UnboundedSender<String>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(consumer.inner.settings.concurrency));
        Self {
            consumer,
            handler: Arc::new(handler),
            permits,
            tasks: JoinSet::new(),
            acks,
            _payload: PhantomData,
        }
    }

    /// Forgets the handler tasks that have finished.
    pub(super) fn reap(&mut self) {
        while self.tasks.try_join_next().is_some() {}
    }

    /// Hands each entry to a handler task, waiting for a free permit first.
    pub(super) async fn dispatch(&mut self, entries: Vec<Fetched>) {
        for entry in entries {
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                return;
            };
            let consumer = self.consumer.clone();
            let handler = self.handler.clone();
            let acks = self.acks.clone();
            self.tasks.spawn(async move {
                process(&consumer, entry, &*handler, &acks).await;
                drop(permit);
            });
        }
    }

    /// Waits for every handler task; dropping the last sender then ends the acknowledger.
    pub(super) async fn finish(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Handles one entry in a `messaging.handle` span: the entry id, its delivery count and, once
/// known, the outcome (`ok`, `failed`, `dead_lettered` or `undecodable`).
async fn process<C, T, F, Fut, E>(
    consumer: &Consumer<C>,
    entry: Fetched,
    handler: &F,
    acks: &mpsc::UnboundedSender<String>,
) where
    C: Codec,
    T: DeserializeOwned,
    F: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = std::result::Result<(), E>>,
    E: fmt::Display,
{
    let inner = &consumer.inner;
    // Stream entry ids are server timestamps, neither a key nor a payload.
    let span = redis_core::operation_span!(
        inner.redis,
        "messaging.handle",
        name = %inner.label,
        messaging.message.id = %entry.id,
        delivery_count = entry.attempt,
        outcome = tracing::field::Empty,
    );
    let outcome = handle(consumer, entry, handler, acks)
        .instrument(span.clone())
        .await;
    span.record("outcome", outcome);
}

/// Decodes one entry and runs the handler on it: a success goes to the acknowledger, a failure
/// leaves the entry pending (or dead-letters it on its last delivery), a payload that does not
/// decode is dead-lettered at once. Returns the outcome for the span.
async fn handle<C, T, F, Fut, E>(
    consumer: &Consumer<C>,
    entry: Fetched,
    handler: &F,
    acks: &mpsc::UnboundedSender<String>,
) -> &'static str
where
    C: Codec,
    T: DeserializeOwned,
    F: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = std::result::Result<(), E>>,
    E: fmt::Display,
{
    let inner = &consumer.inner;
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
            consumer
                .dead_letter(&entry.id, &reason, entry.attempt)
                .await;
            return "undecodable";
        }
    };
    // Metrics first, the stats after: whoever sees the stats finds the metrics recorded.
    inner.metrics.delivered.increment(1);
    inner.counters.delivered.fetch_add(1, Ordering::Relaxed);
    let delivery = Delivery {
        id: entry.id.clone(),
        payload,
        attempt: entry.attempt,
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
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("handler panicked".to_owned()),
    };
    match failure {
        None => {
            // The acknowledger outlives every handler task of the run.
            let _ = acks.send(entry.id);
            "ok"
        }
        Some(reason) => {
            inner.metrics.failed.increment(1);
            inner.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(id = %entry.id, attempt = entry.attempt, %reason, "handler failed");
            if entry.attempt >= inner.settings.max_deliveries
                && consumer
                    .dead_letter(&entry.id, &reason, entry.attempt)
                    .await
            {
                "dead_lettered"
            } else {
                "failed"
            }
        }
    }
}

impl<C: Codec> Consumer<C> {
    /// Acknowledges handled entries in batches until every sender is gone: one `XACK` per burst,
    /// not per entry.
    pub(super) async fn acknowledge(self, mut ids: mpsc::UnboundedReceiver<String>) {
        let inner = &self.inner;
        let mut batch = Vec::new();
        while ids.recv_many(&mut batch, 1000).await > 0 {
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
                        tokio::time::sleep(inner.settings.backoff.delay(attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => {
                        tracing::warn!(count = batch.len(), error = %e, "XACK failed; these entries will be delivered again");
                        break;
                    }
                }
            }
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
