//! The bounded pool of dedicated connections (bb8) and the connection type it hands out.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value, aio::ConnectionLike};

use crate::{
    config::PoolConfig,
    error::{Error, Result},
};

type Connect = dyn Fn() -> BoxFuture<'static, RedisResult<Box<dyn ConnectionLike + Send + Sync>>>
    + Send
    + Sync;

/// Opens connections for the pool and tells bb8 which ones are dead.
pub(crate) struct PoolManager {
    connect: Box<Connect>,
    /// Moved by [`Dedicated::drain`]; a connection opened under an older value is stale.
    generation: Arc<AtomicU64>,
    /// The latest failed connect. bb8 opens connections in tasks of its own and reports their
    /// failures to no waiting checkout, which would wait out its whole time-out while the
    /// server is down; checkouts watch this instead and fail at once with the cause.
    failures: tokio::sync::watch::Sender<Option<RedisError>>,
}

impl PoolManager {
    pub(crate) fn new<F, Fut, C>(connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = RedisResult<C>> + Send + 'static,
        C: ConnectionLike + Send + Sync + 'static,
    {
        Self {
            connect: Box::new(move || {
                let fut = connect();
                Box::pin(async move {
                    let conn = fut.await?;
                    Ok(Box::new(conn) as Box<dyn ConnectionLike + Send + Sync>)
                })
            }),
            generation: Arc::new(AtomicU64::new(0)),
            failures: tokio::sync::watch::Sender::new(None),
        }
    }

    /// Shares `generation` with the backend, which drains the pool by moving it (from a
    /// background task that follows the topology): every connection opened before is stale,
    /// and none is handed out again (each is closed when next checked out or returned), so
    /// connections taken from then on reach the deployment as it is (a new master).
    pub(crate) fn with_generation(mut self, generation: Arc<AtomicU64>) -> Self {
        self.generation = generation;
        self
    }

    pub(crate) fn into_pool(self, config: &PoolConfig) -> Dedicated {
        let generation = self.generation.clone();
        let failures = self.failures.clone();
        let max_size = config.max_size;
        let pool = bb8::Pool::builder()
            .max_size(config.max_size)
            .min_idle(config.min_idle)
            .connection_timeout(config.connection_timeout)
            .idle_timeout(config.idle_timeout)
            .max_lifetime(config.max_lifetime)
            .test_on_check_out(config.test_on_check_out)
            // Report a failed connect (refused, bad password) at once instead of retrying until
            // the checkout times out and losing the cause.
            .retry_connection(false)
            .build_unchecked(self);
        Dedicated {
            pool,
            generation,
            failures,
            max_size,
            timeout: config.connection_timeout,
            // Registered once, so exporters show them (at zero) before the first checkout and a
            // checkout only records.
            wait: crate::metrics::Histogram::new("redis_patterns_core_pool_wait_seconds", &[]),
            timeouts: crate::metrics::Counter::new("redis_patterns_core_pool_timeouts_total", &[]),
        }
    }
}

/// The pool of dedicated connections of one backend, with its checkout time-out and metrics.
pub(crate) struct Dedicated {
    pool: bb8::Pool<PoolManager>,
    generation: Arc<AtomicU64>,
    failures: tokio::sync::watch::Sender<Option<RedisError>>,
    max_size: u32,
    timeout: Duration,
    wait: crate::metrics::Histogram,
    timeouts: crate::metrics::Counter,
}

impl fmt::Debug for Dedicated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedicated")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PoolManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolManager").finish_non_exhaustive()
    }
}

/// A pooled connection plus what we learned about its health while using it.
pub(crate) struct Tracked {
    conn: Box<dyn ConnectionLike + Send + Sync>,
    broken: bool,
    /// The pool generation it was opened under.
    generation: u64,
}

impl Tracked {
    /// Called before a request is sent: until it completes, the connection counts as broken, so
    /// one dropped mid-request (a cancelled future, a caller's time-out around a blocking
    /// command) is closed by the pool instead of handed out with a reply still pending.
    fn begin(&mut self) {
        self.broken = true;
    }

    /// Called when a request completed: broken again only if the error shows the connection is
    /// dead or out of step (a reply time-out leaves the late reply, or a blocking command, on it).
    fn finish<T>(&mut self, result: &Result<T, RedisError>) {
        self.broken = result.as_ref().is_err_and(|err| {
            err.is_unrecoverable_error()
                || err.is_timeout()
                || crate::error::is_connection_error(err)
        });
    }
}

impl bb8::ManageConnection for PoolManager {
    type Connection = Tracked;
    type Error = RedisError;

    async fn connect(&self) -> Result<Tracked, RedisError> {
        // Read before connecting: a drain during the connect makes this one stale too.
        let generation = self.generation.load(Ordering::Acquire);
        match (self.connect)().await {
            Ok(conn) => Ok(Tracked {
                conn,
                broken: false,
                generation,
            }),
            Err(e) => {
                self.failures.send_replace(Some(e.clone()));
                Err(e)
            }
        }
    }

