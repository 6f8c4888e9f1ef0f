//! Every documented metric of redis-patterns-cache is recorded by the operation that should record it,
//! with the documented labels and nothing else; no label or span field carries a key.

use std::time::Duration;

use redis_cache::{Cache, Error, NearCacheConfig};
use redis_core::redis;
use redis_test_support::{Metrics, TestContext, assert_no_field_contains, observe, wait_until};

const NAME: &str = "metrics-test";
const DEADLINE: Duration = Duration::from_secs(10);

/// Entry names: distinctive, so a leak into a label or a span field is caught.
const MISSING: &str = "secret-entry-missing";
const LOADED: &str = "secret-entry-loaded";
const ABSENT: &str = "secret-entry-absent";
const FAILING: &str = "secret-entry-failing";
const STALE: &str = "secret-entry-stale";
const EARLY: &str = "secret-entry-early";
const SHARED: &str = "secret-entry-shared";
const LEASED: &str = "secret-entry-leased";
const CORRUPT: &str = "secret-entry-corrupt";
const NEAR: &str = "secret-entry-near";

fn failing() -> std::io::Error {
    std::io::Error::other("source down")
}

/// The snapshots taken and the metrics their rows covered.
#[derive(Default)]
struct Rows {
    all: Vec<Metrics>,
    covered: Vec<&'static str>,
}

impl Rows {
    /// Asserts `metric` was recorded with the cache's name and `labels`.
    #[track_caller]
    fn check(&mut self, metrics: &Metrics, metric: &'static str, labels: &[(&str, &str)]) {
        let mut all = vec![("name", NAME)];
        all.extend_from_slice(labels);
        metrics.assert_recorded(metric, &all);
        self.covered.push(metric);
    }

    /// As [`check`](Self::check), and keeps the snapshot.
    #[track_caller]
    fn row(&mut self, metrics: Metrics, metric: &'static str, labels: &[(&str, &str)]) {
        self.check(&metrics, metric, labels);
        self.all.push(metrics);
    }
}

