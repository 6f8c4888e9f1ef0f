//! Cache-aside with stampede protection, negative caching, tags and write-through.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-cache --example cache_aside`
//! (`REDIS_URL` defaults to `redis://127.0.0.1:6379`). Exits non-zero on failure.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use redis_cache::{Cache, EntryOptions, WriteMode};
use redis_core::{KeySpace, Redis};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let redis = Redis::open(&url).await?;
    let keys = KeySpace::new(&format!("example{}", std::process::id()))?;
    let cache = Cache::builder(redis, &keys)
        .ttl(Duration::from_secs(60))
        .negative_ttl(Duration::from_secs(10))
        .build()?;

    // 100 concurrent requests for a cold key: the "database" is queried once.
    let queries = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            let queries = queries.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load_with(
                        "product:7",
                        &EntryOptions::new().tag("category:lamps"),
                        || async {
                            queries.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await; // a slow query
                            Ok::<_, std::io::Error>(Some(Product {
                                id: 7,
                                name: "desk lamp".into(),
                                price_cents: 2_999,
                            }))
                        },
                    )
                    .await
            })
        })
        .collect();
    for t in tasks {
        let product = t.await??;
        assert_eq!(product.map(|p| p.id), Some(7));
    }
    println!(
        "100 concurrent reads, {} database query",
        queries.load(Ordering::SeqCst)
    );
    assert_eq!(queries.load(Ordering::SeqCst), 1);

    // "Not found" is cached too, for the negative TTL.
    for _ in 0..3 {
        let missing: Option<Product> = cache
            .get_or_load("product:404", || async {
                queries.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(None)
            })
            .await?;
        assert!(missing.is_none());
    }
    assert_eq!(queries.load(Ordering::SeqCst), 2);
    println!("3 reads of a missing product, 1 database query");

    // Write-through: write the source first, then invalidate (the safe default).
    let updated = cache
        .write_through("product:7", WriteMode::Invalidate, || async {
            Ok::<_, std::io::Error>(Product {
                id: 7,
                name: "desk lamp".into(),
                price_cents: 2_499,
            })
        })
        .await?;
    assert!(cache.get::<Product>("product:7").await?.is_none());
    println!(
        "price changed to {} cents; cached copy invalidated",
        updated.price_cents
    );

    // Tag invalidation: one command, whatever the number of entries.
    cache
        .set_with(
            "product:8",
            &updated,
            &EntryOptions::new().tag("category:lamps"),
        )
        .await?;
    assert!(cache.get::<Product>("product:8").await?.is_some());
    cache.invalidate_tag("category:lamps").await?;
    assert!(cache.get::<Product>("product:8").await?.is_none());
    println!("tag `category:lamps` invalidated: product:8 now reads as a miss");

    for name in ["product:7", "product:8", "product:404"] {
        cache.delete(name).await?;
    }
    let _: () = cache
        .redis()
        .query(redis_core::redis::cmd("UNLINK").arg(cache.tag_key("category:lamps")?))
        .await?;
    for name in ["product:7", "product:8", "product:404"] {
        let gen_key = cache.key(name)?.companion("gen");
        let _: i64 = cache
            .redis()
            .query(redis_core::redis::cmd("UNLINK").arg(&gen_key))
            .await?;
    }
    Ok(())
}
