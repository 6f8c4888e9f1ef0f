//! The session store against a real Redis: ids, data, timeouts, rotation, users.

mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use redis_core::redis;
use redis_session::{Error, SessionId, SessionStore};
use redis_test_support::{TestContext, wait_until};
use serde::{Deserialize, Serialize};
use support::{contains, dump, store};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
    total_cents: u64,
    theme: Option<String>,
}

fn cart() -> Cart {
    Cart {
        items: vec!["lamp".into(), "desk".into()],
        total_cents: 12_999,
        theme: Some("dark".into()),
    }
}

#[tokio::test]
async fn created_sessions_load_typed_by_field_and_as_a_whole() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 1_000);
    let id = store.create(&cart()).await.unwrap();
    assert_eq!(id.as_str().len(), redis_session::ID_LEN);

    let session = store.load(&id).await.unwrap().expect("live session");
    assert_eq!(session.id(), &id);
    assert_eq!(session.user(), None);
    assert_eq!(session.get::<u64>("total_cents").unwrap(), Some(12_999));
    assert_eq!(session.get::<String>("missing").unwrap(), None);
    assert_eq!(session.deserialize::<Cart>().unwrap(), cart());
    assert_eq!(
        session.field_names().collect::<Vec<_>>(),
        ["items", "theme", "total_cents"]
    );
    assert!(session.get::<u64>("theme").unwrap_err().is_decode_error());
    assert!(session.created_at() <= session.last_seen());
    let lifetime = session
        .expires_at()
        .duration_since(session.last_seen())
        .unwrap();
    assert_eq!(lifetime, Duration::from_secs(60));

    // The server holds the same deadline.
    let key = store.key_of(&id).unwrap().unwrap();
    let pttl: i64 = ctx
        .redis()
        .query(redis::cmd("PTTL").arg(&key))
        .await
        .unwrap();
    assert!((1..=60_000).contains(&pttl), "{pttl}");
}

#[tokio::test]
async fn the_raw_id_never_appears_in_redis() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 0);
    let mut ids = Vec::new();
    let anon = store.create(&cart()).await.unwrap();
    store.set_field(&anon, "note", "hello").await.unwrap();
    ids.push(anon.clone());
    let logged_in = store
        .rotate_for_user(&anon, "alice")
        .await
        .unwrap()
        .unwrap();
    ids.push(logged_in.clone());
    ids.push(store.rotate(&logged_in).await.unwrap().unwrap());
    ids.push(store.create_for_user("alice", &cart()).await.unwrap());
    ids.push(store.create_for_user("bob", &cart()).await.unwrap());
    for id in &ids {
        // Storing an id inside the data is the application's business; the store itself never does.
        store.load(id).await.unwrap();
    }
    store.list_user("alice").await.unwrap();

    let keys = ctx.keys().await;
    assert!(keys.len() >= 5, "{keys:?}");
    let everything = dump(ctx.redis(), &keys).await;
    for id in &ids {
        let secret = &id.as_str()[..43];
        for blob in &everything {
            assert!(!contains(blob, id.as_str().as_bytes()), "id found in Redis");
            assert!(
                !contains(blob, secret.as_bytes()),
                "id secret found in Redis"
            );
            // Not even a sizeable piece of the secret.
            for piece in secret.as_bytes().chunks(12).filter(|c| c.len() == 12) {
                assert!(!contains(blob, piece), "part of an id found in Redis");
            }
        }
    }
}

/// Everything the server receives, as MONITOR reports it (commands from clients and from scripts),
/// collected by a raw connection on a private server.
async fn monitor(port: u16) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(b"MONITOR\r\n").await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let probe = seen.clone();
    wait_until("MONITOR to start", Duration::from_secs(10), || {
        let probe = probe.clone();
        async move { contains(&probe.lock().unwrap(), b"+OK") }
    })
    .await;
    seen
}

