//! Fixtures shared by the integration tests. Each test binary uses a part of them.
#![allow(dead_code)]

pub(crate) mod failover;

use std::{collections::HashSet, future::Future, time::Duration};

use redis_core::{Backoff, Key, Redis, redis};
use redis_lock::LockGuard;

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A retry backoff from `min` doubling up to `max`.
pub(crate) fn backoff(min: Duration, max: Duration) -> Backoff {
    Backoff::new(min, max).unwrap()
}

/// What the critical sections of [`race_counter`] saw.
#[derive(Debug)]
pub(crate) struct CounterRace {
    /// `(fence, value read)` of every section, sorted by fence.
    sections: Vec<(u64, u64)>,
    /// The counter's value after the race.
    total: u64,
}

/// `tasks` tasks each run `rounds` critical sections on `counter`, a value on `store`: take a
/// guard with `acquire`, `GET` the counter, `SET` it to that plus one, release. The increment is
/// not atomic, so two sections that overlap lose one of their writes.
pub(crate) async fn race_counter<A, Fut>(
    tasks: usize,
    rounds: usize,
    store: &Redis,
    counter: &Key,
    acquire: A,
) -> CounterRace
where
    A: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = redis_lock::Result<LockGuard>> + Send,
{
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (acquire, store, counter) = (acquire.clone(), store.clone(), counter.clone());
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(rounds);
                for _ in 0..rounds {
                    let guard = acquire().await.unwrap();
                    let value: Option<u64> =
                        store.query(redis::cmd("GET").arg(&counter)).await.unwrap();
                    let value = value.unwrap_or(0);
                    let _: () = store
                        .query(redis::cmd("SET").arg(&counter).arg(value + 1))
                        .await
                        .unwrap();
                    seen.push((guard.fence(), value));
                    guard.release().await.unwrap();
                }
                seen
            })
        })
        .collect();
    let mut sections = Vec::with_capacity(tasks * rounds);
    for handle in handles {
        sections.extend(handle.await.unwrap());
    }
    sections.sort_unstable();
    let total: u64 = store.query(redis::cmd("GET").arg(counter)).await.unwrap();
    CounterRace { sections, total }
}

impl CounterRace {
    /// No two sections overlapped and fences follow the order the lock was held: the final count
    /// is exact, every fence is unique, and in fence order the sections read 0, 1, 2, ...
    pub(crate) fn assert_exclusive_in_fence_order(&self) {
        let n = self.sections.len();
        assert_eq!(
            self.total, n as u64,
            "increments were lost: sections overlapped"
        );
        let fences: HashSet<u64> = self.sections.iter().map(|&(f, _)| f).collect();
        assert_eq!(fences.len(), n, "every fence is unique");
        for (i, &(fence, value)) in self.sections.iter().enumerate() {
            assert_eq!(value, i as u64, "section with fence {fence} read {value}");
        }
    }

    /// How many critical sections ran.
    pub(crate) fn sections(&self) -> usize {
        self.sections.len()
    }
}

/// Takes a lease with one attempt that must succeed, and gives it back: warms up scripts and
/// connections so that the next request is a single `EVALSHA`.
pub(crate) async fn take_and_release(
    attempt: impl Future<Output = redis_lock::Result<Option<LockGuard>>>,
) {
    let guard = attempt.await.unwrap().expect("the resource is free");
    guard.release().await.unwrap();
}

/// A guard whose lease is gone can neither renew nor give it back: both report it lost.
pub(crate) async fn assert_refused_as_lost(guard: LockGuard) {
    let err = guard.extend(Duration::from_secs(5)).await.unwrap_err();
    assert!(err.is_lost(), "extend: {err}");
    assert!(guard.is_lost());
    let err = guard.release().await.unwrap_err();
    assert!(err.is_lost(), "release: {err}");
}
