//! Per-call options are checked like the builder's settings: before anything is sent (no command
//! reaches the server, no loader or writer runs), with a typed error.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use redis_cache::{Cache, EntryOptions, Error, MAX_TAGS, MAX_TTL, NearCacheConfig, WriteMode};
use redis_core::{Redis, redis};
use redis_test_support::TestContext;

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

fn is_invalid(result: &Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(result, Err(Error::InvalidConfig(_)))
}

#[tokio::test]
async fn bad_entry_options_are_refused_before_anything_is_sent() {
    let ctx = TestContext::private().await;
    let cache = support::cache(&ctx);
    let long_tag = "t".repeat(2_000);
    let too_many = (0..=MAX_TAGS).fold(EntryOptions::new(), |o, i| o.tag(format!("t{i}")));
    let bad = [
        ("zero ttl", EntryOptions::new().ttl(Duration::ZERO)),
        (
            "sub-millisecond ttl",
            EntryOptions::new().ttl(Duration::from_micros(999)),
        ),
        ("Duration::MAX ttl", EntryOptions::new().ttl(Duration::MAX)),
        (
            "ttl past MAX_TTL",
            EntryOptions::new().ttl(MAX_TTL + Duration::from_millis(1)),
        ),
        ("too many tags", too_many),
        ("empty tag", EntryOptions::new().tag("ok").tag("")),
        ("tag too long for a key", EntryOptions::new().tag(long_tag)),
    ];
    let before = commands(ctx.redis()).await;
    let runs = AtomicUsize::new(0);
    for (what, opts) in &bad {
        let set = cache.set_with("p", &1u32, opts).await;
        assert!(is_invalid(&set), "{what}: set_with gave {set:?}");
        let loaded = cache
            .get_or_load_with("p", opts, || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(Some(1u32))
            })
            .await;
        assert!(
            is_invalid(&loaded),
            "{what}: get_or_load_with gave {loaded:?}"
        );
        for mode in [WriteMode::Update, WriteMode::Invalidate] {
            let written = cache
                .write_through_with("p", mode, opts, || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(1u32)
                })
                .await;
            assert!(
                is_invalid(&written),
                "{what}: write_through_with gave {written:?}"
            );
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "a loader or writer ran");
    assert_eq!(commands(ctx.redis()).await, before, "a command was sent");
    assert!(ctx.keys().await.is_empty());
}

#[tokio::test]
async fn options_at_their_limits_are_stored() {
    let ctx = TestContext::new().await;
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .jitter(0.0)
        .grace(Duration::ZERO)
        .build()
        .unwrap();
    let longest = EntryOptions::new().ttl(MAX_TTL);
    cache.set_with("long", &1u32, &longest).await.unwrap();
    assert_eq!(cache.get::<u32>("long").await.unwrap(), Some(1));
    let pttl = support::pttl(&ctx, cache.key("long").unwrap()).await;
    let max_ms = i64::try_from(MAX_TTL.as_millis()).unwrap();
    assert!(pttl > max_ms - 60_000 && pttl <= max_ms, "{pttl}");

    let shortest = EntryOptions::new().ttl(Duration::from_millis(1));
    cache.set_with("short", &2u32, &shortest).await.unwrap();

    let most = (0..MAX_TAGS).fold(EntryOptions::new(), |o, i| o.tag(format!("t{i}")));
    cache.set_with("tagged", &3u32, &most).await.unwrap();
    assert_eq!(cache.get::<u32>("tagged").await.unwrap(), Some(3));
    cache.invalidate_tag("t63").await.unwrap();
    assert_eq!(cache.get::<u32>("tagged").await.unwrap(), None);
}

#[tokio::test]
async fn settings_past_max_ttl_are_refused_by_build() {
    let ctx = TestContext::new().await;
    let b = || Cache::builder(ctx.redis().clone(), &ctx.keyspace());
    let over = MAX_TTL + Duration::from_millis(1);
    let built = [
        ("ttl", b().ttl(over).build()),
        ("ttl MAX", b().ttl(Duration::MAX).build()),
        ("grace", b().grace(over).build()),
        ("negative ttl", b().negative_ttl(over).build()),
        ("lease ttl", b().lease_ttl(over).build()),
        ("tag ttl", b().tag_ttl(over).build()),
        ("version ttl", b().version_ttl(over).build()),
        (
            "near ttl",
            b().near_cache(NearCacheConfig::new(10).ttl(Duration::MAX))
                .build(),
        ),
        (
            "zero near ttl",
            b().near_cache(NearCacheConfig::new(10).ttl(Duration::ZERO))
                .build(),
        ),
    ];
    for (what, built) in built {
        assert!(is_invalid(&built), "{what}: {built:?}");
    }
    // Every limit itself is accepted, and lease_wait takes any duration.
    let at_limit = b()
        .ttl(MAX_TTL)
        .grace(MAX_TTL)
        .negative_ttl(MAX_TTL)
        .lease_ttl(MAX_TTL)
        .tag_ttl(MAX_TTL)
        .version_ttl(MAX_TTL)
        .lease_wait(Duration::MAX)
        .build()
        .unwrap();
    at_limit.set("p", &1u32).await.unwrap();
    assert_eq!(at_limit.get::<u32>("p").await.unwrap(), Some(1));
}
