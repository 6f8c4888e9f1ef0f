//! What each operation sends (from `INFO commandstats` of a private server), and the guarantees
//! the lean write path keeps: fills fenced by `set`, tagged writes correct when this process's
//! memory of a tag version is stale.

use std::collections::HashMap;

use redis_cache::EntryOptions;
use redis_core::{Redis, redis};
use redis_test_support::TestContext;
use support::StalledLoad;

mod support;

/// The commands the cache's reads and writes use.
const DATA: &[&str] = &[
    "get", "set", "del", "exists", "evalsha", "eval", "psetex", "pttl",
];

/// `calls` per data command (what the cache's reads and writes use) from `INFO commandstats`;
/// checks the library runs in the background on a build (`INFO`, `CONFIG GET`, ...) are left
/// out.
async fn commands(redis: &Redis) -> HashMap<String, u64> {
    let info: String = redis
        .query(redis::cmd("INFO").arg("commandstats"))
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            let calls = rest.split(',').next()?.parse().ok()?;
            DATA.contains(&name).then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// The commands `op` made the server run, by name.
async fn sent<F: Future<Output = ()>>(redis: &Redis, op: F) -> Vec<(String, u64)> {
    let before = commands(redis).await;
    op.await;
    let mut delta: Vec<_> = commands(redis)
        .await
        .into_iter()
        .filter_map(|(name, calls)| {
            let moved = calls - before.get(&name).copied().unwrap_or(0);
            (moved > 0).then_some((name, moved))
        })
        .collect();
    delta.sort();
    delta
}

fn counts(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected
        .iter()
        .map(|(n, c)| ((*n).to_owned(), *c))
        .collect()
}

#[tokio::test]
async fn each_operation_sends_what_the_docs_say() {
    let ctx = TestContext::private().await;
    let redis = ctx.redis().clone();
    let cache = support::cache(&ctx);
    let tagged = EntryOptions::new().tag("a").tag("b");
    // The server version is read once per handle; read it before counting.
    cache.set_with("warm", &0u32, &tagged).await.unwrap();

    let set = sent(&redis, async { cache.set("p", &1u32).await.unwrap() }).await;
    assert_eq!(
        set,
        counts(&[("set", 2)]),
        "set: the generation and the entry"
    );

    let hit = sent(&redis, async {
        assert_eq!(cache.get::<u32>("p").await.unwrap(), Some(1));
    })
    .await;
    assert_eq!(hit, counts(&[("get", 1)]));

    let delete = sent(&redis, async { assert!(cache.delete("p").await.unwrap()) }).await;
    assert_eq!(
        delete,
        counts(&[("del", 2), ("set", 1)]),
        "generation, lease, entry"
    );

    // Tags this process has seen: one round trip, a `SET NX GET` per tag with the writes.
    let tagged_set = sent(&redis, async {
        cache.set_with("t", &2u32, &tagged).await.unwrap();
    })
    .await;
    assert_eq!(tagged_set, counts(&[("set", 4)]));
    let tagged_hit = sent(&redis, async {
        assert_eq!(cache.get::<u32>("t").await.unwrap(), Some(2));
    })
    .await;
    assert_eq!(
        tagged_hit,
        counts(&[("get", 3)]),
        "the entry and its two tags"
    );
}

#[tokio::test]
async fn a_tagged_write_is_served_when_another_process_moved_the_tag() {
    let ctx = TestContext::new().await;
    let cache = support::cache(&ctx);
    let other = support::cache(&ctx);
    let opts = EntryOptions::new().tag("t");
    cache.set_with("a", &1u32, &opts).await.unwrap();
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(1));

    // This process still remembers the old version; the write must not be lost to it.
    other.invalidate_tag("t").await.unwrap();
    assert_eq!(cache.get::<u32>("a").await.unwrap(), None);
    cache.set_with("b", &2u32, &opts).await.unwrap();
    assert_eq!(cache.get::<u32>("b").await.unwrap(), Some(2));
    assert_eq!(other.get::<u32>("b").await.unwrap(), Some(2));

    // The tag key vanished (expired, evicted): recreated with a new random version, never the
    // remembered one, so entries written before stay misses.
    other.invalidate_tag("t").await.unwrap();
    other.set_with("c", &3u32, &opts).await.unwrap();
    let _: i64 = ctx
        .redis()
        .query(redis::cmd("DEL").arg(cache.tag_key("t").unwrap()))
        .await
        .unwrap();
    cache.set_with("d", &4u32, &opts).await.unwrap();
    assert_eq!(cache.get::<u32>("d").await.unwrap(), Some(4));
    assert_eq!(other.get::<u32>("c").await.unwrap(), None);
    assert_eq!(cache.get::<u32>("b").await.unwrap(), None);
}

#[tokio::test]
async fn a_set_fences_off_a_fill_that_started_before_it() {
    let ctx = TestContext::new().await;
    let cache = support::patient_cache(&ctx);
    let reader = StalledLoad::start(&cache, "p", 1u32).await;
    cache.set("p", &2u32).await.unwrap();
    // A read after the set is served the set's value, not joined to the older load.
    assert_eq!(cache.get::<u32>("p").await.unwrap(), Some(2));
    let got = cache
        .get_or_load("p", || async { Ok::<_, std::io::Error>(Some(3u32)) })
        .await
        .unwrap();
    assert_eq!(got, Some(2));
    assert_eq!(reader.finish().await.unwrap(), Some(1));
    // The older fill was refused.
    assert_eq!(cache.get::<u32>("p").await.unwrap(), Some(2));
    let other = support::cache(&ctx);
    assert_eq!(other.get::<u32>("p").await.unwrap(), Some(2));
}
