//! Helpers shared by the integration tests. Each test binary uses a part of them.
#![allow(dead_code, unreachable_pub)]

pub mod failover;

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use redis_core::{Key, Redis, redis};
use redis_messaging::{CancellationToken, Consumer, ConsumerStats, Delivery};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen at once.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The payload most stream tests send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub n: u64,
}

/// The JSON of `Order { n }` for each `n` in `range`, for entries written by hand.
pub fn orders(range: std::ops::Range<u64>) -> impl Iterator<Item = String> {
    range.map(|n| format!(r#"{{"n":{n}}}"#))
}

/// How many entries of `group` on `stream` are pending (delivered, not acknowledged).
pub async fn pending(redis: &Redis, stream: &Key, group: &str) -> i64 {
    let summary: redis::Value = redis
        .query(redis::cmd("XPENDING").arg(stream).arg(group))
        .await
        .unwrap();
    match summary {
        redis::Value::Array(parts) => match &parts[0] {
            redis::Value::Int(n) => *n,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// Creates group `g` on `stream` (MKSTREAM), adds one entry per payload (field `p`) and lets
/// `consumer` read them all without acknowledging, as a consumer that then died would. Returns
/// the entry ids in order.
pub async fn pending_with(
    redis: &Redis,
    stream: &Key,
    consumer: &str,
    payloads: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let _: String = redis
        .query(
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg("g")
                .arg("0")
                .arg("MKSTREAM"),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for payload in payloads {
        let id: String = redis
            .query(
                redis::cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("p")
                    .arg(payload),
            )
            .await
            .unwrap();
        ids.push(id);
    }
    let _: redis::Value = redis
        .query(
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg(consumer)
                .arg("COUNT")
                .arg(ids.len())
                .arg("STREAMS")
                .arg(stream)
                .arg(">"),
        )
        .await
        .unwrap();
    ids
}

/// One delivery a handler saw, and when.
type Seen<T> = (Delivery<T>, Instant);

/// The deliveries a handler saw, shared with the test.
#[derive(Debug)]
pub struct Handled<T>(Arc<Mutex<Vec<Seen<T>>>>);

impl<T> Clone for Handled<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Handled<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T: Clone> Handled<T> {
    pub fn record(&self, delivery: Delivery<T>) {
        self.0.lock().unwrap().push((delivery, Instant::now()));
    }

    /// How many deliveries were handled.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Every delivery so far, in the order the handler saw them.
    pub fn deliveries(&self) -> Vec<Delivery<T>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// When the first delivery was handled.
    pub fn first_at(&self) -> Option<Instant> {
        self.0.lock().unwrap().first().map(|(_, at)| *at)
    }
}

impl Handled<Order> {
    /// The order numbers handled, in the order the handler saw them.
    pub fn numbers(&self) -> Vec<u64> {
        self.deliveries().iter().map(|d| d.payload.n).collect()
    }

    /// `(order number, attempt)` of every delivery, sorted.
    pub fn numbers_and_attempts(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<_> = self
            .deliveries()
            .iter()
            .map(|d| (d.payload.n, d.attempt))
            .collect();
        out.sort_unstable();
        out
    }
}

/// A consumer running in a task of its own until it is stopped or killed.
#[derive(Debug)]
pub struct Running {
    pub shutdown: CancellationToken,
    task: JoinHandle<redis_messaging::Result<ConsumerStats>>,
}

impl Running {
    /// Runs `consumer` with `handler` in a task, with a fresh shutdown token.
    pub fn start<T, F, Fut, E>(consumer: &Consumer, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let consumer = consumer.clone();
            let shutdown = shutdown.clone();
            async move { consumer.run(shutdown, handler).await }
        });
        Self { shutdown, task }
    }

    /// Runs `consumer` with a handler that records every delivery and succeeds.
    pub fn counting<T>(consumer: &Consumer) -> (Self, Handled<T>)
    where
        T: DeserializeOwned + Clone + Send + 'static,
    {
        Self::counting_slowly(consumer, Duration::ZERO)
    }

    /// Like [`counting`](Self::counting), with a handler that takes `work` before it succeeds.
    pub fn counting_slowly<T>(consumer: &Consumer, work: Duration) -> (Self, Handled<T>)
    where
        T: DeserializeOwned + Clone + Send + 'static,
    {
        let handled = Handled::default();
        let running = Self::start(consumer, {
            let handled = handled.clone();
            move |d: Delivery<T>| {
                let handled = handled.clone();
                async move {
                    if !work.is_zero() {
                        tokio::time::sleep(work).await;
                    }
                    handled.record(d);
                    Ok::<_, Infallible>(())
                }
            }
        });
        (running, handled)
    }

    /// Cancels the shutdown token and waits (at most [`DEADLINE`]) for `run` to return its stats.
    pub async fn stop(self) -> ConsumerStats {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("run returned after the shutdown")
            .expect("run did not panic")
            .expect("run succeeded")
    }

    /// Kills the consumer mid-work (the task is aborted), as a crash would.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A reconnect backoff from `min` doubling up to `max`.
pub fn backoff(min: Duration, max: Duration) -> redis_messaging::Backoff {
    redis_messaging::Backoff::new(min, max).unwrap()
}
