//! What checks do when Redis is gone: the failure policies, against a killed server.

mod support;

use std::time::Duration;

use redis_ratelimit::{
    ConcurrencyLimiter, ErrorPredicates, FailurePolicy, Limit, Outcome, RateLimiter, Source,
    redis_core::{Config, Redis},
};
use redis_test_support::{FaultProxy, TestContext, wait_for};
use support::{HOUR, MINUTE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_fail_closed_and_the_fallback_limiter_with_the_server_killed() {
    let mut ctx = TestContext::private().await;
    let limit = Limit::fixed_window(5, MINUTE);
    let build = |policy: FailurePolicy| {
        RateLimiter::builder(ctx.redis().clone(), &ctx.keyspace(), limit)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_cancelled_in_flight_does_not_hold_the_slot_until_its_lease_ends() {
    let mut ctx = TestContext::private().await;
    let proxy = FaultProxy::start(ctx.server().unwrap().port()).await;
    let slow = Redis::open(&proxy.url()).await.unwrap();
    let build = |redis: Redis| {
        ConcurrencyLimiter::builder(redis, &ctx.keyspace(), 1)
            .lease(HOUR)
            .build()
            .unwrap()
    };
    let (fast, slow) = (build(ctx.redis().clone()), build(slow));
    // Load both scripts on the server first, so the acquire below is one EVALSHA.
    let permit = slow.try_acquire("job").await.unwrap().permit().unwrap();
    assert!(permit.release().await.unwrap());

    // The acquire reaches the server (and takes the slot) only after its caller gave up.
    proxy.set_latency(Duration::from_millis(500));
    let cancelled = tokio::time::timeout(Duration::from_millis(100), slow.try_acquire("job")).await;
    assert!(cancelled.is_err(), "the acquire should still be in flight");
    // The lease it took is given back well before its hour is up. Asked over the slow
    // connection, whose requests are answered in order, so only after the acquire has landed.
    wait_for(
        "the cancelled acquire's lease to be released",
        Duration::from_secs(20),
        || {
            let slow = slow.clone();
            async move { (slow.in_flight("job").await.unwrap() == 0).then_some(()) }
        },
    )
    .await;
    assert!(fast.try_acquire("job").await.unwrap().permit().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_is_answered_by_the_policy_within_the_response_time_out() {
    let mut ctx = TestContext::private().await;
    let proxy = FaultProxy::start(ctx.server().unwrap().port()).await;
    let config = Config::builder()
        .url(proxy.url())
        .response_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let redis = Redis::connect(&config).await.unwrap();
    let limit = Limit::gcra(1, MINUTE, 5);
    let build = |policy: FailurePolicy| {
        RateLimiter::builder(redis.clone(), &ctx.keyspace(), limit)
            .on_redis_error(policy)
            .build()
            .unwrap()
    };
    let (open, closed) = (
        build(FailurePolicy::FailOpen),
        build(FailurePolicy::FailClosed),
    );
    assert_eq!(open.check("u").await.unwrap().source(), Source::Redis);

    // Connections stay open, nothing answers: a partition, or a server stuck in a long script.
    proxy.set_blackhole(true);
    let hung = |limiter: RateLimiter| async move {
        tokio::time::timeout(Duration::from_secs(10), limiter.check("u"))
            .await
            .expect("a check must not hang with the server")
            .unwrap()
    };
    let allowed = hung(open.clone()).await;
    assert_eq!(
        (allowed.outcome(), allowed.source()),
        (Outcome::Allowed, Source::FailOpen)
    );
    let denied = hung(closed.clone()).await;
    assert_eq!(
        (denied.outcome(), denied.source()),
        (Outcome::Denied, Source::FailClosed)
    );

    // Healed: Redis decides again, each check getting its own reply.
    proxy.set_blackhole(false);
    proxy.reset_all();
    wait_for("Redis to decide again", Duration::from_secs(20), || {
        let open = open.clone();
        async move { (open.check("probe").await.unwrap().source() == Source::Redis).then_some(()) }
    })
    .await;
    for (n, identity) in ["a", "b", "c"].into_iter().enumerate() {
        let cost = n as u64 + 1;
        let decision = closed.check_n(identity, cost).await.unwrap();
        assert_eq!(
            (decision.source(), decision.remaining()),
            (Source::Redis, 5 - cost)
        );
    }
}
