//! Taking a lease: the one acquire path [`Lock`](crate::Lock), [`Redlock`](crate::Redlock) and
//! [`Semaphore`](crate::Semaphore) share. Each primitive says how to make one attempt
//! ([`Acquirer::try_once`]); options, the wait loop (backoff, the holder's remaining lease,
//! deadline) and running work under the lease are written once, here.

use std::{future::Future, sync::Arc, time::Duration};

use redis_core::{Backoff, ErrorPredicates, Key, KeySpace, random_token, release_in_background};
use tokio::{sync::oneshot, time::Instant};
use tracing::field::Empty;

use crate::{
    config::{AcquireOptions, LeaseConfig},
    error::{Error, Result},
    guard::{LeaseHandle, LockGuard, run_guarded},
    lease::Lease,
    metrics::{LeaseKind, Metrics, Outcome, lease_span},
    wake::Waiter,
};

/// One attempt's outcome.
pub(crate) enum Attempt {
    Acquired(LockGuard),
    /// Held by someone else; the hint is how long until the holder's lease runs out, if known.
    Held(Option<Duration>),
}

/// A primitive that hands out leases: one attempt is its own, the rest is shared.
pub(crate) trait Acquirer: Sync {
    /// The settings the primitive was built with.
    fn settings(&self) -> &LeaseConfig;

    /// The key space the primitive's keys live in (its pattern segment included).
    fn keys(&self) -> &KeySpace;

    /// The handles the primitive registered when it was built.
    fn metrics(&self) -> &Arc<Metrics>;

    /// One attempt on `resource`, whose main key is `key`, with per-call options applied.
    /// `waiting`: the caller waits for the resource if it is held (`acquire`, not `try_acquire`).
    fn try_once(
        &self,
        resource: &str,
        key: &Key,
        config: &LeaseConfig,
        waiting: bool,
    ) -> impl Future<Output = Result<Attempt>> + Send;

    /// A registration for wake-ups on `key` while an `acquire` waits, for primitives whose
    /// releases notify waiters. Default: none (waiters poll).
    fn waiter(&self, _resource: &str, _key: &Key) -> Option<Waiter> {
        None
    }

    /// One attempt: the guard, or `None` when the resource is held. Recorded as an acquisition
    /// (held counts as `timeout`) in the `lock.try_acquire` span.
    async fn try_lease(
        &self,
        resource: &str,
        options: &AcquireOptions,
    ) -> Result<Option<LockGuard>> {
        let metrics = self.metrics();
        let span = lease_span!(metrics, "lock.try_acquire", outcome = Empty, fence = Empty);
        let operation = async || {
            // No clock read when nothing records the wait.
            let started = redis_core::metrics::ENABLED.then(Instant::now);
            let mut attempts = 0u32;
            let result = async {
                let config = self.settings().with(options)?;
                let key = self.keys().key(resource)?;
                attempts = 1;
                match self.try_once(resource, &key, &config, false).await? {
                    Attempt::Acquired(guard) => Ok(Some(guard)),
                    Attempt::Held(_) => Ok(None),
                }
            }
            .await;
            let outcome = Outcome::of(&result);
            metrics.acquisition(outcome, attempts, elapsed_since(started));
            let said = match outcome {
                Outcome::Timeout => "held",
                other => other.as_str(),
            };
            span.record("outcome", said);
            if let Ok(Some(guard)) = &result {
                span.record("fence", guard.fence());
            }
            result
        };
        redis_core::in_span!(span, operation())
    }

    /// Attempts until one succeeds or the wait runs out; see [`acquire_loop`]. Recorded as an
    /// acquisition in the `lock.acquire` span.
    async fn lease(&self, resource: &str, options: &AcquireOptions) -> Result<LockGuard> {
        let metrics = self.metrics();
        let span = lease_span!(
            metrics,
            "lock.acquire",
            outcome = Empty,
            fence = Empty,
            attempts = Empty
        );
        let operation = async || {
            // No clock read when nothing records the wait.
            let started = redis_core::metrics::ENABLED.then(Instant::now);
            let mut attempts = 0u32;
            let result = async {
                let config = self.settings().with(options)?;
                let key = self.keys().key(resource)?;
                let waiter = self.waiter(resource, &key);
                acquire_loop(&config, waiter.as_ref(), || {
                    attempts = attempts.saturating_add(1);
                    self.try_once(resource, &key, &config, true)
                })
                .await
            }
            .await;
            let outcome = match &result {
                Ok(_) => Outcome::Acquired,
                Err(Error::Timeout(_)) => Outcome::Timeout,
                Err(_) => Outcome::Error,
            };
            metrics.acquisition(outcome, attempts, elapsed_since(started));
            span.record("outcome", outcome.as_str());
            span.record("attempts", attempts);
            if let Ok(guard) = &result {
                span.record("fence", guard.fence());
            }
            result
        };
        redis_core::in_span!(span, operation())
    }

