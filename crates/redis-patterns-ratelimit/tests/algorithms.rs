//! Every algorithm against a real server: no over-admission, refill, costs, TTLs, changing limits.

mod support;

use std::time::{Duration, Instant};

use redis_ratelimit::{
    Acquired, Algorithm, ConcurrencyLimiter, Error, Limit, Outcome, RateLimiter, Source,
};
use redis_test_support::{TestContext, wait_for};
use support::{HOUR, MINUTE, every_algorithm, limiter};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_the_limit_passes_under_50_concurrent_tasks_for_every_algorithm() {
    let ctx = TestContext::new().await;
    for limit in every_algorithm(20) {
        let limiter = limiter(&ctx, limit);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let mut allowed = 0;
                    for _ in 0..3 {
                        if limiter.check("shared").await.unwrap().is_allowed() {
                            allowed += 1;
                        }
                    }
                    allowed
                })
            })
            .collect();
        let mut allowed = 0;
        for task in tasks {
            allowed += task.await.unwrap();
        }
        assert_eq!(allowed, 20, "{limit:?}");
        let after = limiter.check("shared").await.unwrap();
        assert_eq!(after.outcome(), Outcome::Denied, "{limit:?}");
        assert_eq!(after.remaining(), 0, "{limit:?}");
        assert!(after.retry_after().unwrap() > Duration::ZERO, "{limit:?}");
    }

    let concurrency = ConcurrencyLimiter::builder(ctx.redis().clone(), &ctx.keyspace(), 7)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let concurrency = concurrency.clone();
            tokio::spawn(async move { concurrency.try_acquire("shared").await.unwrap().permit() })
        })
        .collect();
    let mut permits = Vec::new();
    for task in tasks {
        permits.extend(task.await.unwrap());
    }
    assert_eq!(permits.len(), 7);
    assert_eq!(concurrency.in_flight("shared").await.unwrap(), 7);
    for permit in permits {
        assert!(permit.release().await.unwrap());
    }
    assert_eq!(concurrency.in_flight("shared").await.unwrap(), 0);
}

#[tokio::test]
async fn decisions_report_limit_remaining_and_reset() {
    let ctx = TestContext::new().await;
    let limiter = limiter(&ctx, Limit::fixed_window(3, MINUTE));
    let first = limiter.check("user").await.unwrap();
    assert!(first.is_allowed());
    assert_eq!((first.limit(), first.remaining()), (3, 2));
    assert_eq!(first.source(), Source::Redis);
    assert!(
        first.reset_after() <= MINUTE && first.reset_after() > MINUTE - Duration::from_secs(10)
    );
    assert_eq!(first.reset_secs(), 60);
    let second = limiter.check_n("user", 2).await.unwrap();
    assert_eq!(second.remaining(), 0);
    let denied = limiter.check("user").await.unwrap();
    assert_eq!(denied.outcome(), Outcome::Denied);
    let retry = denied.retry_after().unwrap();
    assert!(
        retry <= MINUTE && retry > Duration::from_secs(50),
        "{retry:?}"
    );
    let headers = denied.headers();
    assert_eq!(headers[0], ("RateLimit-Limit", "3".to_owned()));
    assert_eq!(headers[1], ("RateLimit-Remaining", "0".to_owned()));
    assert_eq!(headers[3].0, "Retry-After");
    // Another identity is untouched.
    assert_eq!(limiter.check("other").await.unwrap().remaining(), 2);
}

