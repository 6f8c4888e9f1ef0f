//! Unit-test fixtures: a lease that records renewals instead of talking to a server, to drive the
//! guard's own timing logic (deadlines, watchdog, background release) on a paused clock.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use redis_core::{
    Backend, DedicatedConnection, Redis, TopologyWatch,
    redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value},
};
use tokio::time::Instant;

use crate::{
    config::LeaseConfig,
    error::Result,
    guard::LockGuard,
    lease::Lease,
    metrics::{LeaseKind, Metrics},
};

#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub(crate) renewals: Mutex<Vec<(Instant, Duration)>>,
    pub(crate) refuse: AtomicBool,
    pub(crate) released: AtomicBool,
    /// How long each renewal takes to answer, in ms.
    pub(crate) delay_ms: AtomicU64,
    /// The topology changes the lease reports to its watchdog.
    pub(crate) topology: Option<TopologyWatch>,
}

impl Recorder {
    pub(crate) fn renewals(&self) -> Vec<(Instant, Duration)> {
        self.renewals.lock().unwrap().clone()
    }

    pub(crate) fn released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
pub(crate) struct RecordingLease(pub(crate) Arc<Recorder>);

impl Lease for RecordingLease {
    fn extend<'a>(&'a self, _: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.0.renewals.lock().unwrap().push((Instant::now(), ttl));
            let delay = self.0.delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            Ok(!self.0.refuse.load(Ordering::SeqCst))
        })
    }

    fn release<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.0.released.store(true, Ordering::SeqCst);
            Ok(true)
        })
    }

    fn topology(&self) -> Option<TopologyWatch> {
        self.0.topology.clone()
    }
}

/// A backend that answers nothing: a [`Redis`] handle for its topology signal alone
/// ([`Redis::notify_topology_change`]).
#[derive(Debug)]
pub(crate) struct Offline;

impl Backend for Offline {
    fn send<'a>(&'a self, _: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async { Err(RedisError::from((ErrorKind::Io, "offline"))) })
    }

    fn send_pipeline<'a>(
        &'a self,
        _: &'a Pipeline,
        _: usize,
        _: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async { Err(RedisError::from((ErrorKind::Io, "offline"))) })
    }

    fn dedicated(&self) -> BoxFuture<'_, redis_core::Result<DedicatedConnection>> {
        Box::pin(async { Err(redis_core::Error::Unsupported("offline")) })
    }
}

/// A handle whose topology changes the test announces.
pub(crate) fn offline() -> Redis {
    Redis::from_backend(Offline)
}

/// A guard on resource `r` with fence 1, taken now, whose lease is `recorder`.
pub(crate) fn guard(recorder: &Arc<Recorder>, config: &LeaseConfig) -> LockGuard {
    LockGuard::new(
        "r",
        "t".into(),
        1,
        Instant::now(),
        config,
        Arc::new(RecordingLease(Arc::clone(recorder))),
        Metrics::register("default", LeaseKind::Lock, None),
    )
}

pub(crate) const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