#[tokio::test]
async fn the_raw_id_is_never_sent_to_redis_nor_shown_by_debug() {
    let mut ctx = TestContext::private().await;
    let port = ctx.server().expect("private server").port();
    let seen = monitor(port).await;
    let store = store(&ctx, 60_000, 600_000, 0);

    let mut ids = Vec::new();
    let anon = store.create(&cart()).await.unwrap();
    store.set_field(&anon, "note", "hello").await.unwrap();
    store.remove_field(&anon, "note").await.unwrap();
    store.touch(&anon).await.unwrap();
    ids.push(anon.clone());
    let rotated = store.rotate(&anon).await.unwrap().unwrap();
    ids.push(rotated.clone());
    let logged_in = store
        .rotate_for_user(&rotated, "alice")
        .await
        .unwrap()
        .unwrap();
    ids.push(logged_in.clone());
    let again = store.rotate(&logged_in).await.unwrap().unwrap();
    ids.push(again.clone());
    let second = store.create_for_user("alice", &cart()).await.unwrap();
    ids.push(second.clone());
    let session = store.load(&again).await.unwrap().unwrap();
    let listed = store.list_user("alice").await.unwrap();
    assert!(store.destroy(&second).await.unwrap());
    assert_eq!(store.revoke_user("alice").await.unwrap(), 1);

    let _: String = ctx
        .redis()
        .query(redis::cmd("ECHO").arg("end-of-session-test"))
        .await
        .unwrap();
    let probe = seen.clone();
    wait_until("MONITOR to catch up", Duration::from_secs(10), || {
        let probe = probe.clone();
        async move { contains(&probe.lock().unwrap(), b"end-of-session-test") }
    })
    .await;
    let traffic = seen.lock().unwrap().clone();
    // The session operations were captured: their keys (digests) are there.
    for id in &ids {
        let key = store.key_of(id).unwrap().unwrap();
        assert!(
            contains(&traffic, key.as_str().as_bytes()),
            "{key} not seen"
        );
    }
    let shown = format!("{session:?} {listed:?} {store:?} {ids:?}");
    for id in &ids {
        let secret = &id.as_str()[..43];
        for piece in secret.as_bytes().chunks(12).filter(|c| c.len() == 12) {
            assert!(!contains(&traffic, piece), "part of an id sent to Redis");
            assert!(!contains(shown.as_bytes(), piece), "part of an id in Debug");
        }
    }
}

#[tokio::test]
async fn garbage_and_tampered_ids_are_none_never_errors() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 0);
    let id = store.create(&cart()).await.unwrap();
    let s = id.as_str();
    let flip = |i: usize| {
        let mut b = s.as_bytes().to_vec();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let mut bad = vec![
        String::new(),
        "x".into(),
        "!".repeat(45),
        "é".repeat(23),
        format!("{s}A"),
        s[..44].to_owned(),
        s.to_uppercase(),
        flip(0),
        flip(20),
        flip(43),
        flip(44),
        "\0".repeat(45),
        "../../etc/passwd".into(),
        "{tag}".repeat(9),
        SessionId::parse(&"A".repeat(45)).unwrap().to_string(),
    ];
    bad.retain(|b| b != s);
    for garbage in &bad {
        assert!(store.load(garbage).await.unwrap().is_none(), "{garbage:?}");
        assert!(!store.touch(garbage).await.unwrap());
        assert!(!store.set_field(garbage, "x", &1).await.unwrap());
        assert!(!store.remove_field(garbage, "items").await.unwrap());
        assert!(store.rotate(garbage).await.unwrap().is_none());
        assert!(
            store
                .rotate_for_user(garbage, "mallory")
                .await
                .unwrap()
                .is_none()
        );
        assert!(!store.destroy(garbage).await.unwrap());
    }
    assert!(store.list_user("mallory").await.unwrap().is_empty());
    // Nothing was created by all that, and the real session is untouched.
    assert_eq!(ctx.keys().await.len(), 1);
    assert!(store.load(&id).await.unwrap().is_some());
}

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
        redis
            .query::<u64>(redis::cmd("HGET").arg(&key).arg("__seen"))
            .await
            .unwrap()
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

