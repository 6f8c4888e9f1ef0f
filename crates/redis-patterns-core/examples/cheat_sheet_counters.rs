//! Cheat sheet: counters. `INCR`/`INCRBY` are atomic on the server, so concurrent clients never
//! lose an update; a per-window counter (page views per minute) gets its TTL with the first
//! increment (`EXPIRE ... NX`, Redis 7) in the same round trip, so it never outlives its window
//! by more than the TTL. For limits, use `redis-patterns-ratelimit` rather than a bare counter.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-core --example cheat_sheet_counters`

use redis_core::{KeySpace, Redis, redis};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = Redis::from_env().await?;
    let keys = KeySpace::new("cheatsheet")?.pattern(&format!("views{}", std::process::id()))?;
    let minute = redis.server_time().await?.as_secs() / 60;
    let counter = keys.key(&format!("page:home:{minute}"))?;

    // 10 tasks × 100 increments over the shared connection: none is lost.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (redis, counter) = (redis.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                let (_, _): (i64, bool) = redis
                    .query_pipeline(
                        redis::pipe()
                            .cmd("INCR")
                            .arg(&counter)
                            .cmd("EXPIRE")
                            .arg(&counter)
                            .arg(120)
                            .arg("NX"),
                    )
                    .await?;
            }
            Ok::<_, redis_core::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let views: i64 = redis.query(redis::cmd("GET").arg(&counter)).await?;
    let ttl: i64 = redis.query(redis::cmd("TTL").arg(&counter)).await?;
    println!("{counter}: {views} views, expires in {ttl} s");
    assert_eq!(views, 1000);
    assert!((1..=120).contains(&ttl));

    let by_ten: i64 = redis
        .query(redis::cmd("INCRBY").arg(&counter).arg(10))
        .await?;
    assert_eq!(by_ten, 1010);

    let _: i64 = redis.query(redis::cmd("DEL").arg(&counter)).await?;
    Ok(())
}
