//! What checks do when Redis is gone: the failure policies, against a killed server.

mod common;

use std::time::Duration;

use common::MINUTE;
use redis_ratelimit::{FailurePolicy, Limit, Outcome, RateLimiter, Source};
use redis_test_support::TestContext;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_fail_closed_and_the_fallback_limiter_with_the_server_killed() {
    let mut ctx = TestContext::private().await;
    let limit = Limit::fixed_window(5, MINUTE);
    let build = |policy: FailurePolicy| {
        RateLimiter::builder(ctx.redis().clone(), limit)
            .keys(ctx.keyspace())
            .on_redis_error(policy)
            .build()
            .unwrap()
    };
    let error = build(FailurePolicy::ReturnError);
    let open = build(FailurePolicy::FailOpen);
    let closed = build(FailurePolicy::FailClosed);
    let local = build(FailurePolicy::Local(Limit::fixed_window(2, MINUTE)));
    for limiter in [&error, &open, &closed, &local] {
        let decision = limiter.check("u").await.unwrap();
        assert_eq!(decision.source(), Source::Redis);
    }

    ctx.server().unwrap().kill();

    let err = error.check("u").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    let allowed = open.check("u").await.unwrap();
    assert_eq!(
        (allowed.outcome(), allowed.source()),
        (Outcome::Allowed, Source::FailOpen)
    );

    let denied = closed.check("u").await.unwrap();
    assert_eq!(
        (denied.outcome(), denied.source()),
        (Outcome::Denied, Source::FailClosed)
    );
    assert_eq!(denied.retry_after(), Some(Duration::from_secs(1)));

    // The fallback starts empty and applies its own (smaller) limit per process.
    for expected in [Outcome::Allowed, Outcome::Allowed, Outcome::Denied] {
        let decision = local.check("u").await.unwrap();
        assert_eq!(
            (decision.outcome(), decision.source()),
            (expected, Source::Fallback)
        );
    }
    assert!(local.check("other").await.unwrap().is_allowed());
    // A cost that fits the limit but not the fallback's smaller share is "not now", not "never":
    // the outage ends, the cost will fit again.
    let share = local.check_n("big", 3).await.unwrap();
    assert_eq!(
        (share.outcome(), share.source()),
        (Outcome::Denied, Source::Fallback)
    );
    assert!(share.retry_after().is_some() && !share.can_never_pass());
    // A cost above the capacity is still answered without Redis.
    assert!(error.check_n("u", 6).await.unwrap().can_never_pass());
}
