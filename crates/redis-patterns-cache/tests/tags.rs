//! Versioned tags: O(1) invalidation, on one server and on a 3-master cluster.

use redis_core::redis;
use std::time::Duration;

use redis_cache::{Cache, EntryOptions};
use redis_core::KeySpace;
use redis_test_support::{TestCluster, TestContext};

mod support;

async fn exercise_tags(cache: &Cache) {
    let lamps = EntryOptions::new().tag("category:lamps");
    let both = EntryOptions::new().tag("category:lamps").tag("brand:acme");
    let acme = EntryOptions::new().tag("brand:acme");
    for i in 0..20 {
        cache
            .set_with(&format!("lamp{i}"), &i, &lamps)
            .await
            .unwrap();
    }
    cache.set_with("acme-lamp", &100, &both).await.unwrap();
    cache.set_with("acme-chair", &200, &acme).await.unwrap();
    cache.set("untagged", &300).await.unwrap();
    for i in 0..20 {
        assert_eq!(
            cache.get::<i32>(&format!("lamp{i}")).await.unwrap(),
            Some(i)
        );
    }

    cache.invalidate_tag("category:lamps").await.unwrap();
    for i in 0..20 {
        assert_eq!(cache.get::<i32>(&format!("lamp{i}")).await.unwrap(), None);
    }
    assert_eq!(cache.get::<i32>("acme-lamp").await.unwrap(), None);
    assert_eq!(cache.get::<i32>("acme-chair").await.unwrap(), Some(200));
    assert_eq!(cache.get::<i32>("untagged").await.unwrap(), Some(300));

    // Entries written after the invalidation carry the new version and are served.
    let got = cache
        .get_or_load_with("lamp0", &lamps, || async {
            Ok::<_, std::io::Error>(Some(1000))
        })
        .await
        .unwrap();
    assert_eq!(got, Some(1000));
    assert_eq!(cache.get::<i32>("lamp0").await.unwrap(), Some(1000));

    cache.invalidate_tag("brand:acme").await.unwrap();
    assert_eq!(cache.get::<i32>("acme-chair").await.unwrap(), None);
    assert_eq!(cache.get::<i32>("lamp0").await.unwrap(), Some(1000));
}

#[tokio::test]
async fn invalidating_a_tag_turns_its_entries_into_misses() {
    let ctx = TestContext::new().await;
    let cache = support::cache(&ctx);
    exercise_tags(&cache).await;
}

#[tokio::test]
async fn a_load_that_overlaps_an_invalidation_is_not_served() {
    let ctx = TestContext::new().await;
    let cache = support::cache(&ctx);
    let opts = EntryOptions::new().tag("t");
    let inner = cache.clone();
    let got = cache
        .get_or_load_with("k", &opts, || async move {
            // The data is read, then the tag is invalidated before the value reaches the cache.
            inner.invalidate_tag("t").await.unwrap();
            Ok::<_, std::io::Error>(Some(1))
        })
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    assert_eq!(cache.get::<i32>("k").await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_tag_version_reads_as_a_miss() {
    let ctx = TestContext::new().await;
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .tag_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    cache
        .set_with("k", &1, &EntryOptions::new().tag("t"))
        .await
        .unwrap();
    let _: i64 = ctx
        .redis()
        .query(redis::cmd("DEL").arg(cache.tag_key("t").unwrap()))
        .await
        .unwrap();
    assert_eq!(cache.get::<i32>("k").await.unwrap(), None);
    // The next entry with the tag recreates its version: a new random one, so the entry written
    // under the expired version stays a miss (a restarting counter would revive it).
    cache
        .set_with("k2", &2, &EntryOptions::new().tag("t"))
        .await
        .unwrap();
    assert_eq!(cache.get::<i32>("k2").await.unwrap(), Some(2));
    assert_eq!(cache.get::<i32>("k").await.unwrap(), None);
    let ttl: i64 = ctx
        .redis()
        .query(redis::cmd("PTTL").arg(cache.tag_key("t").unwrap()))
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_invalidation_works_on_a_three_master_cluster() {
    let cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    let keys = KeySpace::new(&format!("tags{}", std::process::id())).unwrap();
    let cache = Cache::builder(redis, &keys).build().unwrap();
    // The entries and the tags are spread over the three masters.
    let slots: std::collections::HashSet<u16> = (0..20)
        .map(|i| cache.key(&format!("lamp{i}")).unwrap().slot() / 5462)
        .collect();
    assert_eq!(slots.len(), 3);
    assert_ne!(
        cache.tag_key("category:lamps").unwrap().slot(),
        cache.tag_key("brand:acme").unwrap().slot()
    );
    exercise_tags(&cache).await;
}
