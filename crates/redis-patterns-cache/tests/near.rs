//! The near cache: local hits without a round trip, invalidation by other clients through RESP3
//! client tracking, tags, the bound, and a flush when the tracking connection is lost.

use std::time::Duration;

use redis_cache::{Cache, EntryOptions, FailurePolicy, NearCacheConfig};
use redis_core::{KeySpace, Redis, redis};
use redis_test_support::{TestCluster, TestContext, TestSentinel, wait_until};

mod support;

const DEADLINE: Duration = Duration::from_secs(10);

// Values are written before the near cache starts tracking: a write after that sends an
// invalidation push that may reach the near cache after a later read, refusing (or evicting) that
// read's fill, so exact entry counts would depend on scheduling.

fn near_cache(redis: &Redis, ctx: &TestContext, capacity: usize) -> Cache {
    Cache::builder(redis.clone(), &ctx.keyspace())
        .near_cache(NearCacheConfig::new(capacity).ttl(Duration::from_secs(60)))
        .build()
        .unwrap()
}

async fn tracking(cache: &Cache) {
    wait_until("near cache tracking", DEADLINE, || async {
        cache.near_cache_stats().unwrap().tracking
    })
    .await;
}

fn entries(cache: &Cache) -> usize {
    cache.near_cache_stats().unwrap().entries
}