#[tokio::test]
async fn fields_update_one_by_one_and_reserved_names_are_refused() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 1_000);
    let id = store.create(&cart()).await.unwrap();

    assert!(store.set_field(&id, "theme", "light").await.unwrap());
    assert!(store.remove_field(&id, "items").await.unwrap());
    let mut extra = BTreeMap::new();
    extra.insert("locale", "fr");
    extra.insert("tz", "Europe/Paris");
    assert!(store.update(&id, &extra).await.unwrap());
    let s = store.load(&id).await.unwrap().unwrap();
    assert_eq!(s.get::<String>("theme").unwrap().as_deref(), Some("light"));
    assert_eq!(s.get::<Vec<String>>("items").unwrap(), None);
    assert_eq!(s.get::<u64>("total_cents").unwrap(), Some(12_999));
    assert_eq!(
        s.get::<String>("tz").unwrap().as_deref(),
        Some("Europe/Paris")
    );

    assert!(matches!(
        store.set_field(&id, "__user", "root").await,
        Err(Error::InvalidField(_))
    ));
    assert!(matches!(
        store.set_field(&id, "", &1).await,
        Err(Error::InvalidField(_))
    ));
    assert!(matches!(
        store.remove_field(&id, "__created").await,
        Err(Error::InvalidField(_))
    ));
    let mut sneaky = BTreeMap::new();
    sneaky.insert("__seen", 0);
    assert!(matches!(
        store.create(&sneaky).await,
        Err(Error::InvalidField(_))
    ));
    assert!(matches!(
        store.update(&id, &sneaky).await,
        Err(Error::InvalidField(_))
    ));
    assert!(matches!(store.create(&42).await, Err(Error::NotAMap(_))));
    assert!(matches!(
        store.create(&vec![1]).await,
        Err(Error::NotAMap(_))
    ));
    let empty = store.create(&()).await.unwrap();
    assert_eq!(
        store
            .load(&empty)
            .await
            .unwrap()
            .unwrap()
            .field_names()
            .count(),
        0
    );
    assert_eq!(s.user(), None);
    assert_eq!(
        store.load(&id).await.unwrap().unwrap().user(),
        None,
        "refused writes changed nothing"
    );

    // Updates to a destroyed session create nothing.
    assert!(store.destroy(&id).await.unwrap());
    assert!(!store.destroy(&id).await.unwrap());
    assert!(!store.set_field(&id, "theme", "x").await.unwrap());
    assert!(!store.update(&id, &extra).await.unwrap());
    assert!(store.key_of(&id).unwrap().is_some());
    let exists: bool = ctx
        .redis()
        .query(redis::cmd("EXISTS").arg(store.key_of(&id).unwrap().unwrap()))
        .await
        .unwrap();
    assert!(!exists);
}

#[tokio::test]
async fn sessions_with_thousands_of_fields_are_written_in_chunks() {
    // More arguments than Lua can unpack at once (about 8000): the scripts must chunk them.
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 0);
    let big: BTreeMap<String, u32> = (0..5_000).map(|i| (format!("f{i}"), i)).collect();
    let id = store.create_for_user("ivy", &big).await.unwrap();
    let s = store.load(&id).await.unwrap().unwrap();
    assert_eq!(s.field_names().count(), 5_000);
    assert_eq!(s.user(), Some("ivy"));
    assert_eq!(s.deserialize::<BTreeMap<String, u32>>().unwrap(), big);

    let more: BTreeMap<String, u32> = (5_000..10_000).map(|i| (format!("f{i}"), i)).collect();
    assert!(store.update(&id, &more).await.unwrap());
    let s = store.load(&id).await.unwrap().unwrap();
    assert_eq!(s.field_names().count(), 10_000);
    assert_eq!(s.get::<u32>("f9999").unwrap(), Some(9_999));
    assert_eq!(s.get::<u32>("f0").unwrap(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_to_different_fields_lose_nothing() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 0);
    let id = store.create_for_user("carol", &cart()).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    assert!(
                        store
                            .set_field(&id, &format!("t{t}-{i}"), &(t * 1000 + i))
                            .await
                            .unwrap()
                    );
                    if i % 10 == 0 {
                        store.load(&id).await.unwrap().unwrap();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let s = store.load(&id).await.unwrap().unwrap();
    for t in 0..8 {
        for i in 0..40 {
            assert_eq!(
                s.get::<i32>(&format!("t{t}-{i}")).unwrap(),
                Some(t * 1000 + i),
                "t{t}-{i} lost"
            );
        }
    }
    assert_eq!(s.deserialize::<Cart>().unwrap(), cart());
    assert_eq!(s.user(), Some("carol"));
}

#[tokio::test]
async fn rotation_moves_the_data_and_kills_the_old_id() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 0);
    let old = store.create_for_user("dave", &cart()).await.unwrap();
    let before = store.load(&old).await.unwrap().unwrap();

    let new = store.rotate(&old).await.unwrap().expect("rotated");
    assert_ne!(new, old);
    assert!(store.load(&old).await.unwrap().is_none());
    assert!(!store.set_field(&old, "theme", "x").await.unwrap());
    assert!(
        store.rotate(&old).await.unwrap().is_none(),
        "old id rotates no more"
    );
    let after = store.load(&new).await.unwrap().unwrap();
    assert_eq!(after.deserialize::<Cart>().unwrap(), cart());
    assert_eq!(after.user(), Some("dave"));
    assert_eq!(
        after.created_at(),
        before.created_at(),
        "absolute timeout keeps counting"
    );

    // The user's index follows the rotation, in the same script (no list_user needed).
    assert_eq!(index_members(&ctx, &store, "dave").await, 1);
    let listed = store.list_user("dave").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(store.revoke_user("dave").await.unwrap(), 1);
    assert!(store.load(&new).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_of_one_id_yield_exactly_one_new_id() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 0);
    for user in [None, Some("ruth")] {
        let old = match user {
            Some(user) => store.create_for_user(user, &cart()).await.unwrap(),
            None => store.create(&cart()).await.unwrap(),
        };
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let old = old.clone();
                tokio::spawn(async move { store.rotate(&old).await.unwrap() })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(task.await.unwrap());
        }
        assert_eq!(
            winners.len(),
            1,
            "one rotation wins, the others see no session"
        );
        assert!(store.load(&old).await.unwrap().is_none());
        let s = store.load(&winners[0]).await.unwrap().unwrap();
        assert_eq!(s.deserialize::<Cart>().unwrap(), cart());
        assert_eq!(s.user(), user);
    }
    assert_eq!(index_members(&ctx, &store, "ruth").await, 1);
    assert_eq!(ctx.keys().await.len(), 3, "two sessions and one index");
}

