//! A log of timed calls for failover tests: run load through [`CallLog::call`], make the switch,
//! then [`CallLog::check`] what must hold through any switch and read the error window.
//!
//! ```no_run
//! # async fn demo(redis: redis_core::Redis, mut cluster: redis_test_support::TestCluster) {
//! use std::time::{Duration, Instant};
//! use redis_test_support::CallLog;
//!
//! let log = CallLog::new(Duration::from_secs(5));
//! let worker = {
//!     let (log, redis) = (log.clone(), redis.clone());
//!     tokio::spawn(async move {
//!         while !log.stopped() {
//!             log.call("incr", redis.query::<i64>(redis::cmd("INCR").arg("{t}:n"))).await;
//!         }
//!     })
//! };
//! log.wait_successes(100, "load before the kill").await;
//! let event = Instant::now();
//! cluster.kill_master_of(b"{t}").await;
//! let settled = Instant::now();
//! log.wait_successes(100, "load after the promotion").await;
//! log.stop();
//! worker.await.unwrap();
//! let window = log.check("cluster master kill", event, settled);
//! eprintln!("errors for {:?}", window.errors_for);
//! # }
//! ```

use std::{
    collections::BTreeSet,
    fmt::Display,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use redis_core::ErrorPredicates;

/// One call's outcome.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Call {
    /// What kind of call (a label of the test's choosing).
    pub op: &'static str,
    /// When it started, since the log was created.
    pub at: Duration,
    /// How long it took (the bound, for a call that hung).
    pub took: Duration,
    /// Why it failed, if it did.
    pub error: Option<CallError>,
}

/// A failed call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallError {
    /// The error's text (`Display`).
    pub text: String,
    /// What its `is_retryable()` said.
    pub retryable: bool,
    /// No reply within the log's bound.
    pub hang: bool,
}

impl CallError {
    /// A cluster redirect, `TRYAGAIN` or `CROSSSLOT` shown to the caller (alone or inside an
    /// aborted transaction): what the connection layer must never let through.
    pub fn is_routing(&self) -> bool {
        [
            "MOVED",
            "Moved:",
            "ASK ",
            "Ask:",
            "TRYAGAIN",
            "TryAgain",
            "CROSSSLOT",
            "CrossSlot",
            "different cluster slots",
        ]
        .iter()
        .any(|marker| self.text.contains(marker))
    }
}

/// What [`CallLog::check`] measured.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ErrorWindow {
    /// Calls logged.
    pub calls: usize,
    /// Calls that failed.
    pub failed: usize,
    /// From the event to the start of the first failed call (`None` without failures).
    pub first_error: Option<Duration>,
    /// From the event to the end of the last failed call.
    pub last_error: Option<Duration>,
    /// From the first failed call's start to the last one's end (zero without failures).
    pub errors_for: Duration,
    /// The slowest call.
    pub slowest: Duration,
}

/// Timed calls from any number of tasks. Share it as the `Arc` [`new`](Self::new) returns.
#[derive(Debug)]
pub struct CallLog {
    started: Instant,
    bound: Duration,
    calls: Mutex<Vec<Call>>,
    successes: AtomicUsize,
    stopped: AtomicBool,
}