    /// Waits for a lease with the watchdog on and runs `work` under it; see [`run_guarded`].
    async fn run_leased<F, Fut, T>(&self, resource: &str, work: F) -> Result<T>
    where
        F: FnOnce(LeaseHandle) -> Fut,
        Fut: Future<Output = T>,
    {
        let metrics = self.metrics();
        let span = if metrics.kind == LeaseKind::Semaphore {
            lease_span!(metrics, "lock.with_permit", outcome = Empty)
        } else {
            lease_span!(metrics, "lock.with_lock", outcome = Empty)
        };
        let operation = async || {
            let options = AcquireOptions::new().auto_extend(true);
            let result = match self.lease(resource, &options).await {
                Ok(guard) => run_guarded(guard, work).await,
                Err(e) => Err(e),
            };
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) if e.is_lost() => "lost",
                Err(_) => "error",
            };
            span.record("outcome", outcome);
            result
        };
        redis_core::in_span!(span, operation())
    }
}

/// The public verbs of a primitive that implements [`Acquirer`]: `try_acquire`, `acquire`, their
/// `_with_options` variants, and the run-under-a-lease method named `$with`. The caller writes the
/// docs of `try_acquire`, `acquire` and `$with`; `$name` names the resource parameter.
macro_rules! acquire_verbs {
    (
        guard = $guard:ty, name = $name:ident;
        $(#[$try_doc:meta])* try_acquire;
        $(#[$acquire_doc:meta])* acquire;
        $(#[$with_doc:meta])* $with:ident;
    ) => {
        $(#[$try_doc])*
        pub async fn try_acquire(&self, $name: &str) -> $crate::Result<Option<$guard>> {
            $crate::acquire::Acquirer::try_lease(self, $name, &$crate::AcquireOptions::new()).await
        }

        /// [`try_acquire`](Self::try_acquire) with per-call overrides.
        ///
        /// # Errors
        /// As [`try_acquire`](Self::try_acquire), plus
        /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for bad options.
        pub async fn try_acquire_with_options(
            &self,
            $name: &str,
            options: &$crate::AcquireOptions,
        ) -> $crate::Result<Option<$guard>> {
            $crate::acquire::Acquirer::try_lease(self, $name, options).await
        }

        $(#[$acquire_doc])*
        pub async fn acquire(&self, $name: &str) -> $crate::Result<$guard> {
            $crate::acquire::Acquirer::lease(self, $name, &$crate::AcquireOptions::new()).await
        }

        /// [`acquire`](Self::acquire) with per-call overrides.
        ///
        /// # Errors
        /// As [`acquire`](Self::acquire), plus
        /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for bad options.
        pub async fn acquire_with_options(
            &self,
            $name: &str,
            options: &$crate::AcquireOptions,
        ) -> $crate::Result<$guard> {
            $crate::acquire::Acquirer::lease(self, $name, options).await
        }

        $(#[$with_doc])*
        pub async fn $with<F, Fut, T>(&self, $name: &str, work: F) -> $crate::Result<T>
        where
            F: FnOnce($crate::LeaseHandle) -> Fut,
            Fut: std::future::Future<Output = T>,
        {
            $crate::acquire::Acquirer::run_leased(self, $name, work).await
        }
    };
}
pub(crate) use acquire_verbs;

/// How long past its wait an `acquire` may take to give up when an attempt is still in flight
/// at the deadline (to a slow or unreachable server): the attempt is then dropped, and whatever
/// it may have been granted is released in the background.
pub const WAIT_MARGIN: Duration = Duration::from_millis(50);

/// Repeats `attempt` with jittered exponential backoff until it succeeds or `config.wait` passes.
/// Retryable errors are retried; at the deadline the last error (or [`Error::Timeout`]) is returned.
/// With a `waiter`, a release notification ends a pause early. An attempt still running at
/// `wait + WAIT_MARGIN` is dropped.
pub(crate) async fn acquire_loop<F, Fut>(
    config: &LeaseConfig,
    waiter: Option<&Waiter>,
    mut attempt: F,
) -> Result<LockGuard>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt>>,
{
    let started = Instant::now();
    // A wait too long to represent (`Duration::MAX`) means no deadline.
    let deadline = started.checked_add(config.wait);
    let cutoff = deadline.and_then(|d| d.checked_add(WAIT_MARGIN));
    let mut tries = 0u32;
    let mut last_error = None;
    // This call's place in the queue for a local hand-over, kept until it is served or gives up.
    let mut offer = None;
    loop {
        // Registered before the attempt, so a release between its reply and the pause still wakes.
        let mut woken = waiter.map(|w| {
            let mut notified = Box::pin(w.notify().notified());
            notified.as_mut().enable();
            notified
        });
        // A waiter of this process was just handed the lock: queue behind it (first turn only,
        // so a lost wake-up costs one backoff pause at most), offering to take it over next.
        if tries == 0
            && let (Some(w), Some(notified)) = (waiter, woken.as_mut())
            && w.handoff_pending()
        {
            let pause = retry_pause(&config.retry, 0, rand::random::<f64>(), None, None);
            let pause = deadline.map_or(pause, |d| pause.min(d - Instant::now().min(d)));
            if offer.is_none() {
                offer = w.offer(config);
            }
            tokio::select! {
                () = notified.as_mut() => {}
                () = tokio::time::sleep(pause) => {}
                handed = handed_over(&mut offer) => match handed {
                    Some(guard) => return Ok(guard),
                    None => offer = None,
                },
            }
            tries = 1;
            continue;
        }
        let outcome = match cutoff {
            Some(cutoff) => match tokio::time::timeout_at(cutoff, attempt()).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    let waited = started.elapsed();
                    return Err(last_error.unwrap_or(Error::Timeout(waited)));
                }
            },
            None => attempt().await,
        };
        if let Some(w) = waiter {
            w.attempted();
        }
        // A hand-over may have landed while the attempt was in flight (which then found the lock
        // held by this call's own new token).
        if let Some(guard) = take_handed(&mut offer) {
            return Ok(guard);
        }
        let (holder_left, held) = match outcome {
            Ok(Attempt::Acquired(guard)) => return Ok(guard),
            Ok(Attempt::Held(hint)) => {
                last_error = None;
                if let Some(w) = waiter {
                    w.subscribe();
                }
                (hint, true)
            }
            Err(e) if e.is_retryable() => {
                last_error = Some(e);
                (None, false)
            }
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(last_error.unwrap_or(Error::Timeout(now - started)));
        }
        let wait_left = deadline.map(|d| d - now);
        let pause = retry_pause(
            &config.retry,
            tries,
            rand::random::<f64>(),
            holder_left,
            wait_left,
        );
        match (waiter, woken.as_mut()) {
            (Some(w), Some(notified)) => {
                // Held by someone: a release by this process may hand the lock straight over.
                if held && offer.is_none() {
                    offer = w.offer(config);
                }
                tokio::select! {
                    () = notified.as_mut() => {}
                    () = tokio::time::sleep(pause) => {}
                    handed = handed_over(&mut offer) => match handed {
                        Some(guard) => return Ok(guard),
                        None => offer = None,
                    },
                }
            }
            _ => tokio::time::sleep(pause).await,
        }
        tries = tries.saturating_add(1);
    }
}

/// The guard a local release hands over on `offer`; `None` when the offer was dropped unfilled
/// (the hand-over failed: try again, and make a new offer); never resolves without an offer.
async fn handed_over(offer: &mut Option<oneshot::Receiver<LockGuard>>) -> Option<LockGuard> {
    match offer {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

/// The guard already handed over on `offer`, if any; a dropped offer (a failed hand-over) is
/// cleared so the next pause makes a new one.
fn take_handed(offer: &mut Option<oneshot::Receiver<LockGuard>>) -> Option<LockGuard> {
    match offer.as_mut()?.try_recv() {
        Ok(guard) => Some(guard),
        Err(oneshot::error::TryRecvError::Closed) => {
            *offer = None;
            None
        }
        Err(oneshot::error::TryRecvError::Empty) => None,
    }
}

/// The pause before retry number `attempt`: the backoff's delay for the random factor `random`,
/// cut to just past the holder's remaining lease when the server reported it (look again right
/// after it ends) and to what is left of the wait.
fn retry_pause(
    retry: &Backoff,
    attempt: u32,
    random: f64,
    holder_left: Option<Duration>,
    wait_left: Option<Duration>,
) -> Duration {
    let mut pause = retry.delay_with(attempt, random);
    if let Some(hint) = holder_left {
        pause = pause.min(hint.saturating_add(Duration::from_millis(1)));
    }
    if let Some(left) = wait_left {
        pause = pause.min(left);
    }
    pause
}

/// A lease being acquired: armed from before the acquiring request is sent until its outcome is
/// known. Dropped while armed (the `acquire` future was cancelled, or the request failed with a
/// time-out or a lost connection after it may have reached the server), it gives the token back in
/// the background, so a grant nobody heard about does not block the resource for a whole TTL.
/// The release is a compare-and-delete on a fresh random token: harmless if the grant never happened.
pub(crate) struct PendingLease<'r> {
    /// Borrowed: a pending lease lives only as long as the attempt that names the resource.
    resource: &'r str,
    lease: Arc<dyn Lease>,
    token: String,
    armed: bool,
}

impl<'r> PendingLease<'r> {
    /// Arms a fresh token for `resource` on `lease`.
    pub(crate) fn new(resource: &'r str, lease: Arc<dyn Lease>) -> Self {
        Self {
            resource,
            lease,
            token: random_token(),
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

impl Drop for PendingLease<'_> {
    fn drop(&mut self) {
        if self.armed {
            let lease = Arc::clone(&self.lease);
            let token = std::mem::take(&mut self.token);
            release_in_background(self.resource, async move { lease.release(&token).await });
        }
    }
}

/// Time since `started`, zero when it was not read (see [`redis_core::metrics::ENABLED`]).
pub(crate) fn elapsed_since(started: Option<Instant>) -> Duration {
    started.map_or(Duration::ZERO, |started| started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Lock, Redlock, Semaphore,
        config::DEFAULT_RETRY,
        testing::{Recorder, RecordingLease, ms},
    };

    /// Compile-time check: the future of every public verb can be spawned.
    #[allow(dead_code)]
    fn public_verbs_are_send(lock: &Lock, redlock: &Redlock, semaphore: &Semaphore) {
        fn send<T: Send>(_: T) {}
        let options = AcquireOptions::new();
        send(lock.try_acquire("r"));
        send(lock.try_acquire_with_options("r", &options));
        send(lock.acquire("r"));
        send(lock.acquire_with_options("r", &options));
        send(lock.with_lock("r", |_| async {}));
        send(redlock.try_acquire("r"));
        send(redlock.acquire_with_options("r", &options));
        send(redlock.with_lock("r", |_| async {}));
        send(semaphore.try_acquire("r"));
        send(semaphore.acquire_with_options("r", &options));
        send(semaphore.with_permit("r", |_| async {}));
    }

    #[test]
    fn retry_pauses_double_until_the_cap_and_stay_in_bounds() {
        let pause = |attempt, random| retry_pause(&DEFAULT_RETRY, attempt, random, None, None);
        assert_eq!(pause(0, 1.0), ms(10));
        assert_eq!(pause(1, 1.0), ms(20));
        assert_eq!(pause(3, 1.0), ms(80));
        assert_eq!(pause(10, 1.0), ms(200));
        assert_eq!(pause(u32::MAX, 1.0), ms(200));
        for random in [0.0, 0.1, 0.5, 0.99, 1.0, -3.0, 7.0, f64::NAN] {
            let mut previous = Duration::ZERO;
            for attempt in 0..40 {
                let d = pause(attempt, random);
                let ceiling = DEFAULT_RETRY.ceiling(attempt);
                assert!(d >= ceiling / 2 && d <= ceiling, "{attempt} {random} {d:?}");
                assert!(d >= ms(5) && d <= ms(200), "{attempt} {random} {d:?}");
                assert!(d >= previous, "pauses never shrink: {attempt} {random}");
                previous = d;
            }
        }
        // Absurd but accepted bounds do not panic, nor does a holder hint or a wait at the limit.
        let huge = Duration::MAX;
        let max = Backoff::new(huge, huge).unwrap();
        assert_eq!(retry_pause(&max, 0, 1.0, None, None), huge);
        let half = Backoff::new(huge / 2, huge).unwrap();
        let d = retry_pause(&half, 3, 0.99, Some(huge), Some(huge));
        assert!(d >= huge / 2 && d <= huge, "{d:?}");
        // Jitter spreads retries over the upper half of the window.
        assert_eq!(pause(4, 0.0), ms(80));
        assert!(pause(4, 0.5) > ms(80));
    }

    #[test]
    fn a_retry_pause_ends_just_after_the_holder_and_never_past_the_wait() {
        let pause = |holder, wait| retry_pause(&DEFAULT_RETRY, 5, 1.0, holder, wait);
        assert_eq!(pause(None, None), ms(200));
        assert_eq!(pause(Some(ms(3)), None), ms(4));
        assert_eq!(pause(Some(ms(0)), None), ms(1));
        assert_eq!(pause(None, Some(ms(7))), ms(7));
        assert_eq!(pause(Some(ms(30)), Some(ms(7))), ms(7));
        assert_eq!(pause(Some(ms(500)), Some(ms(900))), ms(200));
    }

    #[test]
    fn pending_leases_carry_distinct_128_bit_hex_tokens() {
        let lease: Arc<dyn Lease> = Arc::new(RecordingLease(Arc::new(Recorder::default())));
        let a = PendingLease::new("r", Arc::clone(&lease));
        let b = PendingLease::new("r", lease);
        assert_eq!(a.token().len(), 32);
        assert!(a.token().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.token(), b.token());
        let sent = a.token().to_owned();
        let (_, token) = a.settle();
        assert_eq!(token, sent, "settling hands the same token over");
        drop(b.settle());
    }
}
