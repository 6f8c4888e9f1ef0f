//! Cheat sheet: a leaderboard in a sorted set. `ZINCRBY` adds points, `ZREVRANGE ... WITHSCORES`
//! reads the top, `ZREVRANK` a player's place; the board expires with its period (a weekly
//! board lives a week and a day).
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-core --example cheat_sheet_leaderboard`

use redis_core::{KeySpace, Redis, redis};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = Redis::from_env().await?;
    // One key per period: `<app>:scores:{2026-w48}`.
    let keys = KeySpace::new("cheatsheet")?.pattern(&format!("scores{}", std::process::id()))?;
    let board = keys.key("2026-w48")?;

    // Points arrive one game at a time; the first write also sets the board's TTL (8 days).
    for (player, points) in [
        ("ada", 30),
        ("bob", 10),
        ("cy", 25),
        ("bob", 40),
        ("ada", 5),
    ] {
        let (_, _): (f64, bool) = redis
            .query_pipeline(
                redis::pipe()
                    .cmd("ZINCRBY")
                    .arg(&board)
                    .arg(points)
                    .arg(player)
                    .cmd("EXPIRE")
                    .arg(&board)
                    .arg(8 * 24 * 3600)
                    .arg("NX"),
            )
            .await?;
    }

    let top: Vec<(String, f64)> = redis
        .query(
            redis::cmd("ZREVRANGE")
                .arg(&board)
                .arg(0)
                .arg(1)
                .arg("WITHSCORES"),
        )
        .await?;
    println!("top two of {board}: {top:?}");
    assert_eq!(top, [("bob".to_owned(), 50.0), ("ada".to_owned(), 35.0)]);

    let place: Option<u64> = redis
        .query(redis::cmd("ZREVRANK").arg(&board).arg("cy"))
        .await?;
    assert_eq!(place, Some(2), "cy is third (ranks count from 0)");
    let ttl: i64 = redis.query(redis::cmd("TTL").arg(&board)).await?;
    assert!(ttl > 7 * 24 * 3600, "the board expires after its week");

    let _: i64 = redis.query(redis::cmd("DEL").arg(&board)).await?;
    Ok(())
}
