//! Eight workers increment one counter with a non-atomic read-modify-write under a lock; a
//! fenced store refuses a write from a holder whose lease ran out; a semaphore caps concurrency.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-lock --example fenced_counter`

use std::{sync::Arc, time::Duration};

use redis_lock::{
    AcquireOptions, Lock, Semaphore,
    redis_core::{Backoff, KeySpace, Redis, Script, redis},
};

/// The protected resource: a value that accepts a write only with a fencing token at least as
/// large as the largest it has seen.
static FENCED_SET: Script = Script::new(
    "example_fenced_set",
    "local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
     if tonumber(ARGV[1]) < seen then return 0 end
     redis.call('SET', KEYS[2], ARGV[1])
     redis.call('SET', KEYS[1], ARGV[2])
     return 1",
);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = Redis::open(&url).await?;
    let keys = KeySpace::new(&format!("example-lock{}", std::process::id()))?;
    let lock = Arc::new(
        Lock::builder(redis.clone(), &keys)
            .ttl(Duration::from_secs(5))
            .retry_delay(Backoff::new(
                Duration::from_millis(1),
                Duration::from_millis(20),
            )?)
            .build()?,
    );
    let counter = keys.key("counter")?;

    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (lock, redis, counter) = (lock.clone(), redis.clone(), counter.clone());
            tokio::spawn(async move {
                for _ in 0..50 {
                    let guard = lock.acquire("counter").await?;
                    let n: Option<u64> = redis.query(redis::cmd("GET").arg(&counter)).await?;
                    let _: () = redis
                        .query(redis::cmd("SET").arg(&counter).arg(n.unwrap_or(0) + 1))
                        .await?;
                    guard.release().await?;
                }
                Ok::<_, redis_lock::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let total: u64 = redis.query(redis::cmd("GET").arg(&counter)).await?;
    println!("8 workers x 50 locked increments: counter = {total}");
    if total != 400 {
        return Err(format!("expected 400, got {total}").into());
    }

    // A holder pauses past its lease; a second one takes over and writes first.
    let doc = keys.key("doc")?;
    let slow = lock
        .try_acquire_with_options(
            "doc",
            &AcquireOptions::new().ttl(Duration::from_millis(100)),
        )
        .await?
        .ok_or("doc is free")?;
    slow.lost().await;
    let fast = lock.acquire("doc").await?;
    let write = |fence: u64, text: &'static str| {
        FENCED_SET
            .call()
            .key(&doc)
            .key(doc.companion("fence"))
            .arg(fence)
            .arg(text)
            .invoke::<i64>(&redis)
    };
    let accepted_new = write(fast.fence(), "new holder").await? == 1;
    let accepted_stale = write(slow.fence(), "stale holder").await? == 1;
    println!(
        "fence {} (new holder) accepted: {accepted_new}; fence {} (paused holder) accepted: {accepted_stale}",
        fast.fence(),
        slow.fence()
    );
    let stale_release = slow.release().await;
    println!("the paused holder's release: {stale_release:?}");
    fast.release().await?;
    if !accepted_new || accepted_stale || stale_release.is_ok() {
        return Err("fencing did not hold".into());
    }

    let sem = Semaphore::builder(redis.clone(), &keys, 2).build()?;
    let a = sem.acquire("exports").await?;
    let b = sem.acquire("exports").await?;
    let third = sem.try_acquire("exports").await?;
    println!(
        "semaphore of 2: two permits taken, a third attempt got {}",
        if third.is_some() { "one" } else { "none" }
    );
    a.release().await?;
    b.release().await?;

    for key in [
        counter.clone(),
        doc.clone(),
        doc.companion("fence"),
        lock.key("counter")?.companion("fence"),
        lock.key("doc")?.companion("fence"),
        sem.key("exports")?.companion("fence"),
    ] {
        let _: i64 = redis.query(redis::cmd("DEL").arg(&key)).await?;
    }
    if third.is_some() {
        return Err("semaphore let a third holder in".into());
    }
    Ok(())
}
