//! Holding a lease: the guard every primitive hands out, its cloneable handle and "lost" signal,
//! and running work under a guard.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use redis_core::release_in_background;
use tokio::{task::AbortHandle, time::Instant};

use crate::{
    config::{LeaseConfig, validate_ttl},
    error::{Error, Result},
    lease::Lease,
    metrics::{Metrics, lease_span},
    state::{self, Shared, StateReceiver, Status},
    watchdog,
};

/// Proof of holding a lease: a lock, a Redlock, or a semaphore permit.
///
/// - [`fence`](Self::fence): the fencing token, strictly increasing per resource. Pass it to the
///   resource you protect and have it refuse writes carrying a smaller token than it has seen.
/// - [`lost`](Self::lost) / [`is_lost`](Self::is_lost): the lease could not be kept (it expired,
///   the watchdog failed to renew it, someone else took the resource, or the hold cap was reached).
/// - [`release`](Self::release) gives it back now. A guard dropped without `release` gives it back
///   in the background when a Tokio runtime is around; otherwise the lease simply expires.
#[must_use = "dropping the guard releases the lease"]
pub struct LockGuard {
    shared: Arc<Shared>,
    watchdog: Option<AbortHandle>,
    done: bool,
}

/// A semaphore permit is the same guard as a lock.
pub type Permit = LockGuard;

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("resource", &self.shared.resource)
            .field("fence", &self.shared.fence)
            .field("state", &self.shared.state.borrow())
            .field("watchdog", &self.watchdog.is_some())
            .finish()
    }
}

impl LockGuard {
    /// Wraps a lease just taken. `start` is when the acquiring request was sent.
    pub(crate) fn new(
        resource: &str,
        token: String,
        fence: u64,
        start: Instant,
        config: &LeaseConfig,
        lease: Arc<dyn Lease>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let shared = Arc::new(Shared::new(
            resource, token, fence, start, config.ttl, lease, metrics,
        ));
        let watchdog = if config.auto_extend {
            watchdog::spawn(&shared, config)
        } else {
            None
        };
        Self {
            shared,
            watchdog,
            done: false,
        }
    }

    /// The resource (lock name or semaphore name) this lease is on.
    pub fn resource(&self) -> &str {
        &self.shared.resource
    }

    /// The fencing token: strictly greater than every token handed out before for this resource.
    pub fn fence(&self) -> u64 {
        self.shared.fence
    }

    /// The random owner token (128 bits, hex) stored in Redis while the lease is held.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// How much longer the lease can be trusted by the local clock (zero once lost).
    pub fn remaining(&self) -> Duration {
        state::remaining(&self.shared.state.borrow())
    }

    /// True once the lease cannot be counted on: it expired, renewal failed, or it was taken over.
    pub fn is_lost(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Resolves when the lease is lost (see [`is_lost`](Self::is_lost)) or given back. Owns what it
    /// needs, so it can be moved into another task or a `select!`.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        state::lost(self.shared.state.subscribe())
    }

    /// A cheap, cloneable view of this lease (fence and "lost" signal) to hand to the work it protects.
    pub fn handle(&self) -> LeaseHandle {
        LeaseHandle {
            resource: Arc::clone(&self.shared.resource),
            fence: self.shared.fence,
            state: self.shared.state.subscribe(),
        }
    }

    /// Renews the lease to `ttl` now (the new expiry replaces the old one, shorter or longer).
    ///
    /// # Errors
    /// [`Error::Lost`] when the lease is no longer ours (it expired or was taken over), or its
    /// local deadline already passed: once [`lost`](Self::lost) may have fired, the lease is not
    /// brought back, even by a renewal the server would still grant. The guard then reports
    /// [`is_lost`](Self::is_lost). [`Error::InvalidConfig`] for a `ttl` below
    /// [`MIN_TTL`](crate::MIN_TTL). Connection errors as [`Error::Core`]; the lease stays valid
    /// until its deadline.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let span = lease_span!(
            self.shared.metrics,
            "lock.extend",
            outcome = tracing::field::Empty
        );
        let operation = async || {
            let result = self.try_extend(ttl).await;
            let outcome = match &result {
                Ok(()) => "extended",
                Err(e) if e.is_lost() => "lost",
                Err(_) => "error",
            };
            span.record("outcome", outcome);
            result
        };
        redis_core::in_span!(span, operation())
    }

    async fn try_extend(&self, ttl: Duration) -> Result<()> {
        validate_ttl(ttl)?;
        if self.shared.lost_by_now() {
            self.shared.metrics.renewal(false);
            return Err(Error::lost(&self.shared.resource));
        }
        if self.shared.extend(ttl).await? {
            Ok(())
        } else {
            Err(Error::lost(&self.shared.resource))
        }
    }

    /// Gives the lease back (compare-and-delete: only if it is still ours).
    ///
    /// # Errors
    /// [`Error::Lost`] when the lease was no longer ours, so the protected work may have
    /// overlapped with another owner; connection errors as [`Error::Core`] (the lease then expires
    /// after its TTL).
    pub async fn release(mut self) -> Result<()> {
        let span = lease_span!(
            self.shared.metrics,
            "lock.release",
            outcome = tracing::field::Empty
        );
        self.stop_watchdog();
        let shared = Arc::clone(&self.shared);
        let result = redis_core::in_span!(span, shared.lease.release(&shared.token));
        // Only now: a `release` future dropped before its answer leaves `done` unset, so the
        // guard's drop sends the (idempotent) release again in the background.
        self.done = true;
        // A release the server refused finds the lease lost.
        let (status, outcome) = match &result {
            Ok(true) => (Status::Released, "released"),
            Ok(false) => (Status::Lost, "lost"),
            Err(_) => (Status::Released, "error"),
        };
        shared.mark(status);
        span.record("outcome", outcome);
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::lost(&shared.resource)),
            Err(e) => Err(e),
        }
    }

    /// Lets go of the guard without giving the lease back: it expires after its TTL, as if this
    /// process had crashed. Stops the watchdog.
    pub fn detach(mut self) {
        self.done = true;
        self.stop_watchdog();
    }

    fn stop_watchdog(&mut self) {
        if let Some(handle) = self.watchdog.take() {
            handle.abort();
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.stop_watchdog();
        let shared = Arc::clone(&self.shared);
        // A lease dropped past its local deadline was lost while held.
        if !shared.lost_by_now() {
            shared.mark(Status::Released);
        }
        let resource = Arc::clone(&shared.resource);
        release_in_background(&resource, async move {
            shared.lease.release(&shared.token).await
        });
    }
}

