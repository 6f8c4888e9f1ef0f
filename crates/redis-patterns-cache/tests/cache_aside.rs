//! Cache-aside, negative caching, TTLs and jitter, write-through against a real Redis.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use redis_cache::{Cache, EntryOptions, WriteMode};
use redis_test_support::{TestContext, wait_until};
use serde::{Deserialize, Serialize};
use support::{StalledLoad, exists, pttl};

mod support;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
}

fn product(id: u64) -> Product {
    Product {
        id,
        name: format!("product {id}"),
    }
}

#[tokio::test]
async fn set_get_delete_round_trip() {
    let ctx = TestContext::new().await;
    let cache = support::cache(&ctx);
    assert_eq!(cache.get::<Product>("p1").await.unwrap(), None);
    cache.set("p1", &product(1)).await.unwrap();
    assert_eq!(cache.get::<Product>("p1").await.unwrap(), Some(product(1)));
    assert!(cache.delete("p1").await.unwrap());
    assert!(!cache.delete("p1").await.unwrap());
    assert_eq!(cache.get::<Product>("p1").await.unwrap(), None);
    assert!(
        cache.get::<Product>("").await.is_err(),
        "empty names are rejected"
    );
    // A TTL Redis cannot take is an error, not a panic, and stores nothing.
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .jitter(0.0)
        .build()
        .unwrap();
    let forever = EntryOptions::new().ttl(Duration::MAX);
    assert!(cache.set_with("p2", &product(2), &forever).await.is_err());
    assert_eq!(cache.get::<Product>("p2").await.unwrap(), None);
}

#[tokio::test]
async fn no_entry_is_written_without_a_ttl() {
    let ctx = TestContext::new().await;
    let cache = support::cache(&ctx);
    cache.set("a", &product(1)).await.unwrap();
    cache
        .set_with("b", &product(2), &EntryOptions::new().tag("t"))
        .await
        .unwrap();
    // The refresh lease carries a TTL while it is held.
    let lease = cache.key("c").unwrap().companion("lease");
    let _: Option<Product> = cache
        .get_or_load("c", || async {
            let ttl = pttl(&ctx, &lease).await;
            assert!(ttl > 0, "the lease has no TTL ({ttl})");
            Ok::<_, std::io::Error>(Some(product(3)))
        })
        .await
        .unwrap();
    let _: Option<Product> = cache
        .get_or_load("d", || async { Ok::<_, std::io::Error>(None) })
        .await
        .unwrap();
    cache.delete("e").await.unwrap();
    cache.invalidate_tag("u").await.unwrap();
    let keys = ctx.keys().await;
    assert!(keys.len() >= 8, "{keys:?}");
    for key in keys {
        let ttl = pttl(&ctx, &key).await;
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
}

#[tokio::test]
async fn ttl_jitter_stays_within_its_bounds() {
    let ctx = TestContext::new().await;
    let ttl = Duration::from_secs(100);
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .ttl(ttl)
        .jitter(0.2)
        .grace(Duration::ZERO)
        .build()
        .unwrap();
    let mut seen = Vec::new();
    for i in 0..200 {
        let name = format!("k{i}");
        cache.set(&name, &i).await.unwrap();
        seen.push(pttl(&ctx, cache.key(&name).unwrap()).await);
    }
    let (min, max) = (*seen.iter().min().unwrap(), *seen.iter().max().unwrap());
    // Within [80 s, 100 s] (a little slack for the time the test takes).
    assert!(min >= 79_000 && max <= 100_000, "min {min} max {max}");
    // And actually spread out, not all at one end.
    assert!(max - min > 5_000, "min {min} max {max}");

    // Grace is added on top of the jittered TTL.
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .ttl(ttl)
        .jitter(0.0)
        .grace(Duration::from_secs(50))
        .build()
        .unwrap();
    cache.set("g", &1).await.unwrap();
    let with_grace = pttl(&ctx, cache.key("g").unwrap()).await;
    assert!((149_000..=150_000).contains(&with_grace), "{with_grace}");
}

#[tokio::test]
async fn not_found_is_cached_for_the_negative_ttl() {
    let ctx = TestContext::new().await;
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .negative_ttl(Duration::from_secs(7))
        .jitter(0.0)
        .build()
        .unwrap();
    let loads = AtomicUsize::new(0);
    for _ in 0..5 {
        let got: Option<Product> = cache
            .get_or_load("missing", || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(None)
            })
            .await
            .unwrap();
        assert_eq!(got, None);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let ttl = pttl(&ctx, cache.key("missing").unwrap()).await;
    assert!(ttl > 0 && ttl <= 7_000, "{ttl}");

    // With negative caching off, every call asks the source again.
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .negative_ttl(Duration::ZERO)
        .build()
        .unwrap();
    let loads = AtomicUsize::new(0);
    for _ in 0..3 {
        let _: Option<Product> = cache
            .get_or_load("missing2", || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(None)
            })
            .await
            .unwrap();
    }
    assert_eq!(loads.load(Ordering::SeqCst), 3);

    // A stale value whose row is gone is removed, not kept for its grace period, when
    // negative caching is off.
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .ttl(Duration::from_millis(200))
        .grace(Duration::from_secs(60))
        .negative_ttl(Duration::ZERO)
        .early_refresh_beta(0.0)
        .build()
        .unwrap();
    cache.set("gone", &product(1)).await.unwrap();
    wait_until("the entry to turn stale", Duration::from_secs(10), || {
        let cache = cache.clone();
        async move { cache.get::<Product>("gone").await.unwrap().is_none() }
    })
    .await;
    let got: Option<Product> = cache
        .get_or_load("gone", || async { Ok::<_, std::io::Error>(None) })
        .await
        .unwrap();
    assert_eq!(got, None);
    assert!(
        !exists(&ctx, cache.key("gone").unwrap()).await,
        "the superseded stale value is still cached"
    );
}

