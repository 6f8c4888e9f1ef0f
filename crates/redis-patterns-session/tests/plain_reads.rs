//! Reads that need not record the access are plain commands: no script reaches the server
//! (counted with `INFO commandstats` on the test's own server). A read that is due to record it
//! runs the script and moves the deadline; a timeout shortened since the session was written is
//! still enforced.

mod support;

use std::{
    collections::HashMap,
    time::{Duration, UNIX_EPOCH},
};

use redis_core::{Key, Redis, redis};
use redis_test_support::{TestContext, command_calls, wait_until};
use support::{cart, store};

/// How often `name` ran between two `calls` snapshots.
fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, name: &str) -> u64 {
    after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
}

/// Script calls of any kind.
fn scripts(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> u64 {
    [
        "eval",
        "evalsha",
        "eval_ro",
        "evalsha_ro",
        "fcall",
        "fcall_ro",
    ]
    .iter()
    .map(|name| delta(before, after, name))
    .sum()
}

async fn ms(redis: &Redis, cmd: &mut redis::Cmd) -> u64 {
    redis.query(cmd).await.unwrap()
}

async fn seen(redis: &Redis, key: &Key) -> u64 {
    support::stored_seen(redis, key).await
}

async fn expiry(redis: &Redis, key: &Key) -> u64 {
    ms(redis, redis::cmd("PEXPIRETIME").arg(key)).await
}

#[tokio::test]
async fn reads_within_the_touch_interval_send_no_script() {
    let ctx = TestContext::private().await;
    let store = store(&ctx, 60_000, 600_000, 30_000);
    let anonymous = store.create(&cart()).await.unwrap();
    let owned = store.create_for_user("dora", &cart()).await.unwrap();
    let unknown = store.create(&cart()).await.unwrap();
    assert!(store.destroy(&unknown).await.unwrap());

    let before = command_calls(ctx.redis()).await;
    for _ in 0..10 {
        let session = store.load(&anonymous).await.unwrap().expect("live");
        assert_eq!(session.deserialize::<support::Cart>().unwrap(), cart());
        assert_eq!(
            store.load(&owned).await.unwrap().expect("live").user(),
            Some("dora")
        );
        assert!(store.touch(&anonymous).await.unwrap());
    }
    assert!(store.load(&unknown).await.unwrap().is_none());
    assert!(!store.touch(&unknown).await.unwrap());
    let after = command_calls(ctx.redis()).await;

    assert_eq!(scripts(&before, &after), 0, "{after:?}");
    assert_eq!(delta(&before, &after, "get"), 21);
    assert_eq!(delta(&before, &after, "getrange"), 11);
}

#[tokio::test]
async fn a_read_due_to_record_the_access_runs_the_script_and_moves_the_deadline() {
    let ctx = TestContext::private().await;
    let redis = ctx.redis().clone();
    let store = store(&ctx, 60_000, 600_000, 200);
    let id = store.create(&cart()).await.unwrap();
    let key = store.key_of(&id).unwrap().unwrap();
    let (seen_before, deadline_before) = (seen(&redis, &key).await, expiry(&redis, &key).await);
    assert_eq!(deadline_before, seen_before + 60_000);

    // Loads are plain until 200 ms (server clock) have passed since the last recorded access;
    // the first load after that records it.
    let before = command_calls(&redis).await;
    wait_until(
        "a load to record the access",
        Duration::from_secs(10),
        || {
            let (store, id, redis, key) = (store.clone(), id.clone(), redis.clone(), key.clone());
            async move {
                assert!(store.load(&id).await.unwrap().is_some());
                expiry(&redis, &key).await > deadline_before
            }
        },
    )
    .await;
    let after = command_calls(&redis).await;
    assert!(scripts(&before, &after) >= 1, "{after:?}");

    let seen_after = seen(&redis, &key).await;
    assert!(
        seen_after >= seen_before + 200,
        "{seen_before} -> {seen_after}"
    );
    let deadline_after = expiry(&redis, &key).await;
    assert_eq!(deadline_after, seen_after + 60_000);

    // What a load reports agrees with the server.
    let session = store.load(&id).await.unwrap().unwrap();
    let last_seen = session.last_seen().duration_since(UNIX_EPOCH).unwrap();
    assert!(last_seen >= Duration::from_millis(seen_after));
    assert_eq!(
        session
            .expires_at()
            .duration_since(session.last_seen())
            .unwrap(),
        Duration::from_secs(60)
    );
}

#[tokio::test]
async fn a_shortened_idle_timeout_applies_to_sessions_written_before() {
    let ctx = TestContext::private().await;
    let redis = ctx.redis().clone();
    let id = store(&ctx, 60_000, 600_000, 30_000)
        .create(&cart())
        .await
        .unwrap();
    // The same sessions, read with a 1 s idle timeout: the key still lives for a minute.
    let strict = store(&ctx, 1_000, 600_000, 500);
    let key = strict.key_of(&id).unwrap().unwrap();
    let seen = seen(&redis, &key).await;
    wait_until(
        "1 s of server time without access",
        Duration::from_secs(10),
        || {
            let redis = redis.clone();
            async move {
                let now = redis.server_time().await.unwrap();
                now >= Duration::from_millis(seen + 1_000)
            }
        },
    )
    .await;
    assert!(strict.load(&id).await.unwrap().is_none());
    let exists: bool = redis.query(redis::cmd("EXISTS").arg(&key)).await.unwrap();
    assert!(!exists, "the script deletes the timed-out session");
}

#[tokio::test]
async fn an_anonymous_create_is_one_plain_set_once_the_store_knows_the_servers_clock() {
    let ctx = TestContext::private().await;
    let redis = ctx.redis().clone();
    let store = store(&ctx, 60_000, 600_000, 30_000);
    // A new store has not read the server's clock yet: its first create runs the script (sent
    // twice when the server does not hold it yet: NOSCRIPT, load, again).
    let before = command_calls(&redis).await;
    store.create(&cart()).await.unwrap();
    let after = command_calls(&redis).await;
    assert!(scripts(&before, &after) >= 1, "{after:?}");

    let before = command_calls(&redis).await;
    let id = store.create(&cart()).await.unwrap();
    let after = command_calls(&redis).await;
    assert_eq!(scripts(&before, &after), 0, "{after:?}");
    assert_eq!(delta(&before, &after, "set"), 1);

    // Its times are the server's clock as the script read it, carried forward: never ahead of
    // the server, and behind it by no more than the time since that read.
    let server_now = redis.server_time().await.unwrap();
    let session = store.load(&id).await.unwrap().expect("live");
    let created = session.created_at().duration_since(UNIX_EPOCH).unwrap();
    assert!(created <= server_now, "{created:?} > {server_now:?}");
    assert!(
        server_now - created < Duration::from_secs(5),
        "{created:?} vs {server_now:?}"
    );
    let key = store.key_of(&id).unwrap().unwrap();
    assert_eq!(
        expiry(&redis, &key).await,
        u64::try_from(created.as_millis()).unwrap() + 60_000
    );
}

#[tokio::test]
async fn a_session_of_the_older_hash_layout_reads_as_missing_and_corrupt_fields_are_errors() {
    let ctx = TestContext::private().await;
    let redis = ctx.redis().clone();
    let store = store(&ctx, 60_000, 600_000, 30_000);
    let id = store.create(&cart()).await.unwrap();
    let key = store.key_of(&id).unwrap().unwrap();

    let _: () = redis.query(redis::cmd("DEL").arg(&key)).await.unwrap();
    let _: () = redis
        .query(
            redis::cmd("HSET")
                .arg(&key)
                .arg("__created")
                .arg(1)
                .arg("__seen")
                .arg(1)
                .arg("theme")
                .arg("\"dark\""),
        )
        .await
        .unwrap();
    assert!(store.load(&id).await.unwrap().is_none());
    assert!(!store.touch(&id).await.unwrap());
    assert!(!store.set_field(&id, "theme", "light").await.unwrap());
    assert!(store.rotate(&id).await.unwrap().is_none());

    // A well-formed header over fields that are not a map: a typed error, never a panic.
    let now = u64::try_from(redis.server_time().await.unwrap().as_millis()).unwrap();
    let mut corrupt = format!("S1{now:016}{now:016}{:08}", 0).into_bytes();
    corrupt.extend_from_slice(b"\xc1not a map");
    let _: () = redis.query(redis::cmd("DEL").arg(&key)).await.unwrap();
    let _: () = redis
        .query(
            redis::cmd("SET")
                .arg(&key)
                .arg(corrupt)
                .arg("PX")
                .arg(60_000),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.load(&id).await,
        Err(redis_session::Error::Core(_))
    ));
}