#[tokio::test]
async fn a_cost_above_the_capacity_can_never_pass_and_touches_nothing() {
    let ctx = TestContext::new().await;
    for limit in every_algorithm(5) {
        let limiter = limiter(&ctx, limit);
        let never = limiter.check_n("big", 6).await.unwrap();
        assert_eq!(never.outcome(), Outcome::ExceedsCapacity, "{limit:?}");
        assert!(never.can_never_pass() && never.retry_after().is_none());
        let fits = limiter.check_n("big", 5).await.unwrap();
        assert!(fits.is_allowed(), "{limit:?}");
        let later = limiter.check_n("big", 5).await.unwrap();
        assert_eq!(later.outcome(), Outcome::Denied, "{limit:?}");
    }
    // The scripts enforce it too, for callers that drive them directly.
    let key = ctx.keyspace().key("direct").unwrap();
    let reply: Vec<i64> = redis_ratelimit::script(Algorithm::Gcra)
        .call()
        .key(&key)
        .arg(5)
        .arg(1_000_000)
        .arg(6)
        .arg(1)
        .invoke(ctx.redis())
        .await
        .unwrap();
    assert_eq!(reply, [-1, 0, 0, 0]);
}

#[tokio::test]
async fn token_bucket_and_gcra_refill_at_their_rate() {
    let ctx = TestContext::new().await;
    let unit = Duration::from_secs(1);
    // Both: one unit per second, at most 2 at once.
    for limit in [Limit::token_bucket(2, 1, unit), Limit::gcra(1, unit, 2)] {
        let limiter = limiter(&ctx, limit);
        let start = Instant::now();
        assert!(limiter.check("r").await.unwrap().is_allowed(), "{limit:?}");
        assert!(limiter.check("r").await.unwrap().is_allowed(), "{limit:?}");
        let denied = limiter.check("r").await.unwrap();
        let spent = start.elapsed();
        assert_eq!(denied.outcome(), Outcome::Denied, "{limit:?}");
        let (retry, reset) = (denied.retry_after().unwrap(), denied.reset_after());
        // The first unit comes back one second after the first admit, which was at most
        // `spent` ago; the second one a second later.
        assert!(
            retry <= unit && retry + spent >= unit,
            "{limit:?}: {retry:?} after {spent:?}"
        );
        assert!(
            reset <= 2 * unit && reset + spent >= 2 * unit,
            "{limit:?}: {reset:?} after {spent:?}"
        );
        let gap = reset - retry;
        assert!(
            gap >= unit - Duration::from_micros(2) && gap <= unit + Duration::from_micros(2),
            "{limit:?}: one unit refills in {gap:?}"
        );
        // The unit is back once `retry_after` has passed (at least that long on the server).
        tokio::time::sleep(retry).await;
        let refilled = limiter.check("r").await.unwrap();
        assert!(refilled.is_allowed(), "{limit:?}: {refilled:?}");
        // A fresh identity gets the whole burst at once.
        let fresh = limiter.check_n("fresh", 2).await.unwrap();
        assert!(fresh.is_allowed() && fresh.remaining() == 0, "{limit:?}");
    }
}

#[tokio::test]
async fn the_fixed_window_restarts_at_its_boundary_but_the_sliding_log_does_not() {
    let ctx = TestContext::new().await;
    let window = Duration::from_secs(2);
    let fixed = limiter(&ctx, Limit::fixed_window(3, window));
    let log = limiter(&ctx, Limit::sliding_log(3, window));
    // One unit at the start of the window, two about half-way through.
    assert!(fixed.check("b").await.unwrap().is_allowed());
    assert!(log.check("b").await.unwrap().is_allowed());
    tokio::time::sleep(window / 2).await;
    for limiter in [&fixed, &log] {
        assert!(limiter.check_n("b", 2).await.unwrap().is_allowed());
    }
    // When the fixed window ends, a full new one opens: three more pass at once, so six passed
    // within about one window.
    let first = wait_for("the fixed window to end", Duration::from_secs(20), || {
        let fixed = fixed.clone();
        async move { Some(fixed.check("b").await.unwrap()).filter(|d| d.is_allowed()) }
    })
    .await;
    assert_eq!(first.remaining(), 2);
    assert!(fixed.check_n("b", 2).await.unwrap().is_allowed());
    // The sliding log frees only the unit that left the window; the two later ones still count.
    wait_for(
        "the first unit to leave the log",
        Duration::from_secs(20),
        || {
            let log = log.clone();
            async move { log.check("b").await.unwrap().is_allowed().then_some(()) }
        },
    )
    .await;
    let denied = log.check("b").await.unwrap();
    assert_eq!(denied.outcome(), Outcome::Denied);
    assert!(denied.retry_after().unwrap() <= window);
}

