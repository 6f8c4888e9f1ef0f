//! The shared connection of the standalone and Sentinel backends: one `MultiplexedConnection`
//! that is replaced when a command shows it is dead.
//!
//! redis-rs' `ConnectionManager` does the same job, but every command goes through a cloned
//! `Shared` future; at 50 concurrent tasks that measured about 13% below a bare
//! `MultiplexedConnection` on the development machine. Here the hot path is a lock-free load
//! (`arc-swap`: no shared counter is written, so concurrent callers on different cores do not
//! contend), a clone of the connection handle and the multiplexed send; a reconnect happens only
//! after a failure.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;

use futures_util::future::BoxFuture;
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
    aio::MultiplexedConnection,
};

use super::events::TopologySignal;

type Connect = dyn Fn() -> BoxFuture<'static, RedisResult<MultiplexedConnection>> + Send + Sync;

/// Pause after a failed reconnect before the next attempt (fail-fast in between).
const RECONNECT: crate::Backoff =
    crate::Backoff::clamped(Duration::from_millis(25), Duration::from_secs(1));

pub(crate) struct Reconnecting {
    /// The live connection and its generation.
    current: ArcSwapOption<(u64, MultiplexedConnection)>,
    connect: Box<Connect>,
    /// Moved when the connection comes back after a loss; a move from elsewhere (a new master
    /// announced) ends a pending fail-fast pause.
    signal: Arc<TopologySignal>,
    /// Held while (re)connecting so a failure triggers one attempt, not one per caller.
    state: tokio::sync::Mutex<Failures>,
    generation: std::sync::atomic::AtomicU64,
    what: String,
}

#[derive(Default)]
struct Failures {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<RedisError>,
    /// The topology epoch when the last attempt failed: a newer one ends the pause.
    epoch: u64,
}

impl Reconnecting {
    /// Connects now (so start-up errors surface) and keeps `connect` for later reconnects.
    pub(crate) async fn connect<F, Fut>(
        what: String,
        signal: Arc<TopologySignal>,
        connect: F,
    ) -> RedisResult<Self>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = RedisResult<MultiplexedConnection>> + Send + 'static,
    {
        // Registered now so exporters show them (at zero) before the first reconnect.
        reconnect_counter(true);
        reconnect_counter(false);
        let this = Self {
            current: ArcSwapOption::empty(),
            connect: Box::new(move || Box::pin(connect())),
            signal,
            state: tokio::sync::Mutex::new(Failures::default()),
            generation: std::sync::atomic::AtomicU64::new(0),
            what,
        };
        this.get().await?;
        Ok(this)
    }

    fn read(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current
            .load()
            .as_ref()
            .map(|current| (current.0, current.1.clone()))
    }

    async fn get(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.read() {
            return Ok(current);
        }
        let mut backoff = self.state.lock().await;
        if let Some(current) = self.read() {
            return Ok(current);
        }
        if let (Some(at), Some(err)) = (backoff.retry_at, &backoff.last_error)
            && Instant::now() < at
            && backoff.epoch == self.signal.epoch()
        {
            // Fail fast while the server is down instead of queueing connection attempts.
            return Err(err.clone());
        }
        // The first connection is a connect, not a reconnect.
        let reconnecting = self.generation.load(std::sync::atomic::Ordering::Relaxed) > 0;
        match (self.connect)().await {
            Ok(conn) => {
                if reconnecting {
                    reconnects(true);
                    // Workers waiting out a backoff resume now.
                    self.signal.bump("shared connection re-established");
                }
                if backoff.failures > 0 {
                    tracing::info!(target = %self.what, "reconnected");
                }
                *backoff = Failures::default();
                let generation = self
                    .generation
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                self.current
                    .store(Some(Arc::new((generation, conn.clone()))));
                Ok((generation, conn))
            }
            Err(e) => {
                if reconnecting {
                    reconnects(false);
                }
                backoff.failures = backoff.failures.saturating_add(1);
                backoff.epoch = self.signal.epoch();
                let delay = RECONNECT.delay(backoff.failures);
                backoff.retry_at = Some(Instant::now() + delay);
                backoff.last_error = Some(e.clone());
                tracing::warn!(target = %self.what, error = %e, retry_in = ?delay, "connection failed");
                Err(e)
            }
        }
    }

    /// Drops the live connection, whatever its state: the deployment announced a new master, so
    /// the next command connects to it (in-flight commands finish on the old one). Call after
    /// moving the topology epoch, which also ends a fail-fast pause.
    pub(crate) fn reset(&self) {
        if self.current.swap(None).is_some() {
            tracing::info!(target = %self.what, "topology changed; the next command reconnects");
        }
    }

    /// Drops the connection of `generation` when `err` shows it is dead or points at the wrong
    /// server (a demoted master answers `READONLY`).
    fn observe(&self, generation: u64, err: &RedisError) {
        let replace = crate::error::is_connection_error(err)
            || err.is_timeout()
            || err.is_unrecoverable_error()
            || matches!(
                err.kind(),
                ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
            );
        if !replace {
            return;
        }
        let previous = self.current.rcu(|current| match current {
            Some(live) if live.0 == generation => None,
            other => other.clone(),
        });
        if previous.is_some_and(|live| live.0 == generation) {
            tracing::warn!(target = %self.what, error = %err, "dropping the shared connection; the next command reconnects");
        }
    }

    pub(crate) fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.send_unboxed(cmd))
    }

    /// [`send`](Self::send) without boxing the future: what `Redis::query` awaits on the
    /// backends built on this connection, saving an allocation per command.
    pub(crate) async fn send_unboxed(&self, cmd: &Cmd) -> RedisResult<Value> {
        let (generation, mut conn) = self.get().await?;
        let result = conn.send_packed_command(cmd).await;
        match &result {
            Err(e) => self.observe(generation, e),
            // Server errors arrive as values.
            Ok(Value::ServerError(e)) => self.observe(generation, &RedisError::from(e.clone())),
            Ok(_) => {}
        }
        result
    }

    pub(crate) fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.get().await?;
            let result = conn.send_packed_commands(pipeline, offset, count).await;
            match &result {
                Err(e) => self.observe(generation, e),
                Ok(values) => {
                    if let Some(Value::ServerError(e)) =
                        values.iter().find(|v| matches!(v, Value::ServerError(_)))
                    {
                        self.observe(generation, &RedisError::from(e.clone()));
                    }
                }
            }
            result
        })
    }
}

/// Counts an attempt to (re)establish the shared connection.
fn reconnects(ok: bool) {
    reconnect_counter(ok).increment(1);
}

fn reconnect_counter(ok: bool) -> crate::metrics::Counter {
    crate::metrics::Counter::new(
        "redis_patterns_core_reconnects_total",
        &[("result", crate::metrics::result_label(ok))],
    )
}

impl fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnecting")
            .field("target", &self.what)
            .finish_non_exhaustive()
    }
}
