//! Ids never reach Redis nor logs: only digests are stored and sent, and a secret keys them.

mod support;

use std::time::Duration;

use redis_core::redis;
use redis_session::SessionStore;
use redis_test_support::{TestContext, wait_until};
use support::{cart, contains, dump, store};

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
