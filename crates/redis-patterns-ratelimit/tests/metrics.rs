//! Every documented metric of redis-patterns-ratelimit is recorded by the operation that should record it,
//! with the documented labels and nothing else; no label carries an identity or a key, and a span
//! field carries the identity only when the limiter was built with `record_identity(true)`.

mod support;

use redis_ratelimit::{
    Acquired, ConcurrencyLimiter, Error, FailurePolicy, Limit, METRICS, Outcome, RateLimiter,
    Source,
};
use redis_test_support::{Metrics, SpanRecord, TestContext, assert_no_field_contains, observe};
use support::{HOUR, MINUTE};

const IDENTITY: &str = "rl-secret-identity-5d1c";
const SLOT_IDENTITY: &str = "rl-secret-tenant-93b7";

fn documented(all: &[Metrics]) {
    for metrics in all {
        metrics.assert_documented(&[METRICS, redis_ratelimit::redis_core::metrics::METRICS]);
        metrics.assert_no_label_contains(&[IDENTITY, SLOT_IDENTITY, "secret"]);
    }
}

fn field_has(spans: &[SpanRecord], field: &str, value: &str) -> bool {
    spans
        .iter()
        .flat_map(|s| &s.fields)
        .any(|(f, v)| f == field && v == value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_ratelimit_metric_is_recorded_by_its_operation() {
    let observed = observe().await;
    let ctx = TestContext::new().await;
    let limiter = RateLimiter::builder(
        ctx.redis().clone(),
        &ctx.keyspace(),
        Limit::gcra(1, HOUR, 1),
    )
    .name("api")
    .block_cache(16)
    .build()
    .unwrap();
    let decisions = "redis_patterns_ratelimit_decisions_total";
    let gcra = [("name", "api"), ("algorithm", "gcra")];
    let mut all = Vec::new();

    // (operation, metric, labels it must carry)
    let allowed = limiter.check(IDENTITY).await.unwrap();
    assert_eq!(
        (allowed.outcome(), allowed.source()),
        (Outcome::Allowed, Source::Redis)
    );
    let metrics = observed.take_metrics();
    metrics.assert_recorded(
        decisions,
        &[
            gcra[0],
            gcra[1],
            ("outcome", "allowed"),
            ("source", "redis"),
        ],
    );
    all.push(metrics);

    let denied = limiter.check(IDENTITY).await.unwrap();
    assert_eq!(
        (denied.outcome(), denied.source()),
        (Outcome::Denied, Source::Redis)
    );
    let metrics = observed.take_metrics();
    metrics.assert_recorded(
        decisions,
        &[gcra[0], gcra[1], ("outcome", "denied"), ("source", "redis")],
    );
    all.push(metrics);

    let cached = limiter.check(IDENTITY).await.unwrap();
    assert_eq!(cached.source(), Source::BlockCache);
    let metrics = observed.take_metrics();
    metrics.assert_recorded(
        decisions,
        &[
            gcra[0],
            gcra[1],
            ("outcome", "denied"),
            ("source", "block_cache"),
        ],
    );
    assert_eq!(metrics.value("redis_patterns_core_scripts_total", &[]), 0.0);
    all.push(metrics);

    let never = limiter.check_n(IDENTITY, 2).await.unwrap();
    assert!(never.can_never_pass());
    let metrics = observed.take_metrics();
    metrics.assert_recorded(
        decisions,
        &[gcra[0], gcra[1], ("outcome", "denied"), ("source", "local")],
    );
    all.push(metrics);

    let slots = ConcurrencyLimiter::builder(ctx.redis().clone(), &ctx.keyspace(), 1)
        .name("exports")
        .build()
        .unwrap();
    let acquisitions = "redis_patterns_ratelimit_concurrency_acquisitions_total";
    let in_flight = "redis_patterns_ratelimit_concurrency_in_flight";
    let exports = ("name", "exports");
    let permit = slots.try_acquire(SLOT_IDENTITY).await.unwrap().permit();
    let permit = permit.expect("a free slot");
    let metrics = observed.take_metrics();
    metrics.assert_recorded(acquisitions, &[exports, ("outcome", "acquired")]);
    metrics.assert_recorded(in_flight, &[exports]);
    assert_eq!(metrics.value(in_flight, &[exports]), 1.0);
    all.push(metrics);

    let busy = slots.try_acquire(SLOT_IDENTITY).await.unwrap();
    assert!(matches!(busy, Acquired::Denied(_)));
    let metrics = observed.take_metrics();
    metrics.assert_recorded(acquisitions, &[exports, ("outcome", "rejected")]);
    all.push(metrics);

    assert_eq!(slots.in_flight(SLOT_IDENTITY).await.unwrap(), 1);
    assert!(permit.extend().await.unwrap());
    assert!(permit.release().await.unwrap());
    let metrics = observed.take_metrics();
    // The debugging recorder resets gauges on every snapshot: values read as changes since the
    // previous one.
    assert_eq!(metrics.value(in_flight, &[exports]), -1.0);
    all.push(metrics);

    // A dropped permit gives its slot back too.
    let dropped = slots.try_acquire(SLOT_IDENTITY).await.unwrap().permit();
    drop(dropped.expect("the slot is free again"));
    let metrics = observed.take_metrics();
    metrics.assert_recorded(acquisitions, &[exports, ("outcome", "acquired")]);
    assert_eq!(metrics.value(in_flight, &[exports]), 0.0);
    all.push(metrics);

    // The failure policy decides while the server is gone.
    let mut private = TestContext::private().await;
    let fallback = RateLimiter::builder(
        private.redis().clone(),
        &private.keyspace(),
        Limit::fixed_window(5, MINUTE),
    )
    .name("login")
    .on_redis_error(FailurePolicy::Local(Limit::fixed_window(1, MINUTE)))
    .build()
    .unwrap();
    let fixed = [("name", "login"), ("algorithm", "fixed")];
    private.server().unwrap().kill();
    let decision = fallback.check(IDENTITY).await.unwrap();
    assert_eq!(decision.source(), Source::Fallback);
    let denied = fallback.check(IDENTITY).await.unwrap();
    assert_eq!(denied.outcome(), Outcome::Denied);
    let metrics = observed.take_metrics();
    metrics.assert_recorded(
        decisions,
        &[
            fixed[0],
            fixed[1],
            ("outcome", "allowed"),
            ("source", "fallback"),
        ],
    );
    metrics.assert_recorded(
        decisions,
        &[
            fixed[0],
            fixed[1],
            ("outcome", "denied"),
            ("source", "fallback"),
        ],
    );
    metrics.assert_recorded(
        "redis_patterns_ratelimit_fallback_activations_total",
        &[("name", "login")],
    );
    assert_eq!(
        metrics.value(
            "redis_patterns_ratelimit_fallback_activations_total",
            &[("name", "login")]
        ),
        2.0
    );
    all.push(metrics);

    // A multi-limit check counts one decision, labelled `multi`, however many limits it has;
    // a coalesced one the same.
    for coalesce in [false, true] {
        let multi = redis_ratelimit::MultiLimiter::builder(ctx.redis().clone(), &ctx.keyspace())
            .name("tiers")
            .limit("second", Limit::gcra(1, MINUTE, 1))
            .limit("hour", Limit::fixed_window(100, MINUTE))
            .coalesce(coalesce)
            .build()
            .unwrap();
        let identity = format!("{IDENTITY}-{coalesce}");
        assert!(multi.check(&identity).await.unwrap().is_allowed());
        assert!(!multi.check(&identity).await.unwrap().is_allowed());
    }
    let tiers = [
        ("name", "tiers"),
        ("algorithm", "multi"),
        ("source", "redis"),
    ];
    let metrics = observed.take_metrics();
    for outcome in ["allowed", "denied"] {
        let labels = [tiers[0], tiers[1], ("outcome", outcome), tiers[2]];
        metrics.assert_recorded(decisions, &labels);
        assert_eq!(metrics.value(decisions, &labels), 2.0, "{outcome}");
    }
    all.push(metrics);

    // Every documented metric has a row above.
    for doc in METRICS {
        assert!(
            all.iter().any(|m| m.0.iter().any(|s| s.name == doc.name)),
            "{} has no row",
            doc.name
        );
    }
    documented(&all);
    let spans = observed.take_spans();
    assert_no_field_contains(&spans, &[IDENTITY, SLOT_IDENTITY]);
    for name in [
        "ratelimit.check",
        "ratelimit.acquire",
        "ratelimit.in_flight",
        "ratelimit.extend",
        "ratelimit.release",
    ] {
        assert!(spans.iter().any(|s| s.name == name), "no {name} span");
    }
    assert!(field_has(&spans, "source", "block_cache"));
    assert!(field_has(&spans, "source", "fallback"));
    assert!(field_has(&spans, "outcome", "exceeds_capacity"));
    assert!(field_has(&spans, "outcome", "rejected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_reach_span_fields_only_when_the_limiter_records_them() {
    let observed = observe().await;
    let ctx = TestContext::new().await;
    let mut all = Vec::new();
    for record in [false, true] {
        let limiter = RateLimiter::builder(
            ctx.redis().clone(),
            &ctx.keyspace(),
            Limit::gcra(10, MINUTE, 5),
        )
        .record_identity(record)
        .build()
        .unwrap();
        let slots = ConcurrencyLimiter::builder(ctx.redis().clone(), &ctx.keyspace(), 1)
            .record_identity(record)
            .build()
            .unwrap();
        assert!(limiter.check(IDENTITY).await.unwrap().is_allowed());
        let permit = slots.try_acquire(SLOT_IDENTITY).await.unwrap().permit();
        assert_eq!(slots.in_flight(SLOT_IDENTITY).await.unwrap(), 1);
        assert!(permit.unwrap().release().await.unwrap());
        let metrics = observed.take_metrics();
        metrics.assert_recorded(
            "redis_patterns_ratelimit_decisions_total",
            &[("name", "default"), ("outcome", "allowed")],
        );
        all.push(metrics);
        let spans = observed.take_spans();
        if record {
            assert!(field_has(&spans, "identity", IDENTITY));
            assert!(field_has(&spans, "identity", SLOT_IDENTITY));
            // Only there: not in any other field, nor the key in any field.
            let key = limiter.key(IDENTITY).unwrap();
            let others: Vec<SpanRecord> = spans
                .into_iter()
                .map(|mut s| {
                    s.fields.retain(|(f, _)| f != "identity");
                    s
                })
                .collect();
            assert_no_field_contains(&others, &[IDENTITY, SLOT_IDENTITY, key.as_str()]);
        } else {
            assert_no_field_contains(&spans, &[IDENTITY, SLOT_IDENTITY]);
        }
    }
    documented(&all);
    for bad in ["", "user:42", &"n".repeat(65)] {
        let rate = RateLimiter::builder(
            ctx.redis().clone(),
            &ctx.keyspace(),
            Limit::gcra(1, MINUTE, 1),
        )
        .name(bad)
        .build();
        assert!(matches!(rate, Err(Error::InvalidConfig(_))), "{bad:?}");
        let slots = ConcurrencyLimiter::builder(ctx.redis().clone(), &ctx.keyspace(), 1)
            .name(bad)
            .build();
        assert!(matches!(slots, Err(Error::InvalidConfig(_))), "{bad:?}");
    }
}