impl CallLog {
    /// A log whose calls must each return within `bound` (a call that takes longer is cut off
    /// and logged as hung).
    pub fn new(bound: Duration) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            bound,
            calls: Mutex::new(Vec::new()),
            successes: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        })
    }

    /// Runs `call` within the bound and logs its outcome under `op`. Returns its result, or
    /// `None` when it hung.
    pub async fn call<T, E>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Option<Result<T, E>>
    where
        E: Display + ErrorPredicates,
    {
        let at = self.started.elapsed();
        let result = tokio::time::timeout(self.bound, call).await;
        let took = self.started.elapsed().saturating_sub(at);
        let error = match &result {
            Ok(Ok(_)) => {
                self.successes.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(Err(e)) => Some(CallError {
                text: e.to_string(),
                retryable: e.is_retryable(),
                hang: false,
            }),
            Err(_) => Some(CallError {
                text: format!("no reply within {:?}", self.bound),
                retryable: false,
                hang: true,
            }),
        };
        let failed = error.is_some();
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Call {
                op,
                at,
                took,
                error,
            });
        if failed {
            // Failures return fast during an outage; keep a load loop from spinning on them.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        result.ok()
    }

    /// Calls that succeeded so far.
    pub fn successes(&self) -> usize {
        self.successes.load(Ordering::Relaxed)
    }

    /// Waits (up to 20 s) until `n` more calls have succeeded.
    ///
    /// # Panics
    /// When they do not.
    pub async fn wait_successes(&self, n: usize, what: &str) {
        let target = self.successes() + n;
        crate::wait_until(what, Duration::from_secs(20), || async {
            self.successes() >= target
        })
        .await;
    }

    /// Tells load loops to end ([`stopped`](Self::stopped) turns true).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Every call logged so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Checks what holds through any switch: no call hung, none saw a redirect, `TRYAGAIN` or
    /// `CROSSSLOT`, every failure was retryable, and every kind of call succeeded again after
    /// `settled`. Prints (and returns) the error window measured from `event`, with one line
    /// per distinct error.
    ///
    /// # Panics
    /// When one of those does not hold.
    pub fn check(&self, what: &str, event: Instant, settled: Instant) -> ErrorWindow {
        let calls = self.calls();
        let event_at = event.saturating_duration_since(self.started);
        let failures: Vec<&Call> = calls.iter().filter(|c| c.error.is_some()).collect();
        let first = failures.iter().map(|c| c.at).min();
        let last = failures.iter().map(|c| c.at + c.took).max();
        let window = ErrorWindow {
            calls: calls.len(),
            failed: failures.len(),
            first_error: first.map(|f| f.saturating_sub(event_at)),
            last_error: last.map(|l| l.saturating_sub(event_at)),
            errors_for: match (first, last) {
                (Some(first), Some(last)) => last.saturating_sub(first),
                _ => Duration::ZERO,
            },
            slowest: calls.iter().map(|c| c.took).max().unwrap_or_default(),
        };
        eprintln!(
            "{what}: {} calls, {} failed, errors for {:?} (from {:?} to {:?} after the event), slowest call {:?}",
            window.calls,
            window.failed,
            window.errors_for,
            window.first_error.unwrap_or_default(),
            window.last_error.unwrap_or_default(),
            window.slowest
        );
        let mut seen = BTreeSet::new();
        for call in &failures {
            let error = call.error.as_ref().expect("filtered");
            if seen.insert((call.op, error.text.clone())) {
                eprintln!("  {}: {}", call.op, error.text);
            }
        }
        for call in &failures {
            let error = call.error.as_ref().expect("filtered");
            assert!(!error.hang, "{what}: a {} call hung: {error:?}", call.op);
            assert!(
                !error.is_routing(),
                "{what}: a {} call saw a routing error: {error:?}",
                call.op
            );
            assert!(
                error.retryable,
                "{what}: a {} call failed with a non-retryable error: {error:?}",
                call.op
            );
        }
        let settled_at = settled.saturating_duration_since(self.started);
        let ops: BTreeSet<&str> = calls.iter().map(|c| c.op).collect();
        for op in ops {
            assert!(
                calls
                    .iter()
                    .any(|c| c.op == op && c.at >= settled_at && c.error.is_none()),
                "{what}: no {op} call succeeded after the switch"
            );
        }
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_are_checked_and_the_window_measured() {
        let log = CallLog::new(Duration::from_millis(200));
        let ok = || async { Ok::<_, redis_core::Error>(()) };
        log.call("op", ok()).await;
        let event = Instant::now();
        let down = || async { Err::<(), _>(redis_core::Error::Timeout(Duration::from_millis(1))) };
        log.call("op", down()).await;
        log.call("op", down()).await;
        let settled = Instant::now();
        log.call("op", ok()).await;
        let window = log.check("test", event, settled);
        assert_eq!((window.calls, window.failed), (4, 2));
        assert!(window.errors_for > Duration::ZERO);

        let hung = CallLog::new(Duration::from_millis(20));
        let never = std::future::pending::<Result<(), redis_core::Error>>();
        assert!(hung.call("slow", never).await.is_none());
        let caught = std::panic::catch_unwind(|| hung.check("hung", event, settled));
        assert!(caught.is_err(), "a hung call fails the check");
    }

    #[test]
    fn routing_errors_are_recognised() {
        let error = |text: &str| CallError {
            text: text.to_owned(),
            retryable: true,
            hang: false,
        };
        assert!(error("redis error: Moved: 176 127.0.0.1:7000").is_routing());
        assert!(
            error("Transaction aborted: [(Index 0, error: Ask: 1 127.0.0.1:7000)]").is_routing()
        );
        assert!(error("TRYAGAIN Multiple keys request during rehashing").is_routing());
        assert!(!error("redis error: ClusterDown: The cluster is down").is_routing());
    }
}
