//! A user's sessions: listing, revoking one by handle or all at once, and the index kept pruned.

mod support;

use std::time::Duration;

use redis_core::redis;
use redis_session::{SessionId, SessionStore};
use redis_test_support::{TestContext, wait_until};
use support::{cart, index_members, store};

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
