//! Idle and absolute timeouts, enforced by the server, and the throttling of recorded accesses.

mod support;

use std::time::{Duration, SystemTime};

use redis_core::redis;
use redis_test_support::{TestContext, wait_until};
use support::{cart, store};

#[tokio::test]
async fn an_idle_session_expires_and_access_keeps_it_alive() {
    let ctx = TestContext::new().await;
    // Idle 2.5 s: the busy session survives scheduling stalls of a loaded machine between touches.
    let store = store(&ctx, 2_500, 600_000, 0);
    let kept = store.create(&cart()).await.unwrap();
    // Taken before the create, so the left session cannot expire sooner than idle after it.
    let started = SystemTime::now();
    let left = store.create(&cart()).await.unwrap();
    let left_key = store.key_of(&left).unwrap().unwrap();

    // Keep one session busy until the other, untouched one is gone.
    wait_until(
        "the idle session to expire",
        Duration::from_secs(20),
        || {
            let store = store.clone();
            let kept = kept.clone();
            let left_key = left_key.clone();
            async move {
                assert!(store.touch(&kept).await.unwrap(), "busy session expired");
                let exists: bool = store
                    .redis()
                    .query(redis::cmd("EXISTS").arg(&left_key))
                    .await
                    .unwrap();
                !exists
            }
        },
    )
    .await;
    // The server clock counts whole milliseconds: allow for one of rounding.
    assert!(started.elapsed().unwrap() >= Duration::from_millis(2_499));
    assert!(store.load(&left).await.unwrap().is_none());
    let busy = store
        .load(&kept)
        .await
        .unwrap()
        .expect("busy session lives");
    assert!(busy.last_seen() > busy.created_at());

    // Once left alone, the busy one expires too, on the server.
    let kept_key = store.key_of(&kept).unwrap().unwrap();
    wait_until(
        "the second session to expire",
        Duration::from_secs(20),
        || {
            let redis = ctx.redis().clone();
            let key = kept_key.clone();
            async move {
                let exists: bool = redis.query(redis::cmd("EXISTS").arg(&key)).await.unwrap();
                !exists
            }
        },
    )
    .await;
    assert!(store.load(&kept).await.unwrap().is_none());
}

#[tokio::test]
async fn an_active_session_still_ends_at_the_absolute_timeout() {
    let ctx = TestContext::new().await;
    // Idle 2 s (loads every 10 ms keep it alive even through stalls), absolute 3 s.
    let store = store(&ctx, 2_000, 3_000, 0);
    let id = store.create(&cart()).await.unwrap();
    let first = store.load(&id).await.unwrap().unwrap();
    let created = first.created_at();
    assert!(first.expires_at() <= created + Duration::from_millis(3_000));

    // Every probe is an access, so the idle timeout never fires; the absolute one does.
    let last_alive = std::sync::Arc::new(std::sync::Mutex::new(created));
    wait_until("the absolute timeout", Duration::from_secs(20), || {
        let store = store.clone();
        let id = id.clone();
        let last_alive = last_alive.clone();
        async move {
            match store.load(&id).await.unwrap() {
                Some(s) => {
                    assert!(s.expires_at() <= s.created_at() + Duration::from_millis(3_000));
                    *last_alive.lock().unwrap() = s.last_seen();
                    false
                }
                None => true,
            }
        }
    })
    .await;
    let last_alive = *last_alive.lock().unwrap();
    assert!(
        last_alive.duration_since(created).unwrap() >= Duration::from_millis(2_000),
        "the session should have outlived its idle timeout through activity"
    );
    assert!(!store.touch(&id).await.unwrap());
    assert!(!store.set_field(&id, "x", &1).await.unwrap());
    assert!(
        ctx.keys().await.is_empty(),
        "expired session left keys behind"
    );
}

#[tokio::test]
async fn reads_within_the_touch_interval_write_nothing() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 30_000);
    let id = store.create(&cart()).await.unwrap();
    let key = store.key_of(&id).unwrap().unwrap();
    let seen = |redis: redis_core::Redis, key: redis_core::Key| async move {
        support::stored_seen(&redis, &key).await
    };
    let before = seen(ctx.redis().clone(), key.clone()).await;
    let ttl_before: i64 = ctx
        .redis()
        .query(redis::cmd("PTTL").arg(&key))
        .await
        .unwrap();
    for _ in 0..20 {
        store.load(&id).await.unwrap().unwrap();
        assert!(store.touch(&id).await.unwrap());
    }
    assert_eq!(seen(ctx.redis().clone(), key.clone()).await, before);
    let ttl_after: i64 = ctx
        .redis()
        .query(redis::cmd("PTTL").arg(&key))
        .await
        .unwrap();
    assert!(
        ttl_after <= ttl_before,
        "deadline moved: {ttl_before} -> {ttl_after}"
    );

    // A write is an access and always records it.
    wait_until(
        "a later write to record a new access",
        Duration::from_secs(10),
        || {
            let store = store.clone();
            let id = id.clone();
            let redis = ctx.redis().clone();
            let key = key.clone();
            async move {
                assert!(store.set_field(&id, "tick", &1).await.unwrap());
                seen(redis, key).await > before
            }
        },
    )
    .await;
}