/// `calls` of `cmdstat_get` in `INFO commandstats`.
async fn get_calls(redis: &Redis) -> u64 {
    let info: String = redis
        .query(redis::cmd("INFO").arg("commandstats"))
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Runs `cmd` on a connection of its own, as another client would, then waits until the near
/// cache holds nothing.
async fn write_elsewhere(ctx: &TestContext, cache: &Cache, cmd: &mut redis::Cmd, what: &str) {
    let mut raw = redis::Client::open(ctx.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = cmd.query_async(&mut raw).await.unwrap();
    wait_until(what, DEADLINE, || async { entries(cache) == 0 }).await;
}

#[tokio::test]
async fn a_hit_is_served_from_memory_without_a_round_trip() {
    // A private server: nobody else's GETs in its command statistics.
    let ctx = TestContext::private().await;
    let plain = support::cache(&ctx);
    assert!(plain.near_cache_stats().is_none());
    plain.set("a", &vec![1u32, 2]).await.unwrap();
    let none = plain
        .get_or_load("none", || async { Ok::<Option<u8>, std::io::Error>(None) })
        .await
        .unwrap();
    assert_eq!(none, None);
    let cache = near_cache(ctx.redis(), &ctx, 100);
    tracking(&cache).await;
    assert_eq!(cache.get::<Vec<u32>>("a").await.unwrap(), Some(vec![1, 2]));
    assert_eq!(entries(&cache), 1);

    let before = get_calls(ctx.redis()).await;
    for _ in 0..100 {
        assert_eq!(cache.get::<Vec<u32>>("a").await.unwrap(), Some(vec![1, 2]));
        let got = cache
            .get_or_load("a", || async {
                Err::<Option<Vec<u32>>, _>(std::io::Error::other("no load on a hit"))
            })
            .await
            .unwrap();
        assert_eq!(got, Some(vec![1, 2]));
    }
    assert_eq!(get_calls(ctx.redis()).await, before, "near hits sent GETs");
    assert!(cache.near_cache_stats().unwrap().hits >= 200);

    // The same reads without a near cache do reach Redis (the measure can fail).
    for _ in 0..10 {
        assert_eq!(plain.get::<Vec<u32>>("a").await.unwrap(), Some(vec![1, 2]));
    }
    assert_eq!(get_calls(ctx.redis()).await, before + 10);

    // "Not found" is kept too.
    assert_eq!(cache.get::<u8>("none").await.unwrap(), None);
    assert_eq!(entries(&cache), 2);
    let before = get_calls(ctx.redis()).await;
    assert_eq!(cache.get::<u8>("none").await.unwrap(), None);
    assert_eq!(get_calls(ctx.redis()).await, before);
}

#[tokio::test]
async fn writes_by_other_clients_evict_the_near_entry() {
    let ctx = TestContext::new().await;
    let other = support::cache(&ctx);
    for (name, value) in [("a", 1u32), ("b", 2), ("c", 3)] {
        other.set(name, &value).await.unwrap();
    }
    let cache = near_cache(ctx.redis(), &ctx, 100);
    tracking(&cache).await;

    // A raw DEL.
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(1));
    assert_eq!(entries(&cache), 1);
    let del = &mut redis::cmd("DEL");
    del.arg(cache.key("a").unwrap());
    write_elsewhere(&ctx, &cache, del, "eviction after DEL").await;
    assert_eq!(cache.get::<u32>("a").await.unwrap(), None);

    // A raw SET (of bytes that are no entry: a miss, removed).
    assert_eq!(cache.get::<u32>("b").await.unwrap(), Some(2));
    assert_eq!(entries(&cache), 1);
    let set = &mut redis::cmd("SET");
    set.arg(cache.key("b").unwrap()).arg("not an entry");
    write_elsewhere(&ctx, &cache, set, "eviction after SET").await;
    assert_eq!(cache.get::<u32>("b").await.unwrap(), None);

    // Another cache instance (think: another process) writes a new value, then deletes it.
    assert_eq!(cache.get::<u32>("c").await.unwrap(), Some(3));
    assert_eq!(entries(&cache), 1);
    other.set("c", &4u32).await.unwrap();
    wait_until("the other instance's value", DEADLINE, || async {
        cache.get::<u32>("c").await.unwrap() == Some(4)
    })
    .await;
    other.delete("c").await.unwrap();
    wait_until("the other instance's delete", DEADLINE, || async {
        cache.get::<u32>("c").await.unwrap().is_none()
    })
    .await;

    // Writes of this cache evict at once, without waiting for the push.
    cache.set("b", &5u32).await.unwrap();
    assert_eq!(cache.get::<u32>("b").await.unwrap(), Some(5));
    cache.set("b", &6u32).await.unwrap();
    assert_eq!(cache.get::<u32>("b").await.unwrap(), Some(6));
    cache.delete("b").await.unwrap();
    assert_eq!(cache.get::<u32>("b").await.unwrap(), None);
}

#[tokio::test]
async fn tag_invalidation_evicts_near_entries() {
    let ctx = TestContext::new().await;
    let other = support::cache(&ctx);
    let tagged = EntryOptions::new().tag("t");
    for name in ["a", "b"] {
        other.set_with(name, &1u32, &tagged).await.unwrap();
    }
    other.set("untagged", &1u32).await.unwrap();
    let cache = near_cache(ctx.redis(), &ctx, 100);
    tracking(&cache).await;
    for name in ["a", "b"] {
        assert_eq!(cache.get::<u32>(name).await.unwrap(), Some(1));
    }
    assert_eq!(cache.get::<u32>("untagged").await.unwrap(), Some(1));
    assert_eq!(entries(&cache), 3);

    // By another instance: evicted when the push for the tag version arrives.
    other.invalidate_tag("t").await.unwrap();
    wait_until("eviction of tagged entries", DEADLINE, || async {
        entries(&cache) == 1
    })
    .await;
    assert_eq!(cache.get::<u32>("a").await.unwrap(), None);
    assert_eq!(cache.get::<u32>("b").await.unwrap(), None);
    assert_eq!(cache.get::<u32>("untagged").await.unwrap(), Some(1));

    // By this instance: evicted at once.
    cache.set_with("a", &2u32, &tagged).await.unwrap();
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(2));
    cache.invalidate_tag("t").await.unwrap();
    assert_eq!(cache.get::<u32>("a").await.unwrap(), None);
}

#[tokio::test]
async fn the_near_cache_holds_at_most_its_capacity() {
    let ctx = TestContext::new().await;
    let plain = support::cache(&ctx);
    for i in 0..50u32 {
        plain.set(&format!("k{i}"), &i).await.unwrap();
    }
    let cache = near_cache(ctx.redis(), &ctx, 8);
    tracking(&cache).await;
    for i in 0..50u32 {
        let name = format!("k{i}");
        assert_eq!(cache.get::<u32>(&name).await.unwrap(), Some(i));
        // The hot key is read again and again: CLOCK keeps it.
        assert_eq!(cache.get::<u32>("k0").await.unwrap(), Some(0));
        assert!(entries(&cache) <= 8, "{} entries", entries(&cache));
    }
    assert_eq!(entries(&cache), 8);
    let hits = cache.near_cache_stats().unwrap().hits;
    assert_eq!(cache.get::<u32>("k0").await.unwrap(), Some(0));
    assert_eq!(cache.near_cache_stats().unwrap().hits, hits + 1);

    assert!(
        Cache::builder(ctx.redis().clone(), &ctx.keyspace())
            .near_cache(NearCacheConfig::new(0))
            .build()
            .is_err()
    );
    assert!(
        Cache::builder(ctx.redis().clone(), &ctx.keyspace())
            .near_cache(NearCacheConfig::new(1).ttl(Duration::ZERO))
            .build()
            .is_err()
    );
}

