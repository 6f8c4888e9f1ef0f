//! The scripts' window and refill math against a real server, without sleeping: each test writes
//! a key's state as it would stand some time ago (by the server's clock), then checks. Windows of
//! an hour make the few milliseconds a test takes negligible.

mod support;

use std::time::Duration;

use redis_ratelimit::{Outcome, redis_core::redis};
use redis_test_support::TestContext;
use support::{HOUR, limiter};

const MIN: Duration = Duration::from_secs(60);

/// The server's clock now, in microseconds.
async fn now_us(ctx: &TestContext) -> u64 {
    ctx.redis().server_time().await.unwrap().as_micros() as u64
}

async fn run(ctx: &TestContext, cmd: &mut redis::Cmd) {
    let _: redis::Value = ctx.redis().query(cmd).await.unwrap();
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Stores a GCRA key's theoretical arrival time, living two hours.
async fn set_tat(ctx: &TestContext, key: &redis_ratelimit::redis_core::Key, tat: u64) {
    run(
        ctx,
        redis::cmd("SET")
            .arg(key)
            .arg(tat)
            .arg("PX")
            .arg(us(2 * HOUR) / 1000),
    )
    .await;
}

/// `d` is at most 5 s below `expected` (time passes between writing the state and checking).
fn about(d: Duration, expected: Duration) -> bool {
    d <= expected && d + Duration::from_secs(5) >= expected
}

#[tokio::test]
async fn the_fixed_window_is_its_counters_ttl() {
    let ctx = TestContext::new().await;
    let limiter = limiter(&ctx, redis_ratelimit::Limit::fixed_window(10, HOUR));
    let key = limiter.key("f").unwrap();
    // A full window that opened 59 minutes ago: its counter lives one more minute; denied until then.
    run(
        &ctx,
        redis::cmd("SET").arg(&key).arg(10).arg("PX").arg(60_000),
    )
    .await;
    let denied = limiter.check("f").await.unwrap();
    assert_eq!(denied.outcome(), Outcome::Denied);
    let retry = denied.retry_after().unwrap();
    assert!(about(retry, MIN), "{retry:?}");
    assert_eq!(denied.reset_after(), retry);
    // The window is over once the counter has expired: a whole new one opens.
    run(&ctx, redis::cmd("DEL").arg(&key)).await;
    let fresh = limiter.check_n("f", 4).await.unwrap();
    assert!(fresh.is_allowed());
    assert_eq!(fresh.remaining(), 6);
    assert_eq!(fresh.reset_after(), HOUR, "{fresh:?}");
    let ttl: i64 = ctx
        .redis()
        .query(redis::cmd("PTTL").arg(&key))
        .await
        .unwrap();
    assert!(about(Duration::from_millis(ttl as u64), HOUR), "{ttl}");
    // Later admits count into the same window without moving its end.
    let more = limiter.check_n("f", 6).await.unwrap();
    assert!(more.is_allowed() && more.remaining() == 0, "{more:?}");
    assert!(about(more.reset_after(), HOUR), "{more:?}");
    let used: u64 = ctx
        .redis()
        .query(redis::cmd("GET").arg(&key))
        .await
        .unwrap();
    assert_eq!(used, 10);
    // A counter left without a TTL (written by hand) gets one: its window starts now.
    run(&ctx, redis::cmd("PERSIST").arg(&key)).await;
    let denied = limiter.check("f").await.unwrap();
    assert_eq!(denied.reset_after(), HOUR, "{denied:?}");
    let ttl: i64 = ctx
        .redis()
        .query(redis::cmd("PTTL").arg(&key))
        .await
        .unwrap();
    assert!(ttl > 0, "{ttl}");
}

#[tokio::test]
async fn the_sliding_log_frees_each_unit_exactly_one_window_after_it() {
    let ctx = TestContext::new().await;
    let limiter = limiter(&ctx, redis_ratelimit::Limit::sliding_log(3, HOUR));
    let key = limiter.key("l").unwrap();
    let now = now_us(&ctx).await;
    // Units admitted 61, 59 and 58 minutes ago: the first has left the window.
    let mut zadd = redis::cmd("ZADD");
    zadd.arg(&key);
    for (ago, member) in [(61, "a"), (59, "b"), (58, "c")] {
        zadd.arg(now - us(MIN * ago)).arg(member);
    }
    run(&ctx, &mut zadd).await;
    run(
        &ctx,
        redis::cmd("PEXPIRE").arg(&key).arg(us(3 * MIN) / 1000),
    )
    .await;
    let allowed = limiter.check("l").await.unwrap();
    assert!(allowed.is_allowed(), "{allowed:?}");
    assert_eq!(allowed.remaining(), 0);
    // Full: the next unit waits for `b` (1 minute), a cost of 2 for `c` as well (2 minutes).
    let one = limiter.check("l").await.unwrap();
    assert!(about(one.retry_after().unwrap(), MIN), "{one:?}");
    let two = limiter.check_n("l", 2).await.unwrap();
    assert!(about(two.retry_after().unwrap(), 2 * MIN), "{two:?}");
    // Everything is gone a window after the newest unit.
    assert!(about(two.reset_after(), HOUR), "{two:?}");
}

#[tokio::test]
async fn the_sliding_window_weights_the_previous_window_by_its_overlap() {
    let ctx = TestContext::new().await;
    let limiter = limiter(&ctx, redis_ratelimit::Limit::sliding_window(100, HOUR));
    let key = limiter.key("s").unwrap();
    // 100 units in a window that opened 90 minutes ago: the current window is half over, so
    // (a hair under) half of them still count.
    let start = now_us(&ctx).await - us(HOUR + HOUR / 2);
    run(
        &ctx,
        redis::cmd("SET")
            .arg(&key)
            .arg(format!("{start} 100 0"))
            .arg("PX")
            .arg(us(HOUR) / 1000),
    )
    .await;
    let forty = limiter.check_n("s", 40).await.unwrap();
    assert!(forty.is_allowed(), "{forty:?}");
    assert_eq!(forty.remaining(), 10, "100 - 50 - 40");
    let state: String = ctx
        .redis()
        .query(redis::cmd("GET").arg(&key))
        .await
        .unwrap();
    assert_eq!(
        state,
        format!("{} 40 100", start + us(HOUR)),
        "rolled over by one window"
    );
    // 20 more fit once 40 + 100 * (1 - e) <= 80, e = 0.6: 6 minutes from now.
    let twenty = limiter.check_n("s", 20).await.unwrap();
    assert_eq!(twenty.outcome(), Outcome::Denied);
    assert_eq!(twenty.remaining(), 10);
    assert!(about(twenty.retry_after().unwrap(), 6 * MIN), "{twenty:?}");
    // Nothing counts once the current window's 40 have aged out of the next one: 90 minutes.
    assert!(about(twenty.reset_after(), HOUR + HOUR / 2), "{twenty:?}");
    let ten = limiter.check_n("s", 10).await.unwrap();
    assert!(ten.is_allowed() && ten.remaining() == 0, "{ten:?}");
}

#[tokio::test]
async fn the_token_bucket_and_gcra_refill_from_the_stored_time() {
    let ctx = TestContext::new().await;
    // 2 tokens, one per hour; empty half an hour ago: half a token now.
    let bucket = limiter(&ctx, redis_ratelimit::Limit::token_bucket(2, 1, HOUR));
    let key = bucket.key("b").unwrap();
    let then = now_us(&ctx).await - us(HOUR / 2);
    run(
        &ctx,
        redis::cmd("SET")
            .arg(&key)
            .arg(format!("0 {then}"))
            .arg("PX")
            .arg(us(2 * HOUR) / 1000),
    )
    .await;
    let denied = bucket.check("b").await.unwrap();
    assert!(about(denied.retry_after().unwrap(), HOUR / 2), "{denied:?}");
    assert!(about(denied.reset_after(), HOUR + HOUR / 2), "{denied:?}");

    // One per hour, bursts of 2; the TAT 90 minutes ahead: half a unit of the burst is free.
    let gcra = limiter(&ctx, redis_ratelimit::Limit::gcra(1, HOUR, 2));
    let key = gcra.key("g").unwrap();
    let tat = now_us(&ctx).await + us(HOUR + HOUR / 2);
    set_tat(&ctx, &key, tat).await;
    let denied = gcra.check("g").await.unwrap();
    assert_eq!(denied.remaining(), 0);
    assert!(about(denied.retry_after().unwrap(), HOUR / 2), "{denied:?}");
    assert!(about(denied.reset_after(), HOUR + HOUR / 2), "{denied:?}");
    // Half an hour on, one unit passes and the TAT moves one emission interval past the old one.
    let tat = now_us(&ctx).await + us(HOUR);
    set_tat(&ctx, &key, tat).await;
    let allowed = gcra.check("g").await.unwrap();
    assert!(allowed.is_allowed(), "{allowed:?}");
    let stored: f64 = ctx
        .redis()
        .query(redis::cmd("GET").arg(&key))
        .await
        .unwrap();
    assert_eq!(stored as u64, tat + us(HOUR));
}

#[tokio::test]
async fn gcra_reports_every_remaining_unit_when_the_interval_is_not_whole_microseconds() {
    let ctx = TestContext::new().await;
    // One unit every 142857.142... us, bursts of 5: a fresh key has 4 left after one.
    let gcra = limiter(
        &ctx,
        redis_ratelimit::Limit::gcra(7, Duration::from_secs(1), 5),
    );
    let first = gcra.check("g").await.unwrap();
    assert!(first.is_allowed());
    assert_eq!(first.remaining(), 4, "{first:?}");
    let rest = gcra.check_n("g", 4).await.unwrap();
    assert!(rest.is_allowed(), "{rest:?}");
}