#[tokio::test]
async fn changing_a_limit_keeps_the_state() {
    let ctx = TestContext::new().await;
    for five in every_algorithm(5) {
        let limiter = limiter(&ctx, five);
        assert!(limiter.check_n("c", 5).await.unwrap().is_allowed());
        assert!(!limiter.check("c").await.unwrap().is_allowed());

        let ten = match five.algorithm() {
            Algorithm::FixedWindow => Limit::fixed_window(10, MINUTE),
            Algorithm::SlidingLog => Limit::sliding_log(10, MINUTE),
            Algorithm::SlidingWindow => Limit::sliding_window(10, MINUTE),
            Algorithm::TokenBucket => Limit::token_bucket(10, 1, HOUR),
            _ => Limit::gcra(1, HOUR, 10),
        };
        let raised = limiter.with_limit(ten).unwrap();
        let decision = raised.check("c").await.unwrap();
        if five.algorithm() == Algorithm::TokenBucket {
            // A bigger bucket is not a fuller one: the tokens already taken stay taken.
            assert!(!decision.is_allowed(), "{five:?}");
        } else {
            // What was used counts against the new limit: 6 of 10.
            assert!(decision.is_allowed(), "{five:?}");
            assert_eq!(decision.remaining(), 4, "{five:?}");
        }
        assert_eq!(decision.limit(), 10);
        // Lowering it again does not wipe anything either.
        let lowered = RateLimiter::builder(ctx.redis().clone(), &ctx.keyspace(), five)
            .build()
            .unwrap();
        assert!(!lowered.check("c").await.unwrap().is_allowed(), "{five:?}");
    }
}

