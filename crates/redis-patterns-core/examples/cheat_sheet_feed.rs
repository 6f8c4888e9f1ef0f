//! Cheat sheet: a capped activity feed in a list. `LPUSH` puts the newest first, `LTRIM` keeps
//! the last 100 in the same round trip (a `MULTI` pipeline), `LRANGE` reads a page; the feed
//! expires when its owner stops being active.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-core --example cheat_sheet_feed`

use redis_core::{KeySpace, Redis, redis};

const KEEP: isize = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = Redis::from_env().await?;
    let keys = KeySpace::new("cheatsheet")?.pattern(&format!("feed{}", std::process::id()))?;
    let feed = keys.key("user:456")?;

    for event in 0..250 {
        let () = redis
            .query_pipeline(
                redis::pipe()
                    .atomic()
                    .cmd("LPUSH")
                    .arg(&feed)
                    .arg(format!("event {event}"))
                    .ignore()
                    .cmd("LTRIM")
                    .arg(&feed)
                    .arg(0)
                    .arg(KEEP - 1)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&feed)
                    .arg(30 * 24 * 3600)
                    .ignore(),
            )
            .await?;
    }
    let len: usize = redis.query(redis::cmd("LLEN").arg(&feed)).await?;
    let page: Vec<String> = redis
        .query(redis::cmd("LRANGE").arg(&feed).arg(0).arg(2))
        .await?;
    println!("{feed}: {len} events kept, newest first: {page:?}");
    assert_eq!(len, KEEP as usize);
    assert_eq!(page, ["event 249", "event 248", "event 247"]);

    let _: i64 = redis.query(redis::cmd("DEL").arg(&feed)).await?;
    Ok(())
}
