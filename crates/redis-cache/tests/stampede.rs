//! Stampede protection: single flight in the process, a refresh lease across processes.

use redis_core::redis;
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use redis_cache::Cache;
use redis_core::Redis;
use redis_test_support::TestContext;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_misses_run_the_loader_once() {
    let ctx = TestContext::new().await;
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .build()
        .unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let cache = cache.clone();
            let loads = loads.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .get_or_load("cold", || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, std::io::Error>(Some(vec![1u32, 2, 3]))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), Some(vec![1, 2, 3]));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(cache.loads_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_loader_errors_are_shared_not_repeated() {
    let ctx = TestContext::new().await;
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .build()
        .unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let cache = cache.clone();
            let loads = loads.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .get_or_load::<u32, _, _, _>("broken", || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Err(std::io::Error::other("source down"))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert!(err.is_load_error(), "{err:?}");
    }
    // Callers that arrive after the failed load finished retry it: far fewer than 200 loads.
    let n = loads.load(Ordering::SeqCst);
    assert!((1..=20).contains(&n), "{n} loads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_load_a_key_at_most_once_while_the_lease_holds() {
    let ctx = TestContext::new().await;
    let build = |redis: Redis| {
        Cache::builder(redis, &ctx.keyspace())
            .lease_ttl(Duration::from_secs(30))
            .lease_wait(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    // Two handles = two connections, as two application servers would have.
    let a = build(Redis::open(ctx.url()).await.unwrap());
    let b = build(Redis::open(ctx.url()).await.unwrap());
    let loads = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let slow = {
        let loads = loads.clone();
        tokio::spawn(async move {
            a.get_or_load("shared", || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                started_tx.send(()).unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<_, std::io::Error>(Some("from a".to_owned()))
            })
            .await
        })
    };
    started_rx.await.unwrap();
    // `a` holds the lease and is loading; 50 callers through `b` wait for its value.
    let waiters: Vec<_> = (0..50)
        .map(|_| {
            let b = b.clone();
            let loads = loads.clone();
            tokio::spawn(async move {
                b.get_or_load("shared", || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(Some("from b".to_owned()))
                })
                .await
            })
        })
        .collect();
    assert_eq!(slow.await.unwrap().unwrap().as_deref(), Some("from a"));
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap().as_deref(), Some("from a"));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_waiter_loads_itself_when_the_lease_holder_takes_too_long() {
    let ctx = TestContext::new().await;
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .lease_wait(Duration::from_millis(200))
        .build()
        .unwrap();
    // Another process holds the lease and never finishes.
    let lease = cache.key("k").unwrap().companion("lease");
    let _: () = ctx
        .redis()
        .query(
            redis::cmd("SET")
                .arg(&lease)
                .arg("someone-else")
                .arg("PX")
                .arg(30_000),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let got = cache
        .get_or_load("k", || async { Ok::<_, std::io::Error>(Some(5u8)) })
        .await
        .unwrap();
    assert_eq!(got, Some(5));
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The other process's lease was not touched.
    let holder: Option<String> = ctx
        .redis()
        .query(redis::cmd("GET").arg(&lease))
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("someone-else"));
}
