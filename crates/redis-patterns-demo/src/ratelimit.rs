//! redis-patterns-ratelimit tour: five checks of one identity against a limit of 3 with every algorithm,
//! a cost that can never pass, and a concurrency limit. Keys are
//! `<section>:ratelimit:<algorithm>:{<identity>}`.

use std::time::Duration;

use redis_ratelimit::{Acquired, ConcurrencyLimiter, Limit, RateLimiter};

use crate::Tour;

pub(crate) async fn run(tour: Tour) -> anyhow::Result<()> {
    let ten_s = Duration::from_secs(10);
    let limits = [
        Limit::fixed_window(3, ten_s),
        Limit::sliding_log(3, ten_s),
        Limit::sliding_window(3, ten_s),
        Limit::token_bucket(3, 1, ten_s),
        Limit::gcra(1, ten_s, 3),
    ];
    for limit in limits {
        let limiter = RateLimiter::builder(tour.redis.clone(), &tour.keys, limit).build()?;
        let mut line = Vec::new();
        let mut allowed = 0;
        for _ in 0..5 {
            let d = limiter.check("alice").await?;
            allowed += u32::from(d.is_allowed());
            line.push(match d.retry_after() {
                None => format!("ok({} left)", d.remaining()),
                Some(wait) => format!("429(retry {:.1}s)", wait.as_secs_f64()),
            });
        }
        anyhow::ensure!(allowed == 3, "{limit:?}: {allowed} of 5 passed, expected 3");
        println!("   {:<8} {}", limit.algorithm().name(), line.join(" "));
    }

    let gcra =
        RateLimiter::builder(tour.redis.clone(), &tour.keys, Limit::gcra(1, ten_s, 3)).build()?;
    let huge = gcra.check_n("bob", 4).await?;
    anyhow::ensure!(
        huge.can_never_pass(),
        "a cost of 4 with a burst of 3 must never pass"
    );
    println!(
        "   cost 4 against a burst of 3: {:?} (no round trip)",
        huge.outcome()
    );

    let jobs = ConcurrencyLimiter::builder(tour.redis.clone(), &tour.keys, 2)
        .lease(ten_s)
        .build()?;
    let first = jobs.try_acquire("tenant:7").await?.permit();
    let second = jobs.try_acquire("tenant:7").await?.permit();
    let third = jobs.try_acquire("tenant:7").await?;
    anyhow::ensure!(first.is_some() && second.is_some(), "two permits expected");
    let Acquired::Denied(busy) = third else {
        anyhow::bail!("a third permit was granted with a limit of 2");
    };
    println!(
        "   concurrency: 2 permits held, the third denied (a lease frees within {:.0}s)",
        busy.retry_after().unwrap_or_default().as_secs_f64()
    );
    if let Some(permit) = first {
        permit.release().await?;
    }
    let again = jobs.try_acquire("tenant:7").await?;
    anyhow::ensure!(
        matches!(again, Acquired::Granted(_)),
        "release should free a slot"
    );
    println!("   after one release a new permit is granted");
    Ok(())
}
