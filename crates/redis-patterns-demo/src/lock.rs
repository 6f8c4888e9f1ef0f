//! redis-patterns-lock: a lock with fencing tokens, a lease that runs out, the watchdog, and a semaphore.

use std::time::Duration;

use redis_lock::{AcquireOptions, Lock, Semaphore, redis_core::Backoff};

use crate::Tour;

pub(crate) async fn run(tour: Tour) -> anyhow::Result<()> {
    let Tour { redis, keys } = tour;
    let lock = Lock::builder(redis.clone(), &keys)
        .ttl(Duration::from_secs(10))
        .retry_delay(Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(20),
        )?)
        .build()?;

    let guard = lock.acquire("invoice:42").await?;
    println!(
        "   acquired invoice:42 (key {}), fencing token {}",
        lock.key("invoice:42")?,
        guard.fence()
    );
    let second = lock.try_acquire("invoice:42").await?;
    println!(
        "   a second try_acquire while held: {}",
        if second.is_some() {
            "granted (wrong!)"
        } else {
            "None"
        }
    );
    anyhow::ensure!(second.is_none(), "lock granted twice");
    guard.release().await?;

    // A holder that pauses past its 150 ms lease loses it; the next holder gets a larger token.
    let paused = lock
        .try_acquire_with_options(
            "report",
            &AcquireOptions::new().ttl(Duration::from_millis(150)),
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("report was held"))?;
    paused.lost().await;
    let next = lock.acquire("report").await?;
    let stale = paused.extend(Duration::from_secs(1)).await;
    println!(
        "   paused holder (fence {}) lost its lease; new holder has fence {}; stale extend: {}",
        paused.fence(),
        next.fence(),
        match &stale {
            Ok(()) => "accepted (wrong!)".to_owned(),
            Err(e) => e.to_string(),
        }
    );
    anyhow::ensure!(
        stale.is_err() && next.fence() > paused.fence(),
        "fencing broken"
    );
    next.release().await?;

    // The watchdog keeps a 200 ms lease alive while the work runs for 500 ms.
    let started = std::time::Instant::now();
    let kept = Lock::builder(redis.clone(), &keys)
        .ttl(Duration::from_millis(200))
        .build()?
        .with_lock("rebuild", |lease| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            !lease.is_lost()
        })
        .await?;
    println!(
        "   with_lock on a 200 ms lease ran {:.0?} of work; lease still held at the end: {kept}",
        started.elapsed()
    );

    let sem = Semaphore::builder(redis, &keys, 2)
        .ttl(Duration::from_secs(10))
        .build()?;
    let a = sem.acquire("exports").await?;
    let b = sem.acquire("exports").await?;
    let c = sem.try_acquire("exports").await?;
    println!(
        "   semaphore of 2 permits: {} holders, third attempt got {}",
        sem.holders("exports").await?,
        if c.is_some() {
            "a permit (wrong!)"
        } else {
            "None"
        }
    );
    anyhow::ensure!(c.is_none(), "semaphore over-granted");
    a.release().await?;
    b.release().await?;
    Ok(())
}
