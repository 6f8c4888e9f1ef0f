//! A guided tour of every redis-patterns crate against a real Redis.
//!
//! Run: `cargo xtask demo` (starts a Redis for you), or against your own server:
//! `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-demo`.
//!
//! Each section runs one crate's pattern, says what happened, and shows the keys it left in Redis
//! with their type and TTL. Everything is written under a fresh prefix and deleted at the end.

mod cache;
mod core_tour;
mod lock;
mod messaging;
mod ratelimit;
mod session;

use std::{future::Future, time::Instant};

use anyhow::Context as _;
use redis_core::{KeySpace, Redis};

/// What every section gets: the connection and the tour's key space. Pattern builders add their
/// own segment (`<tour>:ratelimit:...`, `<tour>:lock:...`); a section's keys are listed under
/// `<tour>:<section>:`.
pub(crate) struct Tour {
    pub(crate) redis: Redis,
    pub(crate) keys: KeySpace,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let redis = Redis::open(&url)
        .await
        .with_context(|| format!("cannot reach Redis at {url}"))?;
    let prefix = format!("demo{}", std::process::id());
    let root = KeySpace::new(&prefix)?;
    println!("redis-patterns tour against {url} (keys under `{prefix}:`)\n");

    let mut failures = 0;
    failures += section(
        &redis,
        &root,
        "core",
        "connections, key spaces, scripts",
        core_tour::run,
    )
    .await;
    failures += section(
        &redis,
        &root,
        "ratelimit",
        "every algorithm on one identity",
        ratelimit::run,
    )
    .await;
    failures += section(
        &redis,
        &root,
        "cache",
        "cache-aside, stampede protection, tags",
        cache::run,
    )
    .await;
    failures += section(
        &redis,
        &root,
        "lock",
        "locks with fencing tokens",
        lock::run,
    )
    .await;
    failures += section(
        &redis,
        &root,
        "session",
        "hashed ids, timeouts, rotation",
        session::run,
    )
    .await;
    failures += section(
        &redis,
        &root,
        "messaging",
        "pub/sub and streams",
        messaging::run,
    )
    .await;

    let removed = delete_prefix(&redis, &root).await?;
    println!("cleaned up {removed} keys under `{prefix}:`");
    anyhow::ensure!(failures == 0, "{failures} section(s) failed");
    Ok(())
}

async fn section<F, Fut>(redis: &Redis, root: &KeySpace, name: &str, what: &str, run: F) -> usize
where
    F: FnOnce(Tour) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    println!("== {name}: {what}");
    let keys = match root.pattern(name) {
        Ok(keys) => keys,
        Err(e) => {
            println!("   FAILED: {e}\n");
            return 1;
        }
    };
    let started = Instant::now();
    let result = run(Tour {
        redis: redis.clone(),
        keys: root.clone(),
    })
    .await;
    let elapsed = started.elapsed();
    match result {
        Ok(()) => {
            println!("   done in {elapsed:.1?}");
            if let Err(e) = show_keys(redis, &keys).await {
                println!("   (could not list keys: {e})");
            }
            println!();
            0
        }
        Err(e) => {
            println!("   FAILED after {elapsed:.1?}: {e:#}\n");
            1
        }
    }
}

/// Prints the keys a section left behind, with type and TTL.
async fn show_keys(redis: &Redis, keys: &KeySpace) -> anyhow::Result<()> {
    let names = scan(redis, &keys.scan_pattern()).await?;
    if names.is_empty() {
        println!("   Redis holds no keys for this section");
        return Ok(());
    }
    println!("   Redis holds:");
    for name in names.iter().take(12) {
        let kind: String = redis
            .query(redis_core::redis::cmd("TYPE").arg(name))
            .await?;
        let ttl: i64 = redis
            .query(redis_core::redis::cmd("PTTL").arg(name))
            .await?;
        let ttl = match ttl {
            -1 => "no TTL".to_owned(),
            -2 => "expired".to_owned(),
            ms => format!("TTL {:.1}s", ms as f64 / 1000.0),
        };
        println!("     {name:<60} {kind:<7} {ttl}");
    }
    if names.len() > 12 {
        println!("     ... and {} more", names.len() - 12);
    }
    Ok(())
}

async fn scan(redis: &Redis, pattern: &str) -> anyhow::Result<Vec<String>> {
    let mut cursor = 0u64;
    let mut out = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis
            .query(
                redis_core::redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(500),
            )
            .await?;
        out.extend(batch);
        if next == 0 {
            out.sort();
            return Ok(out);
        }
        cursor = next;
    }
}

async fn delete_prefix(redis: &Redis, root: &KeySpace) -> anyhow::Result<usize> {
    let names = scan(redis, &root.scan_pattern()).await?;
    for name in &names {
        let _: i64 = redis
            .query(redis_core::redis::cmd("UNLINK").arg(name))
            .await?;
    }
    Ok(names.len())
}