#[tokio::test]
async fn login_moves_an_anonymous_session_to_its_user() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 0);
    let anonymous = store.create(&cart()).await.unwrap();
    store.set_field(&anonymous, "csrf", "abc").await.unwrap();

    let logged_in = store
        .rotate_for_user(&anonymous, "erin")
        .await
        .unwrap()
        .expect("logged in");
    assert!(store.load(&anonymous).await.unwrap().is_none());
    let s = store.load(&logged_in).await.unwrap().unwrap();
    assert_eq!(s.user(), Some("erin"));
    assert_eq!(s.get::<String>("csrf").unwrap().as_deref(), Some("abc"));
    assert_eq!(
        s.deserialize::<serde_json::Value>().unwrap()["total_cents"],
        12_999
    );
    assert_eq!(store.list_user("erin").await.unwrap().len(), 1);
    assert!(
        store
            .rotate_for_user(&anonymous, "erin")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.rotate_for_user(&logged_in, "").await,
        Err(Error::Core(_))
    ));
}

#[tokio::test]
async fn logging_a_users_session_in_as_another_leaves_the_first_users_index() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 0);
    let gina = store.create_for_user("gina", &cart()).await.unwrap();
    assert_eq!(index_members(&ctx, &store, "gina").await, 1);
    let hank = store
        .rotate_for_user(&gina, "hank")
        .await
        .unwrap()
        .expect("logged in");
    // No list_user in between: the move itself drops the member (and the emptied index).
    assert_eq!(index_members(&ctx, &store, "gina").await, 0);
    assert_eq!(index_members(&ctx, &store, "hank").await, 1);
    assert!(store.load(&gina).await.unwrap().is_none());
    assert_eq!(
        store.load(&hank).await.unwrap().unwrap().user(),
        Some("hank")
    );
    assert_eq!(store.revoke_user("gina").await.unwrap(), 0);
    assert_eq!(store.revoke_user("hank").await.unwrap(), 1);
    assert!(ctx.keys().await.is_empty(), "{:?}", ctx.keys().await);
}