/// The id of the tracking connection, from `CLIENT LIST`.
async fn tracking_client_id(redis: &Redis) -> Option<i64> {
    let list: String = redis.query(redis::cmd("CLIENT").arg("LIST")).await.ok()?;
    list.lines()
        .find(|l| l.split(' ').any(|f| f == "name=redis-cache-near"))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .and_then(|id| id.parse().ok())
}

#[tokio::test]
async fn a_killed_tracking_connection_flushes_and_recovers() {
    let ctx = TestContext::private().await;
    support::cache(&ctx).set("a", &1u32).await.unwrap();
    let cache = near_cache(ctx.redis(), &ctx, 100);
    tracking(&cache).await;
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(1));
    assert_eq!(entries(&cache), 1);
    let flushes = cache.near_cache_stats().unwrap().flushes;

    let id = tracking_client_id(ctx.redis()).await.unwrap();
    let killed: i64 = ctx
        .redis()
        .query(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id))
        .await
        .unwrap();
    assert_eq!(killed, 1);
    // Lost (flush) and re-established (flush) on a new connection.
    wait_until("a new tracking connection", DEADLINE, || async {
        let stats = cache.near_cache_stats().unwrap();
        stats.flushes >= flushes + 2
            && stats.tracking
            && tracking_client_id(ctx.redis())
                .await
                .is_some_and(|new| new != id)
    })
    .await;
    assert_eq!(entries(&cache), 0);

    // Filling and invalidation work again on the new connection.
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(1));
    assert_eq!(entries(&cache), 1);
    let del = &mut redis::cmd("DEL");
    del.arg(cache.key("a").unwrap());
    write_elsewhere(&ctx, &cache, del, "eviction after reconnection").await;
}

#[tokio::test]
async fn a_flush_of_the_database_flushes_the_near_cache() {
    let ctx = TestContext::private().await;
    support::cache(&ctx).set("a", &1u32).await.unwrap();
    let cache = near_cache(ctx.redis(), &ctx, 100);
    tracking(&cache).await;
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(1));
    assert_eq!(entries(&cache), 1);
    let flushes = cache.near_cache_stats().unwrap().flushes;
    let _: () = ctx.redis().query(&redis::cmd("FLUSHDB")).await.unwrap();
    wait_until("a flush after FLUSHDB", DEADLINE, || async {
        let stats = cache.near_cache_stats().unwrap();
        stats.flushes > flushes && stats.entries == 0
    })
    .await;
    assert!(cache.near_cache_stats().unwrap().tracking);
    assert_eq!(cache.get::<u32>("a").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_flushes_and_the_near_cache_recovers() {
    let mut ctx = TestContext::private().await;
    support::cache(&ctx).set("a", &1u32).await.unwrap();
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .near_cache(NearCacheConfig::new(100).ttl(Duration::from_secs(60)))
        .failure_policy(FailurePolicy::FailOpen)
        .build()
        .unwrap();
    tracking(&cache).await;
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(1));
    assert_eq!(entries(&cache), 1);

    // The server goes away: the near cache is flushed and bypassed (nothing served from memory
    // while nobody tells us about writes).
    ctx.server().unwrap().kill();
    wait_until("tracking lost", DEADLINE, || async {
        !cache.near_cache_stats().unwrap().tracking
    })
    .await;
    assert_eq!(entries(&cache), 0);
    assert_eq!(cache.get::<u32>("a").await.unwrap(), None, "failing open");

    // It comes back empty: the old value must not be served from memory.
    ctx.server().unwrap().restart();
    tracking(&cache).await;
    wait_until("redis answers again", DEADLINE, || async {
        cache.set("b", &2u32).await.is_ok()
    })
    .await;
    assert_eq!(cache.get::<u32>("a").await.unwrap(), None);
    // The push of our own write may still be on its way and refuse a fill: read until one sticks.
    wait_until("a fill after the restart", DEADLINE, || async {
        cache.get::<u32>("b").await.unwrap() == Some(2) && entries(&cache) == 1
    })
    .await;
    let set = &mut redis::cmd("SET");
    set.arg(cache.key("b").unwrap()).arg("x");
    write_elsewhere(&ctx, &cache, set, "eviction after restart").await;
}