async fn pttl(ctx: &TestContext, key: &str) -> i64 {
    ctx.redis()
        .query(redis_ratelimit::redis_core::redis::cmd("PTTL").arg(key))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tightened_limit_keeps_the_state_past_the_old_ttl() {
    let ctx = TestContext::new().await;
    let second = Duration::from_secs(1);
    // Used up under a limit whose keys live about a second, then checked under a limit that
    // remembers for hours: the denial must keep the key alive that long, or the identity would
    // get a fresh limit when the old TTL runs out. (Not the fixed window: its counter's TTL is
    // the window, so a new window length applies from the next window on.)
    let pairs = [
        (Limit::sliding_log(3, second), Limit::sliding_log(3, HOUR)),
        (
            Limit::sliding_window(3, second),
            Limit::sliding_window(3, HOUR),
        ),
        (
            Limit::token_bucket(3, 3, second),
            Limit::token_bucket(3, 1, HOUR),
        ),
    ];
    let mut tightened = Vec::new();
    for (old, new) in pairs {
        let limiter = limiter(&ctx, old);
        assert!(
            limiter.check_n("t", 3).await.unwrap().is_allowed(),
            "{old:?}"
        );
        let key = limiter.key("t").unwrap();
        // At most two windows (the sliding window keeps the previous one).
        assert!(pttl(&ctx, key.as_str()).await <= 2000, "{old:?}");
        let new = limiter.with_limit(new).unwrap();
        let denied = new.check("t").await.unwrap();
        assert_eq!(denied.outcome(), Outcome::Denied, "{new:?}");
        assert!(denied.reset_after() > MINUTE, "{new:?}: {denied:?}");
        let mut keys = vec![key.as_str().to_owned()];
        if old.algorithm() == Algorithm::SlidingLog {
            keys.push(key.companion("seq").as_str().to_owned());
        }
        for key in keys {
            let ttl = pttl(&ctx, &key).await;
            assert!(
                ttl > MINUTE.as_millis() as i64,
                "{new:?}: {key} lives {ttl} ms"
            );
        }
        tightened.push(new);
    }
    // Past the old TTLs the usage still counts.
    tokio::time::sleep(2 * second + Duration::from_millis(200)).await;
    for limiter in tightened {
        let decision = limiter.check("t").await.unwrap();
        assert_eq!(decision.outcome(), Outcome::Denied, "{:?}", limiter.limit());
    }
}

#[tokio::test]
async fn every_key_carries_a_ttl() {
    let ctx = TestContext::new().await;
    for limit in every_algorithm(3) {
        let limiter = limiter(&ctx, limit);
        for _ in 0..5 {
            limiter.check("ttl").await.unwrap();
        }
    }
    let concurrency = ConcurrencyLimiter::builder(ctx.redis().clone(), &ctx.keyspace(), 2)
        .build()
        .unwrap();
    let permit = concurrency
        .try_acquire("ttl")
        .await
        .unwrap()
        .permit()
        .unwrap();
    assert!(permit.extend().await.unwrap());
    let keys = ctx.keys().await;
    assert_eq!(keys.len(), 7, "{keys:?}"); // five algorithms, the log's seq, concurrency
    for key in keys {
        let ttl: i64 = ctx
            .redis()
            .query(redis_ratelimit::redis_core::redis::cmd("PTTL").arg(&key))
            .await
            .unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
        assert!(ttl <= HOUR.as_millis() as i64 * 3, "{key}: {ttl}");
    }
}

#[tokio::test]
async fn invalid_config_and_arguments_are_typed_errors() {
    let ctx = TestContext::new().await;
    let redis = ctx.redis().clone();
    let keys = ctx.keyspace();
    for bad in [
        Limit::fixed_window(0, MINUTE),
        Limit::sliding_window(10, Duration::ZERO),
        Limit::gcra(10, MINUTE, 0),
        Limit::token_bucket(10, 0, MINUTE),
    ] {
        let err = RateLimiter::builder(redis.clone(), &keys, bad)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{bad:?}: {err:?}");
    }
    let err = RateLimiter::builder(redis.clone(), &keys, Limit::gcra(1, MINUTE, 1))
        .on_redis_error(redis_ratelimit::FailurePolicy::Local(Limit::gcra(
            1,
            Duration::ZERO,
            1,
        )))
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
    for (max, lease) in [(0, MINUTE), (1, Duration::ZERO)] {
        let err = ConcurrencyLimiter::builder(redis.clone(), &keys, max)
            .lease(lease)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
    }
    let limiter = limiter(&ctx, Limit::gcra(1, MINUTE, 1));
    assert!(matches!(
        limiter.check_n("x", 0).await,
        Err(Error::InvalidArgument(_))
    ));
    let err = limiter.check("").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Core(redis_ratelimit::redis_core::Error::InvalidKey(_))
        ),
        "{err:?}"
    );
    assert!(limiter.with_limit(Limit::fixed_window(1, MINUTE)).is_err());
}

