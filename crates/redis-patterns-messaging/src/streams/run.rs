//! The consumer's run loop: ensure the group, claim stalled entries now and then, read new ones,
//! hand them to the workers, retry connection errors with backoff, and shut down gracefully.

use std::{
    fmt,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use redis_core::{
    Backoff, Codec, DedicatedConnection, ErrorPredicates, Redis, TopologyBackoff, duration_millis,
    redis::{self, streams::StreamReadOptions},
};
use serde::de::DeserializeOwned;
use tokio::{sync::mpsc, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{
    consumer::{Consumer, ConsumerStats, Delivery},
    group::is_no_group,
    handle::Workers,
    held::RunState,
    reply::{Fetched, read_entries},
};
use crate::{
    error::{Error, Result},
    metrics,
};

/// What the read loop carries from one turn to the next.
struct ReaderState {
    /// The dedicated connection for `XREADGROUP BLOCK`; dropped after any read failure.
    conn: Option<DedicatedConnection>,
    /// Failures in a row since the last successful read (or topology change): the backoff
    /// step, which restarts from its minimum when a new master is announced.
    backoff: TopologyBackoff,
    /// Whether the group is known to exist (false again after `NOGROUP`).
    group_ready: bool,
}

impl ReaderState {
    fn new(redis: &Redis, backoff: Backoff) -> Self {
        Self {
            conn: None,
            backoff: TopologyBackoff::new(backoff, redis.topology_watch()),
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
    /// Shutdown is graceful: no new batch is read, the handlers running finish and are
    /// acknowledged, and the entries read but not started (and those waiting for a retry) are
    /// handed back: claimable by the group's other consumers at once, which notice within their
    /// `delayed_poll`. Then `run` returns. Connection errors are retried with backoff and do not
    /// end the run.
    ///
    /// A handler error or panic leaves the entry pending: this consumer runs it again after the
    /// [`retry`](crate::ConsumerBuilder::retry) policy's wait, until `max_deliveries`. Entries
    /// whose payload does not decode go straight to the dead-letter stream.
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
        // A child: ending the run early (a fatal error) must not cancel the caller's token.
        let shutdown = shutdown.child_token();
        let run = Arc::new(RunState::new(
            shutdown.clone(),
            self.inner.settings.heartbeats,
        ));
        // Successes are acknowledged in batches by one task, which ends once every handler task
        // (and the workers' sender) is gone. Sets, so that dropping `run` aborts the tasks too.
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let mut acker = JoinSet::new();
        acker.spawn(self.clone().acknowledge(ack_rx, run.clone()));
        // Heartbeats go on until every handler has finished, after the shutdown.
        let beats_stop = CancellationToken::new();
        let mut background = JoinSet::new();
        if self.inner.settings.heartbeats {
            background.spawn(self.clone().heartbeat(run.clone(), beats_stop.clone()));
        }
        // The group's lag and pending gauges, sampled by a task of this run (aborted with it).
        if metrics::ENABLED {
            background.spawn(self.clone().sample_group(shutdown.clone()));
        }
        let mut workers = Workers::new(self.clone(), handler, ack_tx, run.clone());
        // Delayed entries, hand-back marks and claim passes: a task of its own, so that they
        // never wait for a blocking read.
        let mut upkeep = JoinSet::new();
        upkeep.spawn(self.clone().upkeep(workers.fork()));
        let mut state = ReaderState::new(&self.inner.redis, self.inner.settings.backoff);
        let result = loop {
            if shutdown.is_cancelled() {
                break Ok(());
            }
            workers.reap();
            match self.turn(&mut state, &mut workers).await {
                Ok(()) => {}
                Err(Interrupted::Retry(e)) => self.pause(&shutdown, &mut state.backoff, &e).await,
                Err(Interrupted::Fatal(e)) => break Err(e),
            }
        };
        // Graceful: the handlers running finish (and are acknowledged); what was read and not
        // started, and what waits for a retry, is handed back.
        shutdown.cancel();
        while let Some(passes) = upkeep.join_next().await {
            if let Ok(mut passes) = passes {
                while let Some(forked) = passes.join_next().await {
                    if let Ok(forked) = forked {
                        forked.finish().await;
                    }
                }
            }
        }
        workers.finish().await;
        self.hand_back(&run).await;
        beats_stop.cancel();
        while acker.join_next().await.is_some() {}
        background.abort_all();
        result.map(|()| self.stats())
    }

    /// One turn: the group, one blocking read.
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
        let conn = match &mut state.conn {
            Some(conn) => conn,
            None => {
                // A checkout waiting when a new master is announced starts over on it (core).
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
                state.backoff.reset();
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

    /// Waits out one backoff step before the next turn: cut short by a shutdown, and by a
    /// topology change (a new master answers: the next step is the minimum again).
    async fn pause(
        &self,
        shutdown: &CancellationToken,
        backoff: &mut TopologyBackoff,
        error: &Error,
    ) {
        tracing::warn!(consumer = %self.inner.name, %error, attempt = backoff.attempt(), "stream consumer retrying");
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = backoff.wait() => {}
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
        Ok(read_entries(reply, SystemTime::now()))
    }
}

/// `now + d`, or about a century from now when `d` is too large for an `Instant` (a `min_idle` of
/// `Duration::MAX` means "never claim", not a panic).
pub(super) fn later(d: Duration) -> Instant {
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