#[test]
fn the_near_cache_turns_off_when_its_runtime_shuts_down() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ctx, cache) = rt.block_on(async {
        let ctx = TestContext::new().await;
        let cache = near_cache(ctx.redis(), &ctx, 100);
        tracking(&cache).await;
        (ctx, cache)
    });
    // Nobody applies invalidations any more: nothing may be served from memory.
    drop(rt);
    assert!(!cache.near_cache_stats().unwrap().tracking);
    drop(cache);
    drop(ctx);

    // Outside a runtime there is nowhere to run the tracking task: refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ctx = rt.block_on(TestContext::new());
    let built = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .near_cache(NearCacheConfig::new(10))
        .build();
    assert!(built.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_cache_tracks_every_master_of_a_cluster() {
    let mut cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    let keys = KeySpace::new(&format!("near{}", std::process::id())).unwrap();
    let plain = Cache::builder(redis.clone(), &keys).build().unwrap();
    let names: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
    let masters: std::collections::HashSet<u16> = names
        .iter()
        .map(|n| plain.key(n).unwrap().slot() / 5462)
        .collect();
    assert_eq!(masters.len(), 3, "the entries live on the three masters");
    let tagged = EntryOptions::new().tag("t");
    for name in &names {
        plain.set_with(name, &1u32, &tagged).await.unwrap();
    }
    let cache = Cache::builder(redis.clone(), &keys)
        .near_cache(NearCacheConfig::new(100).ttl(Duration::from_secs(60)))
        .build()
        .unwrap();
    tracking(&cache).await;
    // One tracking connection on each master.
    for node in cluster.nodes() {
        let list: String = node.cmd(redis::cmd("CLIENT").arg("LIST")).unwrap();
        assert_eq!(list.matches("name=redis-cache-near").count(), 1, "{list}");
    }
    for name in &names {
        assert_eq!(cache.get::<u32>(name).await.unwrap(), Some(1));
    }
    assert_eq!(entries(&cache), 12);
    let before = cache.near_cache_stats().unwrap().hits;
    for name in &names {
        assert_eq!(cache.get::<u32>(name).await.unwrap(), Some(1));
    }
    assert_eq!(cache.near_cache_stats().unwrap().hits, before + 12);

    // Writes by another client on every master evict.
    for name in &names[..6] {
        let _: () = redis
            .query(redis::cmd("DEL").arg(plain.key(name).unwrap()))
            .await
            .unwrap();
    }
    wait_until("eviction on every master", DEADLINE, || async {
        entries(&cache) == 6
    })
    .await;
    for name in &names[..6] {
        assert_eq!(cache.get::<u32>(name).await.unwrap(), None);
    }

    // A tag version on one master evicts entries living on the others.
    plain.invalidate_tag("t").await.unwrap();
    wait_until("eviction by tag", DEADLINE, || async {
        entries(&cache) == 0
    })
    .await;
    assert_eq!(cache.get::<u32>(&names[11]).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_cache_follows_a_sentinel_failover() {
    let mut group = TestSentinel::spawn();
    let redis = group.redis().await;
    let keys = KeySpace::new(&format!("nearsentinel{}", std::process::id())).unwrap();
    let plain = Cache::builder(redis.clone(), &keys).build().unwrap();
    plain.set("a", &1u32).await.unwrap();
    let cache = Cache::builder(redis.clone(), &keys)
        .near_cache(NearCacheConfig::new(100).ttl(Duration::from_secs(60)))
        .build()
        .unwrap();
    tracking(&cache).await;
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(1));
    assert_eq!(entries(&cache), 1);

    group.master().kill();
    wait_until("tracking lost", DEADLINE, || async {
        !cache.near_cache_stats().unwrap().tracking
    })
    .await;
    assert_eq!(entries(&cache), 0);
    let failover = Duration::from_secs(30);
    wait_until("a write on the new master", failover, || async {
        plain.set("a", &2u32).await.is_ok()
    })
    .await;
    wait_until("tracking on the new master", failover, || async {
        cache.near_cache_stats().unwrap().tracking
    })
    .await;
    let list: String = group
        .replica()
        .cmd(redis::cmd("CLIENT").arg("LIST"))
        .unwrap();
    assert!(list.contains("name=redis-cache-near"), "{list}");

    // The new master's writes are tracked.
    wait_until("a fill after the failover", DEADLINE, || async {
        cache.get::<u32>("a").await.unwrap() == Some(2) && entries(&cache) == 1
    })
    .await;
    plain.set("a", &3u32).await.unwrap();
    wait_until("eviction on the new master", DEADLINE, || async {
        entries(&cache) == 0
    })
    .await;
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(3));
}