/// A cloneable view of a lease: its fence and its "lost" signal. Hand it to the work the lease
/// protects (this is what [`Lock::with_lock`](crate::Lock::with_lock) passes to its closure).
#[derive(Debug, Clone)]
pub struct LeaseHandle {
    resource: Arc<str>,
    fence: u64,
    state: StateReceiver,
}

impl LeaseHandle {
    /// The resource the lease is on.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The fencing token of the lease.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// How much longer the lease can be trusted (zero once lost or released).
    pub fn remaining(&self) -> Duration {
        if self.state.is_closed() {
            return Duration::ZERO; // the guard is gone
        }
        state::remaining(&self.state.borrow())
    }

    /// True once the lease cannot be counted on (lost, expired, or released).
    pub fn is_lost(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Resolves when the lease is lost or released.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        state::lost(self.state.clone())
    }
}

/// Runs `work` under `guard`: cancels it (drops its future) when the lease is lost, releases the
/// lease when it finishes.
pub(crate) async fn run_guarded<F, Fut, T>(guard: LockGuard, work: F) -> Result<T>
where
    F: FnOnce(LeaseHandle) -> Fut,
    Fut: Future<Output = T>,
{
    let lost = guard.lost();
    let resource = guard.resource().to_owned();
    let work = work(guard.handle());
    tokio::select! {
        biased;
        () = lost => {
            drop(guard);
            Err(Error::lost(&resource))
        }
        out = work => {
            guard.release().await?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Recorder, guard, ms};

    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_send<T: Send + 'static>(_: &T) {}

    #[test]
    fn guards_handles_and_signals_can_cross_tasks() {
        assert_send_sync::<LockGuard>();
        assert_send_sync::<LeaseHandle>();
        let tx = state::StateSender::new(state::State {
            status: Status::Held,
            valid_until: Instant::now(),
        });
        assert_send(&state::lost(tx.subscribe()));
        fn _object_safe(_: &dyn Lease) {}
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_watchdog_the_lease_is_lost_at_ttl_minus_drift() {
        let recorder = Arc::new(Recorder::default());
        let config = LeaseConfig {
            ttl: ms(1000),
            ..LeaseConfig::default()
        };
        let start = Instant::now();
        let guard = guard(&recorder, &config);
        assert_eq!(guard.remaining(), ms(988));
        // A manual renewal moves the deadline.
        tokio::time::sleep(ms(500)).await;
        guard.extend(ms(1000)).await.unwrap();
        guard.lost().await;
        assert_eq!(start.elapsed(), ms(1488));
        assert!(recorder.renewals().len() == 1);
    }

    #[test]
    fn a_guard_dropped_outside_a_runtime_does_not_panic() {
        let recorder = Arc::new(Recorder::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let guard = runtime.block_on(async { guard(&recorder, &LeaseConfig::default()) });
        drop(runtime);
        let handle = guard.handle();
        drop(guard);
        assert!(handle.is_lost());
        assert!(!recorder.released());
    }

    #[test]
    fn a_guard_held_by_a_task_when_its_runtime_shuts_down_does_not_panic() {
        let recorder = Arc::new(Recorder::default());
        for flavor in ["current", "multi"] {
            let runtime = if flavor == "current" {
                tokio::runtime::Builder::new_current_thread()
            } else {
                tokio::runtime::Builder::new_multi_thread()
            }
            .enable_time()
            .build()
            .unwrap();
            let config = LeaseConfig {
                auto_extend: true,
                ..LeaseConfig::default()
            };
            let guard = runtime.block_on(async { guard(&recorder, &config) });
            let handle = guard.handle();
            runtime.spawn(async move {
                let _held = guard;
                std::future::pending::<()>().await;
            });
            drop(runtime); // drops the task, and the guard with it, during shutdown
            assert!(handle.is_lost(), "{flavor}");
        }
    }

    #[tokio::test]
    async fn a_guard_dropped_inside_a_runtime_releases_in_the_background() {
        let recorder = Arc::new(Recorder::default());
        let guard = guard(&recorder, &LeaseConfig::default());
        let lost = guard.lost();
        drop(guard);
        lost.await;
        for _ in 0..1000 {
            if recorder.released() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the background release never ran");
    }
}
