//! The consumer's run loop: ensure the group, claim stalled entries now and then, read new ones,
//! hand them to the workers, retry connection errors with backoff, and shut down gracefully.

use std::{fmt, future::Future, time::Duration};

use redis_core::{
    Codec, DedicatedConnection, ErrorPredicates, duration_millis,
    redis::{self, Value, streams::StreamReadOptions},
};
use serde::de::DeserializeOwned;
use tokio::{sync::mpsc, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{
    consumer::{Consumer, ConsumerStats, Delivery},
    group::is_no_group,
    handle::Workers,
    reply::{Claimed, Fetched, parse_claim, read_entries},
};
use crate::{
    error::{Error, Result},
    metrics,
    scripts::CLAIM,
};

/// What the read loop carries from one turn to the next.
struct ReaderState {
    /// The dedicated connection for `XREADGROUP BLOCK`; dropped after any read failure.
    conn: Option<DedicatedConnection>,
    /// Failures in a row since the last successful read: the backoff step.
    failures: u32,
    /// Where the next claim pass continues (`XAUTOCLAIM` cursor).
    claim_cursor: String,
    /// When the next claim pass is due.
    next_claim: Instant,
    /// Whether the group is known to exist (false again after `NOGROUP`).
    group_ready: bool,
}

impl ReaderState {
    fn new() -> Self {
        Self {
            conn: None,
            failures: 0,
            claim_cursor: "0-0".into(),
            next_claim: Instant::now(),
            group_ready: false,
        }
    }

    /// Forgets the group after `NOGROUP`, so the next turn creates it again.
    fn check_group(&mut self, e: &Error) {
        if is_no_group(e) {
            self.group_ready = false;
        }
    }
}

/// Why a turn of the loop ended early.
enum Interrupted {
    /// Worth retrying after a pause.
    Retry(Error),
    /// Retrying cannot fix it: `run` returns it.
    Fatal(Error),
}

impl<C: Codec> Consumer<C> {
    /// Runs until `shutdown` is cancelled: creates the group, reads batches, runs `handler` on
    /// each entry (up to `concurrency` at once), acknowledges successes, reclaims stalled entries
    /// and dead-letters entries out of attempts.
    ///
    /// Shutdown is graceful: no new batch is read, every entry already fetched is handled and
    /// acknowledged (or left pending when its handler fails), then `run` returns. Connection
    /// errors are retried with backoff and do not end the run.
    ///
    /// A handler error or panic leaves the entry pending: it is delivered again after `min_idle`,
    /// until `max_deliveries`. Entries whose payload does not decode go straight to the dead-letter
    /// stream.
    ///
    /// # Errors
    /// Only for failures that retrying cannot fix: the group cannot be created on a reachable
    /// server (wrong type at the key, no permission).
    pub async fn run<T, F, Fut, E>(
        &self,
        shutdown: CancellationToken,
        handler: F,
    ) -> Result<ConsumerStats>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        // Successes are acknowledged in batches by one task, which ends once every handler task
        // (and the workers' sender) is gone. A set, so that dropping `run` aborts it too.
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let mut acker = JoinSet::new();
        acker.spawn(self.clone().acknowledge(ack_rx));
        // The group's lag and pending gauges, sampled by a task of this run (aborted with it).
        let mut sampler = JoinSet::new();
        if metrics::ENABLED {
            sampler.spawn(self.clone().sample_group(shutdown.clone()));
        }
        let mut workers = Workers::new(self.clone(), handler, ack_tx);
        let mut state = ReaderState::new();
        while !shutdown.is_cancelled() {
            workers.reap();
            match self.turn(&mut state, &mut workers).await {
                Ok(()) => {}
                Err(Interrupted::Retry(e)) => self.pause(&shutdown, &mut state.failures, &e).await,
                Err(Interrupted::Fatal(e)) => return Err(e),
            }
        }
        // Graceful: everything fetched finishes (and is acknowledged) before returning.
        workers.finish().await;
        while acker.join_next().await.is_some() {}
        sampler.abort_all();
        Ok(self.stats())
    }

    /// One turn: the group, a claim pass when due, one blocking read.
    async fn turn<T, F, Fut, E>(
        &self,
        state: &mut ReaderState,
        workers: &mut Workers<C, T, F>,
    ) -> std::result::Result<(), Interrupted>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        if !state.group_ready {
            match self.ensure_group().await {
                Ok(()) => state.group_ready = true,
                Err(e) if e.is_retryable() => return Err(Interrupted::Retry(e)),
                Err(e) => return Err(Interrupted::Fatal(e)),
            }
        }
        if Instant::now() >= state.next_claim {
            let claimed = self.claim(&mut state.claim_cursor).await;
            // Whatever the outcome, the next pass is one interval away: a claim that keeps
            // failing must not stop the consumer from reading new entries.
            state.next_claim = later(self.inner.settings.claim_interval());
            match claimed {
                Ok(entries) => workers.dispatch(entries).await,
                Err(e) => {
                    state.check_group(&e);
                    return Err(Interrupted::Retry(e));
                }
            }
        }
        let conn = match &mut state.conn {
            Some(conn) => conn,
            None => {
                let conn = self
                    .inner
                    .redis
                    .dedicated()
                    .await
                    .map_err(|e| Interrupted::Retry(e.into()))?;
                state.conn.insert(conn)
            }
        };
        // The read is never abandoned half-way: an entry the server handed out must reach a
        // handler. `block` bounds how long a shutdown waits for it.
        let block = self.inner.settings.block;
        let read = tokio::time::timeout(
            block.saturating_add(Duration::from_secs(10)),
            self.read(conn),
        )
        .await
        .unwrap_or(Err(Error::Core(redis_core::Error::Timeout(block))));
        match read {
            Ok(entries) => {
                state.failures = 0;
                workers.dispatch(entries).await;
                Ok(())
            }
            Err(e) => {
                state.conn = None;
                state.check_group(&e);
                Err(Interrupted::Retry(e))
            }
        }
    }

    async fn pause(&self, shutdown: &CancellationToken, failures: &mut u32, error: &Error) {
        let delay = self.inner.settings.backoff.delay(*failures);
        *failures = failures.saturating_add(1);
        tracing::warn!(consumer = %self.inner.name, %error, ?delay, "stream consumer retrying");
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }

    /// One `XREADGROUP .. BLOCK` for new entries.
    async fn read(&self, conn: &mut DedicatedConnection) -> Result<Vec<Fetched>> {
        let settings = &self.inner.settings;
        let options = StreamReadOptions::default()
            .group(&self.inner.group, &*self.inner.name)
            .count(settings.batch_size)
            .block(usize::try_from(duration_millis(settings.block)).unwrap_or(usize::MAX));
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg(&options)
            .arg("STREAMS")
            .arg(&self.inner.stream)
            .arg(">");
        let reply = cmd.query_async(conn).await?;
        Ok(read_entries(reply))
    }

    /// One pass of the claim script from `cursor` (continuing where the last pass stopped).
    async fn claim(&self, cursor: &mut String) -> Result<Vec<Fetched>> {
        let inner = &self.inner;
        let settings = &inner.settings;
        let mut out = Vec::new();
        // A bounded number of steps per pass keeps reads flowing while a large backlog is claimed.
        for _ in 0..10 {
            let reply: Value = CLAIM
                .call()
                .key(&inner.stream)
                .key(&inner.dead)
                .arg(&inner.group)
                .arg(&*inner.name)
                .arg(duration_millis(settings.min_idle))
                .arg(cursor.as_str())
                .arg(settings.batch_size)
                .arg(settings.max_deliveries)
                .arg(settings.dead_letter_max_len)
                .invoke(&inner.redis)
                .await?;
            let Claimed {
                cursor: next,
                entries,
                dead,
            } = parse_claim(reply)?;
            inner.metrics.dead_lettered.increment(dead);
            inner.metrics.reclaimed.increment(entries.len() as u64);
            let counters = &inner.counters;
            counters
                .dead_lettered
                .fetch_add(dead, std::sync::atomic::Ordering::Relaxed);
            counters
                .claimed
                .fetch_add(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
            out.extend(entries);
            *cursor = next;
            // A step that claimed nothing may only have scanned entries still in their min-idle
            // (XAUTOCLAIM looks at up to 10 × COUNT pending ids per step): go on scanning, or a
            // stalled entry behind many fresh ones would wait one claim interval per step.
            if cursor == "0-0" {
                break;
            }
        }
        Ok(out)
    }
}

/// `now + d`, or about a century from now when `d` is too large for an `Instant` (a `min_idle` of
/// `Duration::MAX` means "never claim", not a panic).
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_interval_is_far_away_not_a_panic() {
        let now = Instant::now();
        assert!(later(Duration::MAX) > now + Duration::from_secs(365 * 86_400));
        let soon = later(Duration::from_millis(10));
        assert!(soon > now && soon < now + Duration::from_secs(60));
    }
}
