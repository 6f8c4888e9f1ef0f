//! redis-patterns-cache: cache-aside with one load for many callers, negative caching, a write-through
//! that fences off a slow reader, and O(1) tag invalidation.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use redis_cache::{Cache, EntryOptions, WriteMode};
use serde::{Deserialize, Serialize};

use crate::Tour;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
}

pub(crate) async fn run(tour: Tour) -> anyhow::Result<()> {
    let Tour { redis, keys } = tour;
    let cache = Cache::builder(redis, &keys)
        .ttl(Duration::from_secs(60))
        .grace(Duration::from_secs(30))
        .negative_ttl(Duration::from_secs(10))
        .build()?;
    let queries = Arc::new(AtomicUsize::new(0));
    let lamps = EntryOptions::new().tag("category:lamps");

    let started = Instant::now();
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let cache = cache.clone();
            let queries = queries.clone();
            let lamps = lamps.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load_with("product:7", &lamps, || async move {
                        queries.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(80)).await; // a slow query
                        Ok::<_, std::io::Error>(Some(Product {
                            id: 7,
                            name: "desk lamp".into(),
                            price_cents: 2_999,
                        }))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        anyhow::ensure!(t.await??.is_some(), "product:7 should load");
    }
    println!(
        "   500 concurrent reads of a cold key in {:.1?}: {} database query (single flight + refresh lease)",
        started.elapsed(),
        queries.load(Ordering::SeqCst)
    );

    let started = Instant::now();
    let hit: Option<Product> = cache.get("product:7").await?;
    println!(
        "   warm read: {:?} in {:.1?} (one GET)",
        hit.map(|p| p.name),
        started.elapsed()
    );

    for _ in 0..3 {
        let _: Option<Product> = cache
            .get_or_load("product:404", || async {
                queries.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(None)
            })
            .await?;
    }
    println!(
        "   3 reads of a missing product: \"not found\" cached, queries so far = {}",
        queries.load(Ordering::SeqCst)
    );

    let updated = cache
        .write_through("product:7", WriteMode::Invalidate, || async {
            Ok::<_, std::io::Error>(Product {
                id: 7,
                name: "desk lamp".into(),
                price_cents: 2_499,
            })
        })
        .await?;
    let after: Option<Product> = cache.get("product:7").await?;
    println!(
        "   write-through: price -> {} cents in the source, cache invalidated (now {:?}) and older fills fenced off",
        updated.price_cents,
        after.map(|p| p.price_cents)
    );

    cache.set_with("product:8", &updated, &lamps).await?;
    cache.invalidate_tag("category:lamps").await?;
    let gone: Option<Product> = cache.get("product:8").await?;
    println!(
        "   invalidate_tag(category:lamps): one SET of a new version; product:8 now reads {gone:?}"
    );
    Ok(())
}