#[tokio::test]
async fn a_users_sessions_are_listed_and_revoked_together() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 0);
    let alice: Vec<SessionId> = futures_join(&store, "alice", 3).await;
    let bob = store.create_for_user("bob", &cart()).await.unwrap();
    let anon = store.create(&cart()).await.unwrap();

    let listed = store.list_user("alice").await.unwrap();
    assert_eq!(listed.len(), 3);
    for info in &listed {
        assert!(info.created_at <= info.last_seen && info.last_seen < info.expires_at);
        assert!(alice.iter().all(|id| id.as_str() != info.handle));
        assert!(
            store.load(&info.handle).await.unwrap().is_none(),
            "a handle is not an id"
        );
    }

    // Revoke one by handle, then the rest at once.
    assert!(store.revoke("alice", &listed[0].handle).await.unwrap());
    assert!(!store.revoke("alice", &listed[0].handle).await.unwrap());
    assert!(!store.revoke("alice", "not a handle").await.unwrap());
    assert_eq!(store.list_user("alice").await.unwrap().len(), 2);
    assert_eq!(store.revoke_user("alice").await.unwrap(), 2);
    for id in &alice {
        assert!(store.load(id).await.unwrap().is_none());
    }
    assert!(store.list_user("alice").await.unwrap().is_empty());
    assert_eq!(store.revoke_user("alice").await.unwrap(), 0);
    assert!(store.load(&bob).await.unwrap().is_some());
    assert!(store.load(&anon).await.unwrap().is_some());

    // Destroying (logging out) one session removes it from the index at once.
    let b2 = store.create_for_user("bob", &cart()).await.unwrap();
    assert!(store.destroy(&b2).await.unwrap());
    let listed = store.list_user("bob").await.unwrap();
    assert_eq!(listed.len(), 1);
    let index_size = index_members(&ctx, &store, "bob").await;
    assert_eq!(index_size, 1);
}

#[tokio::test]
async fn a_handle_only_revokes_a_session_of_the_named_user() {
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 0);
    // Two users whose sessions share a bucket (the id's last two characters), so that a handle
    // of one names a key the other's revoke can reach.
    let mut by_bucket = std::collections::HashMap::new();
    let (first, second) = loop {
        let user = format!("user-{}", by_bucket.len());
        let id = store.create_for_user(&user, &cart()).await.unwrap();
        let bucket = id.as_str()[43..].to_owned();
        if let Some(other) = by_bucket.insert(bucket, (user.clone(), id.clone())) {
            break (other, (user, id));
        }
        assert!(by_bucket.len() < 2_000, "no two users share a bucket");
    };
    let (victim, victim_id) = first;
    let (attacker, attacker_id) = second;
    let handle = store.list_user(&victim).await.unwrap()[0].handle.clone();

    assert!(!store.revoke(&attacker, &handle).await.unwrap());
    assert!(
        store.load(&victim_id).await.unwrap().is_some(),
        "another user's handle ended the session"
    );
    assert_eq!(store.list_user(&victim).await.unwrap().len(), 1);
    assert!(store.load(&attacker_id).await.unwrap().is_some());
    assert!(store.revoke(&victim, &handle).await.unwrap());
    assert!(store.load(&victim_id).await.unwrap().is_none());
}

async fn futures_join(store: &SessionStore, user: &str, n: usize) -> Vec<SessionId> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(store.create_for_user(user, &cart()).await.unwrap());
    }
    out
}

/// ZCARD of the index of `user`, found by scanning for its name.
async fn index_members(ctx: &TestContext, _store: &SessionStore, user: &str) -> usize {
    let suffix = format!(":user:{user}");
    let index = ctx
        .keys()
        .await
        .into_iter()
        .find(|k| k.ends_with(&suffix))
        .unwrap_or_default();
    if index.is_empty() {
        return 0;
    }
    ctx.redis()
        .query(redis::cmd("ZCARD").arg(index))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_user_index_is_pruned_as_sessions_expire() {
    let ctx = TestContext::new().await;
    // Idle 2 s: the second session must outlive a few round trips on a loaded machine.
    let store = store(&ctx, 2_000, 600_000, 0);
    let first = store.create_for_user("frank", &cart()).await.unwrap();
    let first_key = store.key_of(&first).unwrap().unwrap();
    assert_eq!(index_members(&ctx, &store, "frank").await, 1);
    wait_until(
        "the first session to expire",
        Duration::from_secs(20),
        || {
            let redis = ctx.redis().clone();
            let key = first_key.clone();
            async move {
                !redis
                    .query::<bool>(redis::cmd("EXISTS").arg(&key))
                    .await
                    .unwrap()
            }
        },
    )
    .await;
    let second = store.create_for_user("frank", &cart()).await.unwrap();
    let listed = store.list_user("frank").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        index_members(&ctx, &store, "frank").await,
        1,
        "expired member pruned"
    );
    assert!(store.load(&second).await.unwrap().is_some());

    // With every session gone, the index goes too.
    let short = store.clone();
    wait_until("the index to disappear", Duration::from_secs(20), || {
        let short = short.clone();
        let ctx = &ctx;
        async move {
            short.list_user("frank").await.unwrap();
            index_members(ctx, &short, "frank").await == 0
        }
    })
    .await;
    assert!(ctx.keys().await.is_empty(), "{:?}", ctx.keys().await);
}