    /// `UNWATCH` + `PING` in one round trip: a live connection answers `OK`, `PONG`, and keys a
    /// previous holder watched and never executed on are forgotten. A connection left inside
    /// `MULTI` (answers `QUEUED`) or in subscriber mode fails the check and is replaced.
    async fn is_valid(&self, conn: &mut Tracked) -> Result<(), RedisError> {
        let mut check = redis::pipe();
        check.cmd("UNWATCH").cmd("PING");
        let replies = conn.conn.req_packed_commands(&check, 0, 2).await?;
        match replies.as_slice() {
            [Value::Okay, Value::SimpleString(pong)] if pong == "PONG" => Ok(()),
            other => Err((
                redis::ErrorKind::UnexpectedReturnType,
                "unexpected reply to the checkout check",
                format!("{other:?}"),
            )
                .into()),
        }
    }

    fn has_broken(&self, conn: &mut Tracked) -> bool {
        conn.broken || conn.generation < self.generation.load(Ordering::Acquire)
    }
}

impl Dedicated {
    /// A connection for exclusive use, waiting at most the pool's connection time-out. Stale
    /// connections (opened before the last drain) are closed, not handed out.
    pub(crate) async fn checkout(&self) -> Result<DedicatedConnection> {
        let started = std::time::Instant::now();
        let mut failures = self.failures.subscribe();
        failures.mark_unchanged();
        let mut checked_out = self.get(&mut failures).await;
        // At most one pass over the pool's connections: each stale one is closed on the way.
        for _ in 0..=self.max_size {
            match &mut checked_out {
                Ok(conn) if conn.generation < self.generation.load(Ordering::Acquire) => {
                    conn.broken = true;
                }
                _ => break,
            }
            drop(checked_out);
            checked_out = self.get(&mut failures).await;
        }
        self.wait.record_duration(started.elapsed());
        match checked_out {
            Ok(conn) => Ok(DedicatedConnection {
                inner: Inner::Pooled(conn),
            }),
            Err(bb8::RunError::TimedOut) => {
                self.timeouts.increment(1);
                Err(Error::PoolTimeout(self.timeout))
            }
            Err(bb8::RunError::User(e)) => Err(e.into()),
        }
    }

    /// A connection from bb8, or the failure of a connect made while waiting for one.
    async fn get(
        &self,
        failures: &mut tokio::sync::watch::Receiver<Option<RedisError>>,
    ) -> std::result::Result<bb8::PooledConnection<'static, PoolManager>, bb8::RunError<RedisError>>
    {
        let get = self.pool.get_owned();
        tokio::pin!(get);
        loop {
            tokio::select! {
                biased;
                got = &mut get => return got,
                changed = failures.changed() => {
                    let failure = failures.borrow_and_update().clone();
                    match (changed, failure) {
                        (Ok(()), Some(e)) => return Err(bb8::RunError::User(e)),
                        // The pool is gone (never while `self` lives) or nothing failed.
                        (Err(_), _) => return get.await,
                        (Ok(()), None) => {}
                    }
                }
            }
        }
    }
}

/// A connection owned by one caller until dropped (then it returns to its pool, or is closed if a
/// command showed it to be broken). Implements [`ConnectionLike`].
pub struct DedicatedConnection {
    inner: Inner,
}

enum Inner {
    Pooled(bb8::PooledConnection<'static, PoolManager>),
    Owned(Tracked),
}

impl DedicatedConnection {
    /// Wraps a connection that is not pooled (for custom [`crate::Backend`]s).
    pub fn new(conn: impl ConnectionLike + Send + Sync + 'static) -> Self {
        Self {
            inner: Inner::Owned(Tracked {
                conn: Box::new(conn),
                broken: false,
                generation: 0,
            }),
        }
    }

    fn tracked(&mut self) -> &mut Tracked {
        match &mut self.inner {
            Inner::Pooled(conn) => conn,
            Inner::Owned(conn) => conn,
        }
    }
}

impl fmt::Debug for DedicatedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pooled = matches!(self.inner, Inner::Pooled(_));
        f.debug_struct("DedicatedConnection")
            .field("pooled", &pooled)
            .finish_non_exhaustive()
    }
}

impl ConnectionLike for DedicatedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let tracked = self.tracked();
        Box::pin(async move {
            tracked.begin();
            let result = tracked.conn.req_packed_command(cmd).await;
            tracked.finish(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let tracked = self.tracked();
        Box::pin(async move {
            tracked.begin();
            let result = tracked
                .conn
                .req_packed_commands(pipeline, offset, count)
                .await;
            tracked.finish(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Pooled(conn) => conn.conn.get_db(),
            Inner::Owned(conn) => conn.conn.get_db(),
        }
    }
}
