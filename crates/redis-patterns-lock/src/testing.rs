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
