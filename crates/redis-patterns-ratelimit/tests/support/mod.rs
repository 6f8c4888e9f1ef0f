//! Shared helpers of the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use redis_ratelimit::{Limit, RateLimiter};
use redis_test_support::TestContext;

pub const MINUTE: Duration = Duration::from_secs(60);
pub const HOUR: Duration = Duration::from_secs(3600);

/// One limit of every algorithm, each with a capacity of `n` and nothing refilled during a test.
pub fn every_algorithm(n: u64) -> Vec<Limit> {
    vec![
        Limit::fixed_window(n, MINUTE),
        Limit::sliding_log(n, MINUTE),
        Limit::sliding_window(n, MINUTE),
        Limit::token_bucket(n, 1, HOUR),
        Limit::gcra(1, HOUR, n),
    ]
}

pub fn limiter(ctx: &TestContext, limit: Limit) -> RateLimiter {
    RateLimiter::builder(ctx.redis().clone(), &ctx.keyspace(), limit)
        .build()
        .unwrap()
}
