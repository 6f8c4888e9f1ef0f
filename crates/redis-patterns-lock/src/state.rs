//! A held lease's local state, shared by its guard, its handles and its watchdog: held, lost or
//! released, and the local deadline past which it cannot be trusted.

use std::{
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use crate::{
    config::{drift, validity},
    error::Result,
    lease::Lease,
    metrics::Metrics,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Held,
    Lost,
    Released,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct State {
    pub(crate) status: Status,
    /// Local deadline past which the lease cannot be trusted (`start + ttl - drift`).
    pub(crate) valid_until: Instant,
}

/// A lease's state and who waits for it to change: one mutex and one [`Notify`], cheap to make,
/// change and drop on every acquire and release.
#[derive(Debug)]
struct Cell {
    state: Mutex<State>,
    changed: Notify,
    /// The sending side (the lease) is gone.
    closed: AtomicBool,
}

impl Cell {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The lease's side of its state: changes it and tells the receivers.
#[derive(Debug)]
pub(crate) struct StateSender(Arc<Cell>);

/// A view of a lease's state that sees every change, and whether the lease is gone.
#[derive(Debug, Clone)]
pub(crate) struct StateReceiver(Arc<Cell>);

impl StateSender {
    pub(crate) fn new(state: State) -> Self {
        Self(Arc::new(Cell {
            state: Mutex::new(state),
            changed: Notify::new(),
            closed: AtomicBool::new(false),
        }))
    }

    /// The current state.
    pub(crate) fn borrow(&self) -> State {
        *self.0.lock()
    }

    /// Applies `modify`; when it reports a change, wakes whoever waits for one.
    pub(crate) fn send_if_modified(&self, modify: impl FnOnce(&mut State) -> bool) -> bool {
        let modified = modify(&mut self.0.lock());
        // The state is written first, so a receiver that registered later reads the new one.
        if modified && Arc::strong_count(&self.0) > 1 {
            self.0.changed.notify_waiters();
        }
        modified
    }

    pub(crate) fn subscribe(&self) -> StateReceiver {
        StateReceiver(Arc::clone(&self.0))
    }
}

impl Drop for StateSender {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        if Arc::strong_count(&self.0) > 1 {
            self.0.changed.notify_waiters();
        }
    }
}

impl StateReceiver {
    /// The current state.
    pub(crate) fn borrow(&self) -> State {
        *self.0.lock()
    }

    /// True once the lease (guard and watchdog) is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }
}

/// One held lease: what it is, how to renew or give it back, and its state channel.
pub(crate) struct Shared {
    pub(crate) resource: Arc<str>,
    pub(crate) token: String,
    pub(crate) fence: u64,
    pub(crate) acquired_at: Instant,
    pub(crate) lease: Arc<dyn Lease>,
    pub(crate) state: StateSender,
    /// The handles of the primitive that granted the lease.
    pub(crate) metrics: Arc<Metrics>,
    /// When the grant was known here: the start of the hold time (read only when metrics
    /// record it).
    granted_at: Option<Instant>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("resource", &self.resource)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// A lease just taken with `ttl` by a request sent at `start`.
    pub(crate) fn new(
        resource: &str,
        token: String,
        fence: u64,
        start: Instant,
        ttl: Duration,
        lease: Arc<dyn Lease>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let state = StateSender::new(State {
            status: Status::Held,
            valid_until: start + ttl - drift(ttl),
        });
        metrics.granted();
        Self {
            resource: resource.into(),
            token,
            fence,
            acquired_at: start,
            lease,
            state,
            metrics,
            granted_at: redis_core::metrics::ENABLED.then(Instant::now),
        }
    }

    /// Moves a held lease to `status` (lost or released); a lease no longer held stays as it is.
    pub(crate) fn mark(&self, status: Status) {
        let moved = self.state.send_if_modified(|s| {
            if s.status == Status::Held {
                s.status = status;
                true
            } else {
                false
            }
        });
        if moved {
            self.ended(status);
        }
    }

    /// The lease just stopped being held (the one move away from [`Status::Held`]): hold time,
    /// loss, permits in use.
    fn ended(&self, status: Status) {
        self.metrics.ended(
            crate::acquire::elapsed_since(self.granted_at),
            status == Status::Lost,
        );
    }

    /// Marks the lease lost if its local deadline has passed; true when it is no longer held.
    /// Once the deadline passed the "lost" signal may have fired, so a later renewal must not
    /// bring the lease back: lost stays lost.
    pub(crate) fn lost_by_now(&self) -> bool {
        let now = Instant::now();
        let moved = self.state.send_if_modified(|s| {
            if s.status == Status::Held && s.valid_until <= now {
                s.status = Status::Lost;
                true
            } else {
                false
            }
        });
        if moved {
            self.ended(Status::Lost);
        }
        self.state.borrow().status != Status::Held
    }

    /// Renews to `ttl`; on success moves the local deadline. `Ok(false)` marks the lease lost.
    /// Counted as a renewal, kept or failed.
    pub(crate) async fn extend(&self, ttl: Duration) -> Result<bool> {
        let result = self.renew(ttl).await;
        self.metrics.renewal(matches!(result, Ok(true)));
        result
    }

    async fn renew(&self, ttl: Duration) -> Result<bool> {
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

impl Drop for Shared {
    /// A lease whose guard let go without giving it back ([`detach`](crate::LockGuard::detach))
    /// ends here, for the metrics: every lease ends exactly once.
    fn drop(&mut self) {
        if self.state.borrow().status == Status::Held {
            self.ended(Status::Held);
        }
    }
}

/// How much longer a lease in `state` can be trusted by the local clock (zero unless held).
pub(crate) fn remaining(state: &State) -> Duration {
    if state.status != Status::Held {
        return Duration::ZERO;
    }
    state.valid_until.saturating_duration_since(Instant::now())
}

/// Resolves when the lease is no longer held: lost, released, past its local deadline, or its
/// guard and watchdog are gone.
pub(crate) async fn lost(rx: StateReceiver) {
    loop {
        // Registered before the state is read, so a change in between still wakes.
        let changed = rx.0.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if rx.is_closed() {
            return; // guard and watchdog are gone: released
        }
        let state = rx.borrow();
        if state.status != Status::Held {
            return;
        }
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep_until(state.valid_until) => {
                // The deadline may have moved while we slept; only a deadline still in force counts.
                if rx.borrow().valid_until <= Instant::now() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
