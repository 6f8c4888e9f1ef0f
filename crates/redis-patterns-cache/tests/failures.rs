//! Corrupt payloads and an unreachable Redis under each failure policy.

use redis_core::redis;
use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use redis_cache::{Cache, ErrorPredicates, FailurePolicy};
use redis_test_support::{TestContext, wait_until};

mod support;

#[tokio::test]
async fn a_corrupt_payload_is_a_miss_and_is_removed() {
    let ctx = TestContext::new().await;
    let cache = support::cache(&ctx);
    let key = cache.key("p").unwrap();
    let garbage: &[&[u8]] = &[
        b"\xff\x00garbage",
        b"{\"plain\":\"json\"}",
        b"",
        // A valid envelope whose payload is not JSON.
        b"\xca\x01\x00\x00\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x01\x00\x00{not json",
    ];
    for bytes in garbage {
        let _: () = ctx
            .redis()
            .query(redis::cmd("SET").arg(&key).arg(*bytes).arg("EX").arg(60))
            .await
            .unwrap();
        assert_eq!(cache.get::<Vec<u32>>("p").await.unwrap(), None);
        assert!(
            !support::exists(&ctx, &key).await,
            "corrupt entry {bytes:?} was not removed"
        );
    }

    // get_or_load treats it as a miss and replaces it.
    let _: () = ctx
        .redis()
        .query(redis::cmd("SET").arg(&key).arg("junk").arg("EX").arg(60))
        .await
        .unwrap();
    let got = cache
        .get_or_load("p", || async { Ok::<_, std::io::Error>(Some(vec![1u32])) })
        .await
        .unwrap();
    assert_eq!(got, Some(vec![1]));
    assert_eq!(cache.get::<Vec<u32>>("p").await.unwrap(), Some(vec![1]));

    // A value of another type decodes as corrupt too: a miss, not a panic.
    assert_eq!(cache.get::<String>("p").await.unwrap(), None);

    // A key of another Redis type is not a payload: an error (even failing open), left alone.
    let _: () = ctx
        .redis()
        .query(redis::cmd("HSET").arg(&key).arg("f").arg("v"))
        .await
        .unwrap();
    let _: () = ctx
        .redis()
        .query(redis::cmd("EXPIRE").arg(&key).arg(60))
        .await
        .unwrap();
    assert!(cache.get::<Vec<u32>>("p").await.is_err());
    let kind: String = ctx
        .redis()
        .query(redis::cmd("TYPE").arg(&key))
        .await
        .unwrap();
    assert_eq!(kind, "hash");
}

#[tokio::test]
async fn a_killed_server_fails_open_or_closed_as_configured() {
    let mut ctx = TestContext::private().await;
    let open = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .failure_policy(FailurePolicy::FailOpen)
        .build()
        .unwrap();
    let closed = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .failure_policy(FailurePolicy::FailClosed)
        .build()
        .unwrap();
    open.set("warm", &1u32).await.unwrap();
    assert_eq!(closed.get::<u32>("warm").await.unwrap(), Some(1));

    ctx.server().unwrap().kill();
    let loads = AtomicUsize::new(0);

    // Fail open: the loader answers, reads are misses.
    let got = open
        .get_or_load("k", || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Some(7u32))
        })
        .await
        .unwrap();
    assert_eq!(got, Some(7));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(open.get::<u32>("warm").await.unwrap(), None);

    // Fail closed: an error the caller can classify, and the loader is not called.
    let err = closed
        .get_or_load("k", || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Some(7u32))
        })
        .await
        .unwrap_err();
    assert!(err.is_retryable() && err.is_connection_error(), "{err:?}");
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert!(closed.get::<u32>("warm").await.is_err());
    // Writes fail under both policies.
    assert!(open.set("x", &1u32).await.is_err());

    // Back up: both recover by themselves.
    ctx.server().unwrap().restart();
    wait_until(
        "the cache to reach redis again",
        Duration::from_secs(20),
        || {
            let closed = closed.clone();
            async move { closed.set("after", &2u32).await.is_ok() }
        },
    )
    .await;
    assert_eq!(open.get::<u32>("after").await.unwrap(), Some(2));
}

/// Redis dies while a load is running (it holds the lease and will fill): the caller still gets
/// the loaded value under both policies (the failed fill and lease release are logged, not
/// returned), and the same handle works again once Redis is back.
#[tokio::test]
async fn a_server_killed_mid_load_still_returns_the_loaded_value() {
    let mut ctx = TestContext::private().await;
    for (policy, value) in [
        (FailurePolicy::FailOpen, 7u32),
        (FailurePolicy::FailClosed, 8),
    ] {
        let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
            .failure_policy(policy)
            .build()
            .unwrap();
        let name = format!("k{value}");
        let server = ctx.server().unwrap();
        let got = cache
            .get_or_load(&name, || async {
                server.kill();
                Ok::<_, std::io::Error>(Some(value))
            })
            .await
            .unwrap();
        assert_eq!(got, Some(value), "{policy:?}");
        assert_eq!(cache.loads_in_flight(), 0);

        ctx.server().unwrap().restart();
        wait_until(
            "the cache to reach redis again",
            Duration::from_secs(20),
            || {
                let cache = cache.clone();
                async move { cache.set("probe", &0u32).await.is_ok() }
            },
        )
        .await;
        // The restarted server is empty; the same cache handle loads and fills again.
        let got = cache
            .get_or_load(&name, || async {
                Ok::<_, std::io::Error>(Some(value + 100))
            })
            .await
            .unwrap();
        assert_eq!(got, Some(value + 100));
        assert_eq!(cache.get::<u32>(&name).await.unwrap(), Some(value + 100));
    }
}

#[cfg(feature = "msgpack")]
#[tokio::test]
async fn the_msgpack_codec_round_trips() {
    let ctx = TestContext::new().await;
    let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
        .codec(redis_core::codec::MsgPack)
        .build()
        .unwrap();
    cache.set("p", &vec![1u32, 2]).await.unwrap();
    assert_eq!(cache.get::<Vec<u32>>("p").await.unwrap(), Some(vec![1, 2]));
}