#[tokio::test]
async fn a_loader_error_is_an_error_when_nothing_is_cached() {
    let ctx = TestContext::new().await;
    let cache = support::cache(&ctx);
    let err = cache
        .get_or_load::<Product, _, _, _>("p", || async {
            Err(std::io::Error::other("database down"))
        })
        .await
        .unwrap_err();
    assert!(err.is_load_error(), "{err:?}");
    assert!(err.to_string().contains("database down"), "{err}");
    // The lease was released: the next call loads at once.
    let got = cache
        .get_or_load("p", || async { Ok::<_, std::io::Error>(Some(product(1))) })
        .await
        .unwrap();
    assert_eq!(got, Some(product(1)));
}

#[tokio::test]
async fn stale_values_are_served_when_the_loader_fails_within_grace() {
    let ctx = TestContext::new().await;
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .ttl(Duration::from_millis(200))
        .jitter(0.0)
        .grace(Duration::from_secs(60))
        .early_refresh_beta(0.0)
        .build()
        .unwrap();
    cache.set("p", &product(1)).await.unwrap();
    wait_until("the entry to turn stale", Duration::from_secs(10), || {
        let cache = cache.clone();
        async move { cache.get::<Product>("p").await.unwrap().is_none() }
    })
    .await;
    // Stale, but still in Redis: a failing loader does not make the caller fail.
    let got = cache
        .get_or_load::<Product, _, _, _>("p", || async {
            Err(std::io::Error::other("database down"))
        })
        .await
        .unwrap();
    assert_eq!(got, Some(product(1)));

    // A working loader refreshes it.
    let got = cache
        .get_or_load("p", || async { Ok::<_, std::io::Error>(Some(product(2))) })
        .await
        .unwrap();
    assert_eq!(got, Some(product(2)));
    assert_eq!(cache.get::<Product>("p").await.unwrap(), Some(product(2)));
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_while_another_process_refreshes() {
    let ctx = TestContext::new().await;
    let build = |redis| {
        Cache::builder(redis, &ctx.keyspace())
            .ttl(Duration::from_millis(200))
            .jitter(0.0)
            .grace(Duration::from_secs(60))
            .early_refresh_beta(0.0)
            .build()
            .unwrap()
    };
    let a = build(redis_core::Redis::open(ctx.url()).await.unwrap());
    let b = build(redis_core::Redis::open(ctx.url()).await.unwrap());
    a.set("p", &product(1)).await.unwrap();
    wait_until("the entry to turn stale", Duration::from_secs(10), || {
        let a = a.clone();
        async move { a.get::<Product>("p").await.unwrap().is_none() }
    })
    .await;

    let refresher = StalledLoad::start(&a, "p", product(2)).await;
    // `a` holds the lease: `b` gets the stale value at once and does not load.
    let b_loads = AtomicUsize::new(0);
    let got = b
        .get_or_load("p", || async {
            b_loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Some(product(3)))
        })
        .await
        .unwrap();
    assert_eq!(got, Some(product(1)));
    assert_eq!(b_loads.load(Ordering::SeqCst), 0);
    assert_eq!(refresher.finish().await.unwrap(), Some(product(2)));
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(2)));
}

