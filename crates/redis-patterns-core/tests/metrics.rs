//! Every documented metric of redis-patterns-core is recorded by the operation that should record it,
//! with the documented labels and nothing else; no label or span field carries a key.

use std::time::Duration;

use redis_core::{Config, Redis, Script, metrics::METRICS};
use redis_test_support::{TestServer, assert_no_field_contains, observe, wait_until};

static ECHO: Script = Script::new("metrics_echo", "return redis.call('GET', KEYS[1])");

#[tokio::test]
async fn every_documented_core_metric_is_recorded_by_its_operation() {
    let observed = observe().await;
    let mut server = TestServer::spawn();
    let config = Config::builder()
        .url(server.url())
        .pool_max_size(1)
        .pool_connection_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let redis = Redis::connect(&config).await.unwrap();
    let key = "metrics-core-secret-key";
    let _: () = redis
        .query(
            redis::cmd("SET")
                .arg(key)
                .arg("not-a-number")
                .arg("PX")
                .arg(60_000),
        )
        .await
        .unwrap();
    let mut all = Vec::new();

    // (operation, metric, labels it must carry)
    let get = redis.query::<String>(redis::cmd("GET").arg(key)).await;
    assert!(get.is_ok());
    let metrics = observed.take_metrics();
    metrics.assert_recorded(
        "redis_patterns_core_commands_total",
        &[("command", "GET"), ("result", "ok")],
    );
    all.push(metrics);

    let incr = redis.query::<i64>(redis::cmd("INCR").arg(key)).await;
    assert!(incr.is_err());
    let metrics = observed.take_metrics();
    metrics.assert_recorded(
        "redis_patterns_core_commands_total",
        &[("command", "INCR"), ("result", "error")],
    );
    all.push(metrics);

    let value: String = ECHO.call().key(key).invoke(&redis).await.unwrap();
    assert_eq!(value, "not-a-number");
    let metrics = observed.take_metrics();
    metrics.assert_recorded(
        "redis_patterns_core_scripts_total",
        &[("script", "metrics_echo"), ("result", "ok")],
    );
    metrics.assert_recorded(
        "redis_patterns_core_script_duration_seconds",
        &[("script", "metrics_echo")],
    );
    all.push(metrics);

    // Latency is sampled per thread (this test runs on one): one call in 4 over 12 calls,
    // while every call counts.
    let every = redis_core::metrics::latency_sampling();
    redis_core::metrics::set_latency_sampling(std::num::NonZeroU32::new(4).unwrap());
    for _ in 0..12 {
        let _: String = ECHO.call().key(key).invoke(&redis).await.unwrap();
    }
    redis_core::metrics::set_latency_sampling(every);
    let metrics = observed.take_metrics();
    let samples = metrics.value(
        "redis_patterns_core_script_duration_seconds",
        &[("script", "metrics_echo")],
    );
    assert!(
        (3.0..=4.0).contains(&samples),
        "{samples} samples of 12 calls"
    );
    assert_eq!(
        metrics.value(
            "redis_patterns_core_scripts_total",
            &[("script", "metrics_echo"), ("result", "ok")]
        ),
        12.0
    );
    all.push(metrics);

    let _: () = redis
        .query(redis::cmd("SCRIPT").arg("FLUSH"))
        .await
        .unwrap();
    let _: String = ECHO.call().key(key).invoke(&redis).await.unwrap();
    let metrics = observed.take_metrics();
    metrics.assert_recorded(
        "redis_patterns_core_script_reloads_total",
        &[("script", "metrics_echo")],
    );
    all.push(metrics);

    let held = redis.dedicated().await.unwrap();
    let metrics = observed.take_metrics();
    metrics.assert_recorded("redis_patterns_core_pool_wait_seconds", &[]);
    all.push(metrics);

    let timed_out = redis.dedicated().await;
    assert!(timed_out.is_err());
    drop(held);
    let metrics = observed.take_metrics();
    metrics.assert_recorded("redis_patterns_core_pool_timeouts_total", &[]);
    all.push(metrics);

    server.restart();
    wait_until(
        "the shared connection is back",
        Duration::from_secs(10),
        || {
            let redis = redis.clone();
            async move { redis.query::<String>(&redis::cmd("PING")).await.is_ok() }
        },
    )
    .await;
    let metrics = observed.take_metrics();
    metrics.assert_recorded("redis_patterns_core_reconnects_total", &[("result", "ok")]);
    all.push(metrics);

    for metrics in &all {
        metrics.assert_documented(&[METRICS]);
        metrics.assert_no_label_contains(&[key, "secret"]);
    }
    assert_no_field_contains(&observed.take_spans(), &[key]);
}

#[tokio::test]
async fn operation_spans_carry_the_database_fields_and_a_recorded_outcome() {
    let observed = observe().await;
    let server = TestServer::spawn();
    let redis = Redis::open(&server.url()).await.unwrap();
    let span = redis_core::operation_span!(redis, "core.demo", outcome = tracing::field::Empty);
    assert!(!span.is_none(), "a subscriber listens");
    // `in_span!` enters a span someone can see on every poll, as `Instrument` does.
    let n: i64 = redis_core::in_span!(span, async {
        tracing::Span::current().record("outcome", "hit");
        redis.query(redis::cmd("INCR").arg("in-span")).await
    })
    .unwrap();
    assert_eq!(n, 1);
    let spans = observed.take_spans();
    let demo = spans
        .iter()
        .find(|s| s.name == "core.demo")
        .unwrap_or_else(|| panic!("no core.demo span in {spans:#?}"));
    let field = |name: &str| {
        demo.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no field {name} in {demo:?}"))
    };
    assert_eq!(field("db.system.name"), "redis");
    assert_eq!(field("db.operation.name"), "core.demo");
    assert_eq!(field("otel.kind"), "client");
    assert_eq!(field("server.address"), "127.0.0.1");
    assert_eq!(field("server.port"), server.port().to_string());
    let recorded = spans
        .iter()
        .flat_map(|s| &s.fields)
        .any(|(k, v)| k == "outcome" && v == "hit");
    assert!(
        recorded,
        "the outcome recorded through Span::current is kept: {spans:#?}"
    );
}

#[tokio::test]
async fn a_script_call_runs_in_its_span_when_someone_listens() {
    let observed = observe().await;
    let server = TestServer::spawn();
    let redis = Redis::open(&server.url()).await.unwrap();
    let key = redis_core::KeySpace::new("spans")
        .unwrap()
        .key("echo")
        .unwrap();
    let value: Option<String> = ECHO.call().key(&key).invoke(&redis).await.unwrap();
    assert_eq!(value, None);
    let spans = observed.take_spans();
    let script = spans
        .iter()
        .find(|s| s.name == "redis.script")
        .unwrap_or_else(|| panic!("no redis.script span in {spans:#?}"));
    assert!(
        script
            .fields
            .iter()
            .any(|(k, v)| k == "name" && v == "metrics_echo"),
        "{script:?}"
    );
}