#[tokio::test]
async fn every_documented_cache_metric_is_recorded_by_its_operation() {
    let observed = observe().await;
    let ctx = TestContext::new().await;
    let builder = || Cache::builder(ctx.redis().clone(), &ctx.keyspace()).name(NAME);
    let cache = builder().jitter(0.0).build().unwrap();
    let mut rows = Rows::default();

    // (operation, metric, labels it must carry)
    assert_eq!(cache.get::<u32>(MISSING).await.unwrap(), None);
    rows.row(
        observed.take_metrics(),
        "redis_patterns_cache_requests_total",
        &[("result", "miss")],
    );

    let got = cache
        .get_or_load(LOADED, || async { Ok::<_, std::io::Error>(Some(1u32)) })
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    let metrics = observed.take_metrics();
    rows.check(
        &metrics,
        "redis_patterns_cache_requests_total",
        &[("result", "miss")],
    );
    rows.check(&metrics, "redis_patterns_cache_load_duration_seconds", &[]);
    rows.row(
        metrics,
        "redis_patterns_cache_loads_total",
        &[("result", "ok")],
    );

    assert_eq!(cache.get::<u32>(LOADED).await.unwrap(), Some(1));
    rows.row(
        observed.take_metrics(),
        "redis_patterns_cache_requests_total",
        &[("result", "hit")],
    );

    let none = cache
        .get_or_load(ABSENT, || async { Ok::<Option<u32>, std::io::Error>(None) })
        .await
        .unwrap();
    assert_eq!(none, None);
    observed.take_metrics();
    assert_eq!(cache.get::<u32>(ABSENT).await.unwrap(), None);
    rows.row(
        observed.take_metrics(),
        "redis_patterns_cache_requests_total",
        &[("result", "negative_hit")],
    );

    let failed = cache
        .get_or_load(FAILING, || async { Err::<Option<u32>, _>(failing()) })
        .await;
    assert!(matches!(failed, Err(Error::Load(_))));
    rows.row(
        observed.take_metrics(),
        "redis_patterns_cache_loads_total",
        &[("result", "error")],
    );

    // A value past its freshness, served because the loader fails.
    let short = builder()
        .ttl(Duration::from_millis(20))
        .jitter(0.0)
        .grace(Duration::from_secs(60))
        .build()
        .unwrap();
    short.set(STALE, &2u32).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    observed.take_metrics();
    let got = short
        .get_or_load(STALE, || async { Err::<Option<u32>, _>(failing()) })
        .await
        .unwrap();
    assert_eq!(got, Some(2));
    rows.row(
        observed.take_metrics(),
        "redis_patterns_cache_requests_total",
        &[("result", "stale")],
    );

    // XFetch made certain: a slow load, a huge beta and a draw of (almost) 1.
    let eager = builder()
        .ttl(Duration::from_secs(60))
        .jitter(0.0)
        .early_refresh_beta(1000.0)
        .random_source(|| 0.999_999_999)
        .build()
        .unwrap();
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, std::io::Error>(Some(3u32))
    };
    eager.get_or_load(EARLY, slow).await.unwrap();
    observed.take_metrics();
    assert_eq!(eager.get_or_load(EARLY, slow).await.unwrap(), Some(3));
    rows.row(
        observed.take_metrics(),
        "redis_patterns_cache_early_refreshes_total",
        &[],
    );

    // A second caller joins the first one's load in this process.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let leader = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_load(SHARED, || async move {
                    let _ = released.await;
                    Ok::<_, std::io::Error>(Some(4u32))
                })
                .await
        }
    });
    wait_until("the load is in flight", DEADLINE, || async {
        cache.loads_in_flight() == 1
    })
    .await;
    let follower = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_load(SHARED, || async { Ok::<_, std::io::Error>(Some(5u32)) })
                .await
        }
    });
    // The follower counts itself as coalesced when it joins the flight: wait for that, then
    // let the leader finish.
    let mut joined = Metrics::default();
    let deadline = std::time::Instant::now() + DEADLINE;
    while joined.value("redis_patterns_cache_coalesced_total", &[]) == 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the follower never joined the load"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        joined.0.extend(observed.take_metrics().0);
    }
    release.send(()).unwrap();
    assert_eq!(leader.await.unwrap().unwrap(), Some(4));
    assert_eq!(follower.await.unwrap().unwrap(), Some(4));
    joined.0.extend(observed.take_metrics().0);
    rows.row(joined, "redis_patterns_cache_coalesced_total", &[]);

    // Another process holds the refresh lease and never finishes.
    let waiting = builder()
        .lease_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    let lease = waiting.key(LEASED).unwrap().companion("lease");
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
    observed.take_metrics();
    let got = waiting
        .get_or_load(LEASED, || async { Ok::<_, std::io::Error>(Some(6u32)) })
        .await
        .unwrap();
    assert_eq!(got, Some(6));
    rows.row(
        observed.take_metrics(),
        "redis_patterns_cache_lease_waits_total",
        &[],
    );

    // Garbage under the cache's key.
    let key = cache.key(CORRUPT).unwrap();
    let _: () = ctx
        .redis()
        .query(
            redis::cmd("SET")
                .arg(&key)
                .arg(&b"\xff\x00garbage"[..])
                .arg("EX")
                .arg(60),
        )
        .await
        .unwrap();
    assert_eq!(cache.get::<u32>(CORRUPT).await.unwrap(), None);
    rows.row(
        observed.take_metrics(),
        "redis_patterns_cache_corrupt_entries_total",
        &[],
    );

    // The near cache: written before it tracks, so no push races the reads below.
    cache.set(NEAR, &7u32).await.unwrap();
    let near = builder()
        .near_cache(NearCacheConfig::new(100).ttl(Duration::from_secs(60)))
        .build()
        .unwrap();
    wait_until("near cache tracking", DEADLINE, || async {
        near.near_cache_stats().unwrap().tracking
    })
    .await;
    rows.row(
        observed.take_metrics(),
        "redis_patterns_cache_near_flushes_total",
        &[],
    );

    assert_eq!(near.get::<u32>(NEAR).await.unwrap(), Some(7));
    assert_eq!(near.get::<u32>(NEAR).await.unwrap(), Some(7));
    assert_eq!(near.near_cache_stats().unwrap().hits, 1);
    let metrics = observed.take_metrics();
    rows.check(
        &metrics,
        "redis_patterns_cache_requests_total",
        &[("result", "hit")],
    );
    rows.row(metrics, "redis_patterns_cache_near_hits_total", &[]);

    // Another client writes the key: the server's push evicts the copy.
    let mut other = redis::Client::open(ctx.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(near.key(NEAR).unwrap())
        .arg("overwritten")
        .query_async(&mut other)
        .await
        .unwrap();
    wait_until("the push evicts the copy", DEADLINE, || async {
        near.near_cache_stats().unwrap().invalidations >= 1
    })
    .await;
    rows.row(
        observed.take_metrics(),
        "redis_patterns_cache_near_invalidations_total",
        &[],
    );

    for doc in redis_cache::METRICS {
        assert!(
            rows.covered.contains(&doc.name),
            "no row covers {}",
            doc.name
        );
    }
    let needles = [
        "secret",
        MISSING,
        LOADED,
        STALE,
        LEASED,
        CORRUPT,
        NEAR,
        ctx.prefix(),
    ];
    for metrics in &rows.all {
        metrics.assert_documented(&[redis_cache::METRICS, redis_core::metrics::METRICS]);
        metrics.assert_no_label_contains(&needles);
    }
    let spans = observed.take_spans();
    for op in ["cache.get", "cache.get_or_load", "cache.set"] {
        assert!(spans.iter().any(|s| s.name == op), "no {op} span");
    }
    assert!(
        spans
            .iter()
            .flat_map(|s| &s.fields)
            .any(|(f, v)| f == "result" && v == "stale"),
        "the served result is recorded on the span"
    );
    assert_no_field_contains(&spans, &needles);
}

#[tokio::test]
async fn a_name_must_be_a_bounded_label_value() {
    let ctx = TestContext::new().await;
    for bad in ["", "user:42", &"x".repeat(65)] {
        let built = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
            .name(bad)
            .build();
        assert!(matches!(built, Err(Error::InvalidConfig(_))), "{bad:?}");
    }
    let built = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .name("products.eu-1")
        .build();
    assert!(built.is_ok());
}
