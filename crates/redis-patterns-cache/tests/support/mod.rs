//! Set-up shared by the integration tests: caches on a test context, key probes, and loads
//! run from spawned tasks.
#![allow(dead_code)] // each test file uses a part

pub(crate) mod failover;

use std::{sync::Arc, time::Duration};

use redis_cache::{Cache, Result};
use redis_core::redis;
use redis_test_support::TestContext;
use serde::{Serialize, de::DeserializeOwned};
use tokio::{
    sync::{Barrier, oneshot},
    task::JoinHandle,
};

/// A cache with default settings on the context's key space.
pub(crate) fn cache(ctx: &TestContext) -> Cache {
    Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .build()
        .unwrap()
}

/// A cache whose lease outlives any test: a caller stuck behind a leaked lease, or waiting for
/// a load it should not wait for, times the test out instead of loading after `lease_wait`.
pub(crate) fn patient_cache(ctx: &TestContext) -> Cache {
    Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .lease_ttl(Duration::from_secs(120))
        .lease_wait(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// `PTTL` of a key.
pub(crate) async fn pttl(ctx: &TestContext, key: impl redis::ToRedisArgs) -> i64 {
    ctx.redis()
        .query(redis::cmd("PTTL").arg(key))
        .await
        .unwrap()
}

/// Whether a key exists.
pub(crate) async fn exists(ctx: &TestContext, key: impl redis::ToRedisArgs) -> bool {
    let n: i64 = ctx
        .redis()
        .query(redis::cmd("EXISTS").arg(key))
        .await
        .unwrap();
    n == 1
}

/// `n` tasks released together, each calling `cache.get_or_load(name, load)`.
pub(crate) fn spawn_loads<V, F, Fut>(
    cache: &Cache,
    n: usize,
    name: &str,
    load: F,
) -> Vec<JoinHandle<Result<Option<V>>>>
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = std::result::Result<Option<V>, std::io::Error>> + Send,
{
    let barrier = Arc::new(Barrier::new(n));
    (0..n)
        .map(|_| {
            let (cache, load, barrier) = (cache.clone(), load.clone(), barrier.clone());
            let name = name.to_owned();
            tokio::spawn(async move {
                barrier.wait().await;
                cache.get_or_load(&name, load).await
            })
        })
        .collect()
}

/// A `get_or_load` on a spawned task whose loader has started and stalls until
/// [`finish`](Self::finish): a slow reader holding the flight and the refresh lease.
pub(crate) struct StalledLoad<V> {
    task: JoinHandle<Result<Option<V>>>,
    finish: oneshot::Sender<()>,
}

impl<V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> StalledLoad<V> {
    /// Starts the load of `name`, which will return `value`, and waits until its loader runs.
    pub(crate) async fn start(cache: &Cache, name: &str, value: V) -> Self {
        let (started_tx, started_rx) = oneshot::channel();
        let (finish, finish_rx) = oneshot::channel::<()>();
        let (cache, name) = (cache.clone(), name.to_owned());
        let task = tokio::spawn(async move {
            cache
                .get_or_load(&name, || async move {
                    started_tx.send(()).unwrap();
                    finish_rx.await.unwrap();
                    Ok::<_, std::io::Error>(Some(value))
                })
                .await
        });
        started_rx.await.unwrap();
        Self { task, finish }
    }

    /// Lets the loader return and gives its caller's result.
    pub(crate) async fn finish(self) -> Result<Option<V>> {
        self.finish.send(()).unwrap();
        self.task.await.unwrap()
    }
}
