//! The guard every primitive hands out, its "lost" signal, the lease watchdog and the shared
//! acquire loop.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use redis_core::release_in_background;
use tokio::{sync::watch, task::AbortHandle, time::Instant};

use crate::{
    error::{Error, Result},
    options::{LeaseConfig, backoff, drift, new_token, validity},
};

/// What a primitive does on the server for a lease it handed out. Object safe: yes.
pub(crate) trait Lease: Send + Sync + fmt::Debug + 'static {
    /// Renews the lease to `ttl`. `Ok(false)` when it is no longer ours.
    fn extend<'a>(&'a self, token: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>>;
    /// Gives the lease back. `Ok(false)` when it was no longer ours.
    fn release<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<bool>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Held,
    Lost,
    Released,
}

#[derive(Debug, Clone, Copy)]
struct State {
    status: Status,
    /// Local deadline past which the lease cannot be trusted (`start + ttl - drift`).
    valid_until: Instant,
}

struct Shared {
    resource: Arc<str>,
    token: String,
    fence: u64,
    acquired_at: Instant,
    lease: Arc<dyn Lease>,
    state: watch::Sender<State>,
}

impl Shared {
    fn mark(&self, status: Status) {
        self.state.send_if_modified(|s| {
            if s.status == Status::Held {
                s.status = status;
                true
            } else {
                false
            }
        });
    }

    /// Marks the lease lost if its local deadline has passed; true when it is no longer held.
    /// Once the deadline passed the "lost" signal may have fired, so a later renewal must not
    /// bring the lease back: lost stays lost.
    fn lost_by_now(&self) -> bool {
        let now = Instant::now();
        self.state.send_if_modified(|s| {
            if s.status == Status::Held && s.valid_until <= now {
                s.status = Status::Lost;
                true
            } else {
                false
            }
        });
        self.state.borrow().status != Status::Held
    }

    /// Renews to `ttl`; on success moves the local deadline. `Ok(false)` marks the lease lost.
    async fn extend(&self, ttl: Duration) -> Result<bool> {
        let start = Instant::now();
        let kept = self.lease.extend(&self.token, ttl).await?;
        let valid = kept.then(|| validity(ttl, start.elapsed())).flatten();
        if valid.is_some() && !self.lost_by_now() {
            // The server replaced the expiry, so the deadline follows it, earlier or later.
            let until = start + ttl - drift(ttl);
            let moved = self.state.send_if_modified(|s| {
                if s.status == Status::Held {
                    s.valid_until = until;
                    true
                } else {
                    false
                }
            });
            return Ok(moved);
        }
        self.mark(Status::Lost);
        Ok(false)
    }
}

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
            .field("state", &*self.shared.state.borrow())
            .field("watchdog", &self.watchdog.is_some())
            .finish()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("resource", &self.resource)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
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
    ) -> Self {
        let (state, _) = watch::channel(State {
            status: Status::Held,
            valid_until: start + config.ttl - drift(config.ttl),
        });
        let shared = Arc::new(Shared {
            resource: resource.into(),
            token,
            fence,
            acquired_at: start,
            lease,
            state,
        });
        let watchdog = if config.auto_extend {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => Some(
                    runtime
                        .spawn(watchdog(Arc::clone(&shared), config.ttl, config.max_hold))
                        .abort_handle(),
                ),
                Err(_) => {
                    tracing::warn!(%resource, "no Tokio runtime: the lease will not be renewed");
                    None
                }
            }
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
        remaining(&self.shared.state.borrow())
    }

    /// True once the lease cannot be counted on: it expired, renewal failed, or it was taken over.
    pub fn is_lost(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Resolves when the lease is lost (see [`is_lost`](Self::is_lost)) or given back. Owns what it
    /// needs, so it can be moved into another task or a `select!`.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        lost(self.shared.state.subscribe())
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
        crate::options::validate_ttl(ttl)?;
        if self.shared.lost_by_now() {
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
        self.stop_watchdog();
        let shared = Arc::clone(&self.shared);
        let result = shared.lease.release(&shared.token).await;
        // Only now: a `release` future dropped before its answer leaves `done` unset, so the
        // guard's drop sends the (idempotent) release again in the background.
        self.done = true;
        shared.mark(Status::Released);
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
        shared.mark(Status::Released);
        let resource = Arc::clone(&shared.resource);
        release_in_background(&resource, async move {
            shared.lease.release(&shared.token).await
        });
    }
}

