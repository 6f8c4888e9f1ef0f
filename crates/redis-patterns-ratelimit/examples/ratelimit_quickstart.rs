//! Limit one user with GCRA, see the decision and its headers, and a cost that can never pass.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-ratelimit --example ratelimit_quickstart`

use std::time::Duration;

use redis_ratelimit::{
    Limit, Outcome, RateLimiter,
    redis_core::{KeySpace, Redis},
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = Redis::open(&url).await?;
    let keys = KeySpace::new("example")?.pattern(&format!("quickstart{}", std::process::id()))?;

    // 10 per second on average, at most 3 at once.
    let limiter =
        RateLimiter::builder(redis, &keys, Limit::gcra(10, Duration::from_secs(1), 3)).build()?;
    println!("user:42 is limited in {}", limiter.key("user:42")?.as_str());

    let mut allowed = 0;
    for i in 1..=5 {
        let decision = limiter.check("user:42").await?;
        println!(
            "check {i}: {:?}, remaining {}, retry after {:?}",
            decision.outcome(),
            decision.remaining(),
            decision.retry_after()
        );
        allowed += u32::from(decision.is_allowed());
    }
    if allowed != 3 {
        return Err(format!("expected the burst of 3 to pass, {allowed} did").into());
    }

    let denied = limiter.check("user:42").await?;
    for (name, value) in denied.headers() {
        println!("{name}: {value}");
    }

    let huge = limiter.check_n("user:42", 10).await?;
    println!("a cost of 10 with a burst of 3: {:?}", huge.outcome());
    if huge.outcome() != Outcome::ExceedsCapacity {
        return Err("a cost above the burst must never pass".into());
    }

    // Wait out the denial and pass again.
    tokio::time::sleep(denied.retry_after().unwrap_or_default()).await;
    let later = limiter.check("user:42").await?;
    println!(
        "after {:?}: {:?}",
        denied.retry_after().unwrap_or_default(),
        later.outcome()
    );
    if !later.is_allowed() {
        return Err("expected the check to pass after retry_after".into());
    }
    Ok(())
}
