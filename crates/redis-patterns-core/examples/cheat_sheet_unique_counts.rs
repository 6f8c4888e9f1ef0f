//! Cheat sheet: unique visitors with HyperLogLog. `PFADD` per visit, `PFCOUNT` for the
//! (approximate, ±0.81 %) number of distinct visitors in 12 KB per key however many there are,
//! `PFMERGE` for a week from its days. The days share a hash tag so the merge stays on one
//! cluster slot.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-core --example cheat_sheet_unique_counts`

use redis_core::{KeySpace, Redis, redis};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = Redis::from_env().await?;
    let keys = KeySpace::new("cheatsheet")?.pattern(&format!("visitors{}", std::process::id()))?;
    // `<app>:visitors:{2026-w48}:<day>`: one tag per week, one key per day.
    let days: Vec<_> = ["mon", "tue"]
        .iter()
        .map(|day| keys.tagged("2026-w48", day))
        .collect::<Result<_, _>>()?;
    let week = keys.tagged("2026-w48", "all")?;

    // Monday: users 0..1000; Tuesday: users 500..1500, so 1500 distinct in all.
    for (day, range) in days.iter().zip([0..1000, 500..1500]) {
        let users: Vec<String> = range.map(|u| format!("user:{u}")).collect();
        let _: bool = redis
            .query(redis::cmd("PFADD").arg(day).arg(&users))
            .await?;
        // Daily counts are kept for 35 days.
        let _: bool = redis
            .query(redis::cmd("EXPIRE").arg(day).arg(35 * 24 * 3600))
            .await?;
    }
    let monday: u64 = redis.query(redis::cmd("PFCOUNT").arg(&days[0])).await?;
    let _: () = redis
        .query(redis::cmd("PFMERGE").arg(&week).arg(&days))
        .await?;
    let _: bool = redis
        .query(redis::cmd("EXPIRE").arg(&week).arg(35 * 24 * 3600))
        .await?;
    let weekly: u64 = redis.query(redis::cmd("PFCOUNT").arg(&week)).await?;
    println!("monday ≈ {monday}, the week ≈ {weekly} distinct visitors");
    assert!(monday.abs_diff(1000) <= 20, "{monday}");
    assert!(weekly.abs_diff(1500) <= 30, "{weekly}");

    let _: i64 = redis.query(redis::cmd("DEL").arg(&days).arg(&week)).await?;
    Ok(())
}