#[tokio::test]
async fn early_refresh_follows_the_injected_random_source() {
    let ctx = TestContext::new().await;
    let loads = Arc::new(AtomicUsize::new(0));
    let load = |loads: Arc<AtomicUsize>| async move {
        let n = loads.fetch_add(1, Ordering::SeqCst) as u64;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, std::io::Error>(Some(product(n)))
    };
    // u = 0: never early, the fresh value is served.
    let never = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .ttl(Duration::from_secs(60))
        .early_refresh_beta(1.0)
        .random_source(|| 0.0)
        .build()
        .unwrap();
    for _ in 0..5 {
        never
            .get_or_load("p", || load(loads.clone()))
            .await
            .unwrap();
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // u close to 1 with a huge beta: every read of a fresh entry refreshes it.
    let eager = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .ttl(Duration::from_secs(60))
        .early_refresh_beta(1_000_000.0)
        .random_source(|| 0.999_999)
        .build()
        .unwrap();
    let got = eager
        .get_or_load("p", || load(loads.clone()))
        .await
        .unwrap();
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    assert_eq!(
        got,
        Some(product(1)),
        "the refreshing caller gets the new value"
    );
    assert_eq!(never.get::<Product>("p").await.unwrap(), Some(product(1)));
}

#[tokio::test]
async fn write_through_invalidates_or_updates_after_the_source_write() {
    let ctx = TestContext::new().await;
    let cache = support::cache(&ctx);
    cache.set("p", &product(1)).await.unwrap();
    let written = cache
        .write_through("p", WriteMode::Invalidate, || async {
            Ok::<_, std::io::Error>(product(2))
        })
        .await
        .unwrap();
    assert_eq!(written, product(2));
    assert_eq!(cache.get::<Product>("p").await.unwrap(), None);

    cache
        .write_through("p", WriteMode::Update, || async {
            Ok::<_, std::io::Error>(product(3))
        })
        .await
        .unwrap();
    assert_eq!(cache.get::<Product>("p").await.unwrap(), Some(product(3)));

    // A failed source write leaves the cache alone.
    let err = cache
        .write_through::<Product, _, _, _>("p", WriteMode::Invalidate, || async {
            Err(std::io::Error::other("constraint violated"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, redis_cache::Error::Write(_)), "{err:?}");
    assert_eq!(cache.get::<Product>("p").await.unwrap(), Some(product(3)));
}

#[tokio::test]
async fn a_slow_reader_cannot_overwrite_a_newer_write() {
    let ctx = TestContext::new().await;
    let cache = support::cache(&ctx);
    // The reader read the old row, then stalls before it reaches the cache.
    let reader = StalledLoad::start(&cache, "p", product(1)).await;
    // The writer updates the source and invalidates while the reader is stalled.
    cache
        .write_through("p", WriteMode::Invalidate, || async {
            Ok::<_, std::io::Error>(product(2))
        })
        .await
        .unwrap();
    // The reader's caller still gets what it loaded...
    assert_eq!(reader.finish().await.unwrap(), Some(product(1)));
    // ...but the stale row was not cached.
    assert_eq!(cache.get::<Product>("p").await.unwrap(), None);
    let got = cache
        .get_or_load("p", || async { Ok::<_, std::io::Error>(Some(product(2))) })
        .await
        .unwrap();
    assert_eq!(got, Some(product(2)));
}

/// A caller that arrives after a write must not be handed the value of a load that started
/// before it, neither by joining that load in the process nor by waiting for its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_a_write_does_not_wait_for_a_load_that_started_before_it() {
    let ctx = TestContext::new().await;
    let cache = support::patient_cache(&ctx);
    let reader = StalledLoad::start(&cache, "p", product(1)).await;
    cache
        .write_through("p", WriteMode::Invalidate, || async {
            Ok::<_, std::io::Error>(product(2))
        })
        .await
        .unwrap();
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        cache.get_or_load("p", || async { Ok::<_, std::io::Error>(Some(product(2))) }),
    )
    .await
    .expect("the read after the write waited for the older load")
    .unwrap();
    assert_eq!(got, Some(product(2)));
    assert_eq!(reader.finish().await.unwrap(), Some(product(1)));
    // The older load neither overwrote the newer value nor released the newer lease holder's
    // lease (there is none left now).
    assert_eq!(cache.get::<Product>("p").await.unwrap(), Some(product(2)));
    assert_eq!(cache.loads_in_flight(), 0);
}

#[tokio::test]
async fn invalid_configuration_is_rejected_by_build() {
    let ctx = TestContext::new().await;
    let b = || Cache::builder(ctx.redis().clone(), &ctx.keyspace());
    assert!(b().ttl(Duration::ZERO).build().is_err());
    assert!(b().jitter(1.0).build().is_err());
    assert!(b().jitter(-0.1).build().is_err());
    assert!(b().jitter(f64::NAN).build().is_err());
    assert!(b().early_refresh_beta(-1.0).build().is_err());
    assert!(b().early_refresh_beta(f64::INFINITY).build().is_err());
    assert!(b().lease_ttl(Duration::ZERO).build().is_err());
    assert!(b().tag_ttl(Duration::ZERO).build().is_err());
    assert!(b().version_ttl(Duration::ZERO).build().is_err());
    assert!(b().build().is_ok());
}