#[tokio::test]
async fn a_denied_key_is_answered_by_the_block_cache_without_a_round_trip() {
    let ctx = TestContext::new().await;
    let limiter = RateLimiter::builder(
        ctx.redis().clone(),
        &ctx.keyspace(),
        Limit::fixed_window(1, MINUTE),
    )
    .block_cache(100)
    .build()
    .unwrap();
    assert!(limiter.check("hot").await.unwrap().is_allowed());
    let denied = limiter.check("hot").await.unwrap();
    assert_eq!(
        (denied.outcome(), denied.source()),
        (Outcome::Denied, Source::Redis)
    );
    // Wipe the state on the server: only a local answer can still deny.
    let _: i64 = ctx
        .redis()
        .query(redis_ratelimit::redis_core::redis::cmd("DEL").arg(limiter.key("hot").unwrap()))
        .await
        .unwrap();
    let cached = limiter.check("hot").await.unwrap();
    assert_eq!(
        (cached.outcome(), cached.source()),
        (Outcome::Denied, Source::BlockCache)
    );
    assert!(cached.retry_after().unwrap() <= denied.retry_after().unwrap());
    // Other keys still go to Redis.
    assert_eq!(limiter.check("cold").await.unwrap().source(), Source::Redis);

    // A short block runs out and the next check asks Redis again.
    let short = RateLimiter::builder(
        ctx.redis().clone(),
        &ctx.keyspace().pattern("short").unwrap(),
        Limit::fixed_window(1, Duration::from_secs(1)),
    )
    .block_cache(100)
    .build()
    .unwrap();
    assert!(short.check("k").await.unwrap().is_allowed());
    assert!(!short.check("k").await.unwrap().is_allowed());
    let again = wait_for("the block to run out", Duration::from_secs(20), || {
        let short = short.clone();
        async move { Some(short.check("k").await.unwrap()).filter(|d| d.is_allowed()) }
    })
    .await;
    assert_eq!(again.source(), Source::Redis);
}

#[tokio::test]
async fn concurrency_permits_free_their_slot_on_release_drop_or_expiry() {
    let ctx = TestContext::new().await;
    // Two limiters over one key space: permits that must run out while the test waits, and
    // permits that must not run out however slow the machine is.
    let lease = Duration::from_secs(2);
    let build = |lease: Duration| {
        ConcurrencyLimiter::builder(ctx.redis().clone(), &ctx.keyspace(), 1)
            .lease(lease)
            .build()
            .unwrap()
    };
    let (short, long) = (build(lease), build(HOUR));
    let permit = long.try_acquire("job").await.unwrap().permit().unwrap();
    assert_eq!(permit.decision().remaining(), 0);
    let Acquired::Denied(busy) = long.try_acquire("job").await.unwrap() else {
        panic!("a second permit was granted");
    };
    assert!(busy.retry_after().unwrap() <= HOUR);
    assert!(permit.release().await.unwrap());

    // Dropped: released in the background.
    drop(long.try_acquire("job").await.unwrap().permit().unwrap());
    wait_for(
        "the dropped permit to be released",
        Duration::from_secs(20),
        || {
            let long = long.clone();
            async move { (long.in_flight("job").await.unwrap() == 0).then_some(()) }
        },
    )
    .await;

    // A crashed holder: never released, its lease runs out.
    let crashed = short.try_acquire("job").await.unwrap().permit().unwrap();
    std::mem::forget(crashed);
    let Acquired::Denied(busy) = long.try_acquire("job").await.unwrap() else {
        panic!("granted while a lease was alive");
    };
    assert!(busy.retry_after().unwrap() <= lease);
    let next = wait_for("the lease to run out", Duration::from_secs(20), || {
        let long = long.clone();
        async move { long.try_acquire("job").await.unwrap().permit() }
    })
    .await;
    assert!(next.extend().await.unwrap());
    assert!(next.release().await.unwrap());

    // A holder that outlived its lease has lost the slot: it can neither extend nor release
    // it, and releasing does not free the slot of the one who took it over.
    let lost = short.try_acquire("job").await.unwrap().permit().unwrap();
    let taker = wait_for("the lease to run out", Duration::from_secs(20), || {
        let long = long.clone();
        async move { long.try_acquire("job").await.unwrap().permit() }
    })
    .await;
    assert!(!lost.extend().await.unwrap());
    assert!(!lost.release().await.unwrap());
    assert_eq!(long.in_flight("job").await.unwrap(), 1);
    assert!(long.try_acquire("job").await.unwrap().permit().is_none());
    assert!(taker.release().await.unwrap());
    assert_eq!(long.in_flight("job").await.unwrap(), 0);
}

#[test]
fn limiters_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<RateLimiter>();
    check::<ConcurrencyLimiter>();
}