/// A lease being acquired: armed from before the acquiring request is sent until its outcome is
/// known. Dropped while armed (the `acquire` future was cancelled, or the request failed with a
/// time-out or a lost connection after it may have reached the server), it gives the token back in
/// the background, so a grant nobody heard about does not block the resource for a whole TTL.
/// The release is a compare-and-delete on a fresh random token: harmless if the grant never happened.
pub(crate) struct PendingLease {
    resource: Arc<str>,
    lease: Arc<dyn Lease>,
    token: String,
    armed: bool,
}

impl PendingLease {
    /// Arms a fresh token for `resource` on `lease`.
    pub(crate) fn new(resource: &str, lease: Arc<dyn Lease>) -> Self {
        Self {
            resource: resource.into(),
            lease,
            token: new_token(),
            armed: true,
        }
    }

    /// The owner token the acquiring request must carry.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// The outcome is known: disarms and hands back the lease and its token.
    pub(crate) fn settle(mut self) -> (Arc<dyn Lease>, String) {
        self.armed = false;
        (Arc::clone(&self.lease), std::mem::take(&mut self.token))
    }
}

impl Drop for PendingLease {
    fn drop(&mut self) {
        if self.armed {
            let lease = Arc::clone(&self.lease);
            let token = std::mem::take(&mut self.token);
            release_in_background(&self.resource, async move { lease.release(&token).await });
        }
    }
}

/// A cloneable view of a lease: its fence and its "lost" signal. Hand it to the work the lease
/// protects (this is what [`Lock::with_lock`](crate::Lock::with_lock) passes to its closure).
#[derive(Debug, Clone)]
pub struct LeaseHandle {
    resource: Arc<str>,
    fence: u64,
    state: watch::Receiver<State>,
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
        if self.state.has_changed().is_err() {
            return Duration::ZERO; // the guard is gone
        }
        remaining(&self.state.borrow())
    }

    /// True once the lease cannot be counted on (lost, expired, or released).
    pub fn is_lost(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Resolves when the lease is lost or released.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        lost(self.state.clone())
    }
}

fn remaining(state: &State) -> Duration {
    if state.status != Status::Held {
        return Duration::ZERO;
    }
    state.valid_until.saturating_duration_since(Instant::now())
}

async fn lost(mut rx: watch::Receiver<State>) {
    loop {
        let state = *rx.borrow_and_update();
        if state.status != Status::Held {
            return;
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return; // guard and watchdog are gone: released
                }
            }
            () = tokio::time::sleep_until(state.valid_until) => {
                // The deadline may have moved while we slept; only a deadline still in force counts.
                if rx.borrow().valid_until <= Instant::now() {
                    return;
                }
            }
        }
    }
}

/// Renews the lease about every `ttl / 3` until the guard goes, the lease is lost, or `max_hold`
/// (from acquisition) is reached; the lease then runs out on its own.
async fn watchdog(shared: Arc<Shared>, ttl: Duration, max_hold: Option<Duration>) {
    let period = (ttl / 3).max(Duration::from_millis(1));
    // A cap too far away to represent (`Duration::MAX`) is no cap.
    let hold_until = max_hold.and_then(|m| shared.acquired_at.checked_add(m));
    let mut next = shared.acquired_at + period;
    loop {
        tokio::time::sleep_until(next).await;
        if shared.lost_by_now() {
            if shared.state.borrow().status == Status::Lost {
                tracing::warn!(resource = %shared.resource, "lease lost: not renewed before its deadline");
            }
            return;
        }
        let now = Instant::now();
        let lease = match hold_until {
            Some(end) if end <= now => return,
            Some(end) => ttl.min(end - now),
            None => ttl,
        };
        if lease < crate::options::MIN_TTL {
            return;
        }
        match shared.extend(lease).await {
            Ok(true) => next = now + period,
            Ok(false) => {
                tracing::warn!(resource = %shared.resource, "lease lost: renewal refused");
                return;
            }
            Err(e) => {
                if shared.lost_by_now() {
                    tracing::warn!(resource = %shared.resource, error = %e, "lease lost: renewal failed until expiry");
                    return;
                }
                tracing::debug!(resource = %shared.resource, error = %e, "lease renewal failed; retrying");
                next = Instant::now() + (period / 4).max(Duration::from_millis(1));
            }
        }
    }
}

/// One attempt's outcome.
pub(crate) enum Attempt {
    Acquired(LockGuard),
    /// Held by someone else; the hint is how long until the holder's lease runs out, if known.
    Held(Option<Duration>),
}

