//! Memory per key after `limit` admits, per algorithm (`MEMORY USAGE`). Run with `--nocapture`
//! to print the table the README quotes.

use std::time::Duration;

use redis_ratelimit::{ConcurrencyLimiter, Limit, RateLimiter, redis_core::redis};
use redis_test_support::TestContext;

async fn usage(ctx: &TestContext, key: &str) -> i64 {
    ctx.redis()
        .query(
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn memory_per_key_after_limit_admits() {
    let ctx = TestContext::new().await;
    let minute = Duration::from_secs(60);
    let mut rows = Vec::new();
    for limit in [
        Limit::fixed_window(100, minute),
        Limit::sliding_log(100, minute),
        Limit::sliding_window(100, minute),
        Limit::token_bucket(100, 1, minute),
        Limit::gcra(1, minute, 100),
    ] {
        let limiter = RateLimiter::builder(ctx.redis().clone(), &ctx.keyspace(), limit)
            .build()
            .unwrap();
        for _ in 0..100 {
            assert!(limiter.check("user:42").await.unwrap().is_allowed());
        }
        let key = limiter.key("user:42").unwrap();
        let mut bytes = usage(&ctx, key.as_str()).await;
        if limit.algorithm() == redis_ratelimit::Algorithm::SlidingLog {
            bytes += usage(&ctx, key.companion("seq").as_str()).await;
        }
        rows.push((limit.algorithm().name(), bytes));
    }
    let concurrency = ConcurrencyLimiter::builder(ctx.redis().clone(), &ctx.keyspace(), 100)
        .build()
        .unwrap();
    let mut permits = Vec::new();
    for _ in 0..100 {
        permits.push(
            concurrency
                .try_acquire("user:42")
                .await
                .unwrap()
                .permit()
                .unwrap(),
        );
    }
    let key = ctx
        .keyspace()
        .pattern("ratelimit")
        .unwrap()
        .pattern("concurrency")
        .unwrap()
        .key("user:42")
        .unwrap();
    rows.push(("concurrency", usage(&ctx, key.as_str()).await));
    for (name, bytes) in &rows {
        println!("| {name} | {bytes} B |");
    }
    let of = |n: &str| rows.iter().find(|(name, _)| *name == n).unwrap().1;
    // O(1) algorithms stay small; the log and the leases grow with the limit.
    for small in ["fixed", "sliding", "bucket", "gcra"] {
        assert!(of(small) < 200, "{small}: {}", of(small));
    }
    assert!(of("log") > 4 * of("fixed"));
    assert!(of("concurrency") > 4 * of("gcra"));
    for permit in permits {
        permit.release().await.unwrap();
    }
}