#[cfg(feature = "msgpack")]
#[tokio::test]
async fn the_msgpack_codec_round_trips_fields_and_whole_sessions() {
    let ctx = TestContext::new().await;
    let store = SessionStore::builder(ctx.redis().clone(), &ctx.keyspace())
        .codec(redis_core::codec::MsgPack)
        .build()
        .unwrap();
    let id = store.create_for_user("mia", &cart()).await.unwrap();
    assert!(store.set_field(&id, "theme", "light").await.unwrap());
    let s = store.load(&id).await.unwrap().unwrap();
    assert_eq!(s.get::<u64>("total_cents").unwrap(), Some(12_999));
    let expected = Cart {
        theme: Some("light".into()),
        ..cart()
    };
    assert_eq!(s.deserialize::<Cart>().unwrap(), expected);
    // Stored as MessagePack, not JSON: a short string is 0xa0 | len followed by the bytes.
    let key = store.key_of(&id).unwrap().unwrap();
    let raw: Vec<u8> = ctx
        .redis()
        .query(redis::cmd("HGET").arg(&key).arg("theme"))
        .await
        .unwrap();
    assert_eq!(raw, b"\xa5light");
    let rotated = store.rotate_for_user(&id, "mia").await.unwrap().unwrap();
    let s = store.load(&rotated).await.unwrap().unwrap();
    assert_eq!(s.deserialize::<Cart>().unwrap(), expected);
}

#[tokio::test]
async fn a_secret_keys_the_digests() {
    let ctx = TestContext::new().await;
    let build = |secret: &[u8]| {
        SessionStore::builder(ctx.redis().clone(), &ctx.keyspace())
            .secret(secret.to_vec())
            .build()
            .unwrap()
    };
    let a = build(&[1; 32]);
    let b = build(&[2; 32]);
    let plain = support::store(&ctx, 60_000, 600_000, 0);
    let id = a.create(&cart()).await.unwrap();
    assert!(a.load(&id).await.unwrap().is_some());
    assert!(
        b.load(&id).await.unwrap().is_none(),
        "another secret finds nothing"
    );
    assert!(plain.load(&id).await.unwrap().is_none());
    assert_ne!(a.key_of(&id).unwrap(), plain.key_of(&id).unwrap());
}

#[tokio::test]
async fn invalid_configuration_is_refused_by_build() {
    let ctx = TestContext::new().await;
    let builder = || SessionStore::builder(ctx.redis().clone(), &ctx.keyspace());
    let invalid =
        |r: redis_session::Result<SessionStore>| matches!(r, Err(Error::InvalidConfig(_)));
    assert!(invalid(builder().idle_timeout(Duration::ZERO).build()));
    assert!(invalid(
        builder()
            .absolute_timeout(Duration::from_micros(10))
            .build()
    ));
    assert!(invalid(
        builder()
            .idle_timeout(Duration::from_secs(10))
            .absolute_timeout(Duration::from_secs(5))
            .build()
    ));
    assert!(invalid(
        builder()
            .idle_timeout(Duration::from_secs(10))
            .touch_interval(Duration::from_secs(10))
            .build()
    ));
    assert!(invalid(builder().secret(b"short".to_vec()).build()));
    let store = builder().build().unwrap();
    assert_eq!(store.idle_timeout(), Duration::from_secs(1800));
    assert_eq!(store.absolute_timeout(), Duration::from_secs(8 * 3600));
    assert!(!format!("{:?}", builder().secret(vec![b's'; 40])).contains("sss"));
}
