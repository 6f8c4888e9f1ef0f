//! Every documented metric of redis-patterns-lock is recorded by the operation that should record it, with
//! the documented labels and nothing else; no label or span field carries a resource name.

mod support;

use std::{collections::BTreeSet, time::Duration};

use redis_core::Redis;
use redis_lock::{AcquireOptions, Error, Lock, Redlock, Semaphore};
use redis_test_support::{
    Metrics, Observed, TestContext, TestMasters, assert_no_field_contains, observe,
};
use support::{backoff, ms};

const LOCKED: &str = "lock-secret-resource-7f3a";
const PERMITS: &str = "sem-secret-resource-91c2";
const REDLOCKED: &str = "redlock-secret-resource-d04e";

/// Takes what the last operation recorded, checks it against the documented tables and keeps it.
fn take(observed: &Observed, all: &mut Vec<Metrics>) -> Metrics {
    let metrics = observed.take_metrics();
    metrics.assert_documented(&[redis_lock::METRICS, redis_core::metrics::METRICS]);
    all.push(metrics.clone());
    metrics
}

#[tokio::test]
async fn every_documented_lock_metric_is_recorded_by_its_operation() {
    let observed = observe().await;
    let ctx = TestContext::new().await;
    let mut all = Vec::new();
    let bad = Lock::builder(ctx.redis().clone(), &ctx.keyspace()).name("not a label");
    assert!(matches!(bad.build(), Err(Error::InvalidConfig(_))));

    let lock = Lock::builder(ctx.redis().clone(), &ctx.keyspace())
        .name("orders")
        .retry_delay(backoff(ms(1), ms(5)))
        .build()
        .unwrap();
    let lock_labels = [("name", "orders"), ("kind", "lock")];
    let with = |extra: (&'static str, &'static str)| [lock_labels[0], lock_labels[1], extra];

    // (operation, metric, labels it must carry)
    let guard = lock.acquire(LOCKED).await.unwrap();
    let m = take(&observed, &mut all);
    m.assert_recorded(
        "redis_patterns_lock_acquisitions_total",
        &with(("outcome", "acquired")),
    );
    m.assert_recorded("redis_patterns_lock_wait_seconds", &lock_labels);
    m.assert_recorded("redis_patterns_lock_attempts", &lock_labels);

    assert!(lock.try_acquire(LOCKED).await.unwrap().is_none());
    let options = AcquireOptions::new().wait(ms(30));
    let err = lock
        .acquire_with_options(LOCKED, &options)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    let m = take(&observed, &mut all);
    assert_eq!(
        m.value(
            "redis_patterns_lock_acquisitions_total",
            &with(("outcome", "timeout"))
        ),
        2.0,
        "{}",
        m.dump()
    );

    assert!(
        lock.try_acquire("").await.is_err(),
        "an empty name is no key"
    );
    let m = take(&observed, &mut all);
    m.assert_recorded(
        "redis_patterns_lock_acquisitions_total",
        &with(("outcome", "error")),
    );

    guard.extend(Duration::from_secs(30)).await.unwrap();
    let m = take(&observed, &mut all);
    m.assert_recorded(
        "redis_patterns_lock_renewals_total",
        &with(("result", "ok")),
    );

    guard.release().await.unwrap();
    let m = take(&observed, &mut all);
    m.assert_recorded("redis_patterns_lock_hold_seconds", &lock_labels);
    assert_eq!(m.value("redis_patterns_lock_lost_total", &lock_labels), 0.0);

    // The watchdog renews; the work runs under the lease.
    let renewed = lock
        .with_lock(LOCKED, |lease| async move { lease.fence() })
        .await;
    assert!(renewed.is_ok());
    let options = AcquireOptions::new().ttl(ms(150)).auto_extend(true);
    let guard = lock.acquire_with_options(LOCKED, &options).await.unwrap();
    // Renewed about every 50 ms: wait for the first renewal, however loaded the machine is.
    let mut m = Metrics::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while m.value(
        "redis_patterns_lock_renewals_total",
        &with(("result", "ok")),
    ) == 0.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no watchdog renewal within 10 s"
        );
        tokio::time::sleep(ms(10)).await;
        m.0.extend(take(&observed, &mut all).0);
    }
    let _ = guard.release().await;
    m.0.extend(take(&observed, &mut all).0);
    m.assert_recorded(
        "redis_patterns_lock_renewals_total",
        &with(("result", "ok")),
    );
    assert_eq!(
        m.value("redis_patterns_lock_hold_seconds", &lock_labels),
        2.0
    );

    // A lease that ran out while held: lost once, however often it is found lost.
    let options = AcquireOptions::new().ttl(ms(20));
    let guard = lock.acquire_with_options(LOCKED, &options).await.unwrap();
    tokio::time::sleep(ms(40)).await;
    assert!(guard.extend(ms(1000)).await.unwrap_err().is_lost());
    assert!(guard.release().await.unwrap_err().is_lost());
    let m = take(&observed, &mut all);
    assert_eq!(m.value("redis_patterns_lock_lost_total", &lock_labels), 1.0);
    assert_eq!(
        m.value("redis_patterns_lock_hold_seconds", &lock_labels),
        1.0
    );
    m.assert_recorded(
        "redis_patterns_lock_renewals_total",
        &with(("result", "failed")),
    );

    // Semaphore permits in use: up on grant, down exactly once on release, drop or loss.
    let semaphore = Semaphore::builder(ctx.redis().clone(), &ctx.keyspace(), 2)
        .name("exports")
        .build()
        .unwrap();
    let sem_labels = [("name", "exports"), ("kind", "semaphore")];
    let in_use =
        |m: &Metrics| m.value("redis_patterns_lock_permits_in_use", &[("name", "exports")]);
    let permit = semaphore.try_acquire(PERMITS).await.unwrap().unwrap();
    let dropped = semaphore.acquire(PERMITS).await.unwrap();
    let m = take(&observed, &mut all);
    assert_eq!(in_use(&m), 2.0, "{}", m.dump());
    m.assert_recorded(
        "redis_patterns_lock_acquisitions_total",
        &[sem_labels[0], sem_labels[1], ("outcome", "acquired")],
    );
    permit.release().await.unwrap();
    drop(dropped);
    let m = take(&observed, &mut all);
    assert_eq!(in_use(&m), -2.0, "{}", m.dump());
    assert_eq!(
        m.value("redis_patterns_lock_hold_seconds", &sem_labels),
        2.0
    );

    let options = AcquireOptions::new().ttl(ms(20));
    let permit = semaphore
        .try_acquire_with_options(PERMITS, &options)
        .await
        .unwrap()
        .unwrap();
    let m = take(&observed, &mut all);
    assert_eq!(in_use(&m), 1.0, "{}", m.dump());
    tokio::time::sleep(ms(40)).await;
    assert!(permit.is_lost());
    assert!(permit.extend(ms(1000)).await.unwrap_err().is_lost());
    assert!(permit.release().await.unwrap_err().is_lost());
    let m = take(&observed, &mut all);
    assert_eq!(in_use(&m), -1.0, "{}", m.dump());
    assert_eq!(m.value("redis_patterns_lock_lost_total", &sem_labels), 1.0);
    assert_eq!(semaphore.holders(PERMITS).await.unwrap(), 0);
    take(&observed, &mut all);

    // Redlock: a quorum failure when two of three masters are gone.
    let mut masters = TestMasters::spawn(3);
    let mut instances = Vec::new();
    for url in masters.urls() {
        instances.push(Redis::open(&url).await.unwrap());
    }
    let redlock = Redlock::builder(instances, &ctx.keyspace())
        .name("reports")
        .build()
        .unwrap();
    let red_labels = [("name", "reports"), ("kind", "redlock")];
    let guard = redlock.try_acquire(REDLOCKED).await.unwrap().unwrap();
    guard.release().await.unwrap();
    let m = take(&observed, &mut all);
    m.assert_recorded(
        "redis_patterns_lock_acquisitions_total",
        &[red_labels[0], red_labels[1], ("outcome", "acquired")],
    );
    m.assert_recorded("redis_patterns_lock_hold_seconds", &red_labels);

    masters.servers()[0].kill();
    masters.servers()[1].kill();
    let err = redlock.try_acquire(REDLOCKED).await.unwrap_err();
    assert!(matches!(err, Error::NoQuorum { .. }), "{err}");
    let m = take(&observed, &mut all);
    m.assert_recorded(
        "redis_patterns_lock_quorum_failures_total",
        &[("name", "reports")],
    );
    m.assert_recorded(
        "redis_patterns_lock_acquisitions_total",
        &[red_labels[0], red_labels[1], ("outcome", "error")],
    );

    // Every documented metric was covered by a row above.
    let recorded: BTreeSet<&str> = all
        .iter()
        .flat_map(|m| m.0.iter())
        .filter(|s| s.value != 0.0)
        .map(|s| s.name.as_str())
        .collect();
    for doc in redis_lock::METRICS {
        assert!(
            recorded.contains(doc.name),
            "{} is never recorded",
            doc.name
        );
    }

    // No resource name in a label or span field; the fence is the outcome of `lock.acquire`.
    let needles = [LOCKED, PERMITS, REDLOCKED, "secret"];
    for m in &all {
        m.assert_no_label_contains(&needles);
    }
    let spans = observed.take_spans();
    assert_no_field_contains(&spans, &needles);
    for name in [
        "lock.acquire",
        "lock.try_acquire",
        "lock.with_lock",
        "lock.extend",
        "lock.release",
        "lock.holders",
    ] {
        assert!(spans.iter().any(|s| s.name == name), "no {name} span");
    }
    let acquire = spans.iter().find(|s| s.name == "lock.acquire").unwrap();
    assert!(acquire.fields.contains(&("name".into(), "orders".into())));
    assert!(acquire.fields.contains(&("kind".into(), "lock".into())));
    assert!(
        spans
            .iter()
            .any(|s| s.fields.iter().any(|(k, v)| k == "fence" && v != "0")),
        "a fence is recorded"
    );
}
