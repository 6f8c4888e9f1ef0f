//! Coalesced checks, one-by-one checks and the in-process mirror (`local.rs`) decide the same
//! random sequences the same way, against a real server (the mirror through the crate's hidden
//! `__private` module). Periods of an hour keep the few milliseconds a run takes out of the decisions.

use std::time::Duration;

use redis_core::Redis;
use redis_test_support::TestContext;

use redis_ratelimit::{__private::LocalLimiter, Decision, Limit, RateLimiter};

const HOUR: Duration = Duration::from_secs(3600);

/// A small deterministic generator (xorshift64*): the sequences are reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn limits() -> Vec<Limit> {
    vec![
        Limit::fixed_window(7, HOUR),
        Limit::sliding_log(7, HOUR),
        Limit::sliding_window(7, HOUR),
        Limit::token_bucket(7, 1, HOUR),
        Limit::gcra(1, HOUR, 7),
    ]
}

fn build(redis: &Redis, prefix: &str, limit: Limit, coalesce: bool) -> RateLimiter {
    let keys = redis_core::KeySpace::new(prefix).unwrap();
    RateLimiter::builder(redis.clone(), &keys, limit)
        .coalesce(coalesce)
        .build()
        .unwrap()
}

/// Outcome and remaining exactly; the waits within a few seconds (the server's clock and the
/// mirror's differ by the time the run takes).
fn same(a: &Decision, b: &Decision) -> bool {
    let close = |x: Duration, y: Duration| x.abs_diff(y) <= Duration::from_secs(5);
    a.outcome() == b.outcome()
        && a.remaining() == b.remaining()
        && close(a.reset_after(), b.reset_after())
        && close(
            a.retry_after().unwrap_or_default(),
            b.retry_after().unwrap_or_default(),
        )
}

/// Sends `checks` through a coalescing limiter in waves of random size: each wave is spawned in
/// order on this current-thread runtime, so its checks queue in that order.
async fn coalesced(
    limiter: &RateLimiter,
    checks: &[(String, u64)],
    rng: &mut Rng,
) -> Vec<Decision> {
    let mut decisions = Vec::new();
    let mut rest = checks;
    while !rest.is_empty() {
        let wave = (1 + rng.below(12) as usize).min(rest.len());
        let tasks: Vec<_> = rest[..wave]
            .iter()
            .map(|(id, cost)| {
                let (limiter, id, cost) = (limiter.clone(), id.clone(), *cost);
                tokio::spawn(async move { limiter.check_n(&id, cost).await.unwrap() })
            })
            .collect();
        for task in tasks {
            decisions.push(task.await.unwrap());
        }
        rest = &rest[wave..];
    }
    decisions
}

#[tokio::test(flavor = "current_thread")]
async fn coalesced_one_by_one_and_the_mirror_decide_alike() {
    let ctx = TestContext::new().await;
    let redis = ctx.redis();
    for seed in 1..=6u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for (n, limit) in limits().into_iter().enumerate() {
            let prefix = format!("{}s{seed}l{n}", ctx.prefix());
            let one = build(redis, &format!("{prefix}one"), limit, false);
            let many = build(redis, &format!("{prefix}many"), limit, true);
            let mirror = LocalLimiter::new(limit);
            let checks: Vec<(String, u64)> = (0..40)
                .map(|_| (format!("id{}", rng.below(3)), 1 + rng.below(8)))
                .collect();
            let mut expected = Vec::new();
            for (k, (id, cost)) in checks.iter().enumerate() {
                let d = one.check_n(id, *cost).await.unwrap();
                let m = mirror.check_at(id, *cost, 1_000_000 + k as u64);
                assert!(
                    same(&d, &m),
                    "{limit:?} #{k} ({id}, {cost}): {d:?} vs mirror {m:?}"
                );
                expected.push(d);
            }
            let got = coalesced(&many, &checks, &mut rng).await;
            for (k, (d, c)) in expected.iter().zip(&got).enumerate() {
                assert!(
                    same(d, c),
                    "{limit:?} #{k} {:?}: {d:?} vs coalesced {c:?}",
                    checks[k]
                );
            }
        }
    }
}
