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
use redis_test_support::{TestContext, wait_until};
use support::{exists, spawn_loads};

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_misses_run_the_loader_once() {
    let ctx = TestContext::new().await;
    let cache = support::cache(&ctx);
    let loads = Arc::new(AtomicUsize::new(0));
    let tasks = spawn_loads(&cache, 1000, "cold", {
        let loads = loads.clone();
        || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(Some(vec![1u32, 2, 3]))
        }
    });
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), Some(vec![1, 2, 3]));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(cache.loads_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_loader_errors_are_shared_not_repeated() {
    let ctx = TestContext::new().await;
    let cache = support::cache(&ctx);
    let loads = Arc::new(AtomicUsize::new(0));
    let tasks = spawn_loads::<u32, _, _>(&cache, 200, "broken", {
        let loads = loads.clone();
        || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(std::io::Error::other("source down"))
        }
    });
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

/// A leader whose caller is cancelled mid-load: its followers take over at once (no waiting out
/// `lease_wait` or `lease_ttl`), because the dropped leader releases its refresh lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_releases_its_lease_and_its_followers() {
    let ctx = TestContext::new().await;
    // Long enough that a follower stuck behind a leaked lease would time the test out.
    let cache = support::patient_cache(&ctx);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("k", || async move {
                    started_tx.send(()).unwrap();
                    std::future::pending::<()>().await;
                    Ok::<_, std::io::Error>(Some(1u32))
                })
                .await
        })
    };
    started_rx.await.unwrap();
    let lease = cache.key("k").unwrap().companion("lease");
    let held: Option<String> = ctx
        .redis()
        .query(redis::cmd("GET").arg(&lease))
        .await
        .unwrap();
    assert!(held.is_some(), "the leader holds the lease while it loads");

    let loads = Arc::new(AtomicUsize::new(0));
    let followers = spawn_loads(&cache, 10, "k", {
        let loads = loads.clone();
        || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(Some(2u32))
        }
    });
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for f in followers {
        let got = tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("a follower hung after its leader was cancelled")
            .unwrap()
            .unwrap();
        assert_eq!(got, Some(2));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(cache.loads_in_flight(), 0);
    wait_until(
        "the lease to be released",
        Duration::from_secs(10),
        || async { !exists(&ctx, &lease).await },
    )
    .await;
}

/// A loader that panics: the panic stays in its caller; the callers waiting on that load
/// neither hang nor see it, one of them loads again and the rest share that value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_does_not_strand_its_followers() {
    let ctx = TestContext::new().await;
    let cache = support::patient_cache(&ctx);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let loads = Arc::new(AtomicUsize::new(0));
    let leader = {
        let cache = cache.clone();
        let loads = loads.clone();
        tokio::spawn(async move {
            cache
                .get_or_load::<u32, _, _, _>("k", || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    started_tx.send(()).unwrap();
                    go_rx.await.unwrap();
                    panic!("loader bug");
                    #[allow(unreachable_code)]
                    Ok::<_, std::io::Error>(None)
                })
                .await
        })
    };
    started_rx.await.unwrap();
    let followers = spawn_loads(&cache, 10, "k", {
        let loads = loads.clone();
        || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(Some(2u32))
        }
    });
    go_tx.send(()).unwrap();
    assert!(leader.await.unwrap_err().is_panic());
    for f in followers {
        let got = tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("a follower hung after its leader panicked")
            .unwrap()
            .unwrap();
        assert_eq!(got, Some(2));
    }
    // The panicked load and exactly one more.
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    assert_eq!(cache.loads_in_flight(), 0);
}