/// Repeats `attempt` with jittered exponential backoff until it succeeds or `config.wait` passes.
/// Retryable errors are retried; at the deadline the last error (or [`Error::Timeout`]) is returned.
pub(crate) async fn acquire_loop<F, Fut>(config: &LeaseConfig, mut attempt: F) -> Result<LockGuard>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt>>,
{
    let started = Instant::now();
    // A wait too long to represent (`Duration::MAX`) means no deadline.
    let deadline = started.checked_add(config.wait);
    let mut tries = 0u32;
    loop {
        let last_error = match attempt().await {
            Ok(Attempt::Acquired(guard)) => return Ok(guard),
            Ok(Attempt::Held(hint)) => Err(hint),
            Err(e) if e.is_retryable() => Ok(e),
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(match last_error {
                Ok(e) => e,
                Err(_) => Error::Timeout(now - started),
            });
        }
        let mut delay = backoff(
            tries,
            config.retry_min,
            config.retry_max,
            rand::random::<f64>(),
        );
        if let Err(Some(hint)) = last_error {
            // The holder's lease ends soon: look again right after it does.
            delay = delay.min(hint + Duration::from_millis(1));
        }
        if let Some(d) = deadline {
            delay = delay.min(d - now);
        }
        tokio::time::sleep(delay).await;
        tries = tries.saturating_add(1);
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

    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_send<T: Send + 'static>(_: &T) {}

    #[test]
    fn guards_handles_and_signals_can_cross_tasks() {
        assert_send_sync::<LockGuard>();
        assert_send_sync::<LeaseHandle>();
        let (_tx, rx) = watch::channel(State {
            status: Status::Held,
            valid_until: Instant::now(),
        });
        assert_send(&lost(rx));
        fn _object_safe(_: &dyn Lease) {}
    }

    #[test]
    fn remaining_is_zero_unless_held_and_in_time() {
        let later = Instant::now() + Duration::from_secs(60);
        let held = State {
            status: Status::Held,
            valid_until: later,
        };
        assert!(remaining(&held) > Duration::from_secs(59));
        for status in [Status::Lost, Status::Released] {
            assert_eq!(remaining(&State { status, ..held }), Duration::ZERO);
        }
        let past = State {
            status: Status::Held,
            valid_until: Instant::now() - Duration::from_millis(1),
        };
        assert_eq!(remaining(&past), Duration::ZERO);
    }

    /// A lease that records renewals instead of talking to a server, to drive the guard's own
    /// timing logic on a paused clock.
    #[derive(Debug, Default)]
    struct Recorder {
        renewals: std::sync::Mutex<Vec<(Instant, Duration)>>,
        refuse: std::sync::atomic::AtomicBool,
        released: std::sync::atomic::AtomicBool,
        /// How long each renewal takes to answer, in ms.
        delay_ms: std::sync::atomic::AtomicU64,
    }

    #[derive(Debug)]
    struct Shared(Arc<Recorder>);

    impl Lease for Shared {
        fn extend<'a>(&'a self, _: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
            Box::pin(async move {
                self.0.renewals.lock().unwrap().push((Instant::now(), ttl));
                let delay = self.0.delay_ms.load(std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                Ok(!self.0.refuse.load(std::sync::atomic::Ordering::SeqCst))
            })
        }

        fn release<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool>> {
            Box::pin(async move {
                self.0
                    .released
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(true)
            })
        }
    }

    fn guard(recorder: &Arc<Recorder>, config: &LeaseConfig) -> LockGuard {
        LockGuard::new(
            "r",
            "t".into(),
            1,
            Instant::now(),
            config,
            Arc::new(Shared(Arc::clone(recorder))),
        )
    }

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_renews_every_third_of_the_ttl_and_stops_at_the_hold_cap() {
        let recorder = Arc::new(Recorder::default());
        let config = LeaseConfig {
            ttl: ms(300),
            auto_extend: true,
            max_hold: Some(ms(1000)),
            ..LeaseConfig::default()
        };
        let start = Instant::now();
        let guard = guard(&recorder, &config);
        guard.lost().await;
        let lost_at = start.elapsed();
        let renewals = recorder.renewals.lock().unwrap().clone();
        let offsets: Vec<u64> = renewals
            .iter()
            .map(|(at, _)| (*at - start).as_millis() as u64)
            .collect();
        assert_eq!(offsets, [100, 200, 300, 400, 500, 600, 700, 800, 900]);
        // The last renewals are cut so the lease ends at the cap, not a full TTL later.
        let ttls: Vec<u64> = renewals
            .iter()
            .map(|(_, ttl)| ttl.as_millis() as u64)
            .collect();
        assert_eq!(ttls, [300, 300, 300, 300, 300, 300, 300, 200, 100]);
        // 900 ms + 100 ms lease - drift (1 ms + 2 ms).
        assert_eq!(lost_at, ms(997));
        assert!(guard.is_lost());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_renewal_marks_the_guard_lost_at_once() {
        let recorder = Arc::new(Recorder::default());
        recorder
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let config = LeaseConfig {
            ttl: ms(3000),
            auto_extend: true,
            ..LeaseConfig::default()
        };
        let start = Instant::now();
        let guard = guard(&recorder, &config);
        let handle = guard.handle();
        handle.lost().await;
        assert_eq!(
            start.elapsed(),
            ms(1000),
            "lost at the first renewal, not at expiry"
        );
        assert!(guard.is_lost() && handle.is_lost());
        assert!(guard.extend(ms(100)).await.unwrap_err().is_lost());
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_answered_after_the_deadline_does_not_revive_a_lost_lease() {
        let recorder = Arc::new(Recorder::default());
        // The renewal sent at 100 ms answers at 350 ms: granted, but after the deadline (295 ms).
        recorder
            .delay_ms
            .store(250, std::sync::atomic::Ordering::SeqCst);
        let config = LeaseConfig {
            ttl: ms(300),
            auto_extend: true,
            ..LeaseConfig::default()
        };
        let start = Instant::now();
        let guard = guard(&recorder, &config);
        guard.lost().await;
        assert_eq!(start.elapsed(), ms(295));
        tokio::time::sleep(ms(60)).await;
        assert_eq!(recorder.renewals.lock().unwrap().len(), 1);
        assert!(guard.is_lost(), "remaining {:?}", guard.remaining());
        assert!(guard.extend(ms(300)).await.unwrap_err().is_lost());
        assert_eq!(
            recorder.renewals.lock().unwrap().len(),
            1,
            "a lost lease is not renewed"
        );
        // The guard still gives back whatever the server holds.
        drop(guard);
        tokio::time::sleep(ms(1)).await;
        assert!(recorder.released.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_stops_when_the_guard_is_dropped_or_released() {
        let config = LeaseConfig {
            ttl: ms(300),
            auto_extend: true,
            ..LeaseConfig::default()
        };
        for release in [false, true] {
            let recorder = Arc::new(Recorder::default());
            let guard = guard(&recorder, &config);
            tokio::time::sleep(ms(250)).await;
            assert_eq!(recorder.renewals.lock().unwrap().len(), 2);
            if release {
                guard.release().await.unwrap();
            } else {
                drop(guard);
            }
            tokio::time::sleep(ms(2000)).await;
            assert_eq!(
                recorder.renewals.lock().unwrap().len(),
                2,
                "release {release}"
            );
            assert!(recorder.released.load(std::sync::atomic::Ordering::SeqCst));
            assert_eq!(Arc::strong_count(&recorder), 1, "the watchdog task is gone");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unrepresentable_hold_cap_or_wait_is_no_limit() {
        let recorder = Arc::new(Recorder::default());
        let config = LeaseConfig {
            ttl: ms(300),
            auto_extend: true,
            max_hold: Some(Duration::MAX),
            wait: Duration::MAX,
            ..LeaseConfig::default()
        };
        let guard = guard(&recorder, &config);
        tokio::time::sleep(ms(1050)).await;
        assert_eq!(recorder.renewals.lock().unwrap().len(), 10);
        assert!(!guard.is_lost());
        let mut tries = 0;
        let acquired = acquire_loop(&config, || {
            tries += 1;
            let attempt = if tries < 3 {
                Attempt::Held(None)
            } else {
                Attempt::Acquired(super::tests::guard(&recorder, &LeaseConfig::default()))
            };
            std::future::ready(Ok(attempt))
        })
        .await
        .unwrap();
        assert_eq!(tries, 3);
        drop((acquired, guard));
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
        assert!(recorder.renewals.lock().unwrap().len() == 1);
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
        assert!(!recorder.released.load(std::sync::atomic::Ordering::SeqCst));
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
            if recorder.released.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the background release never ran");
    }
}
