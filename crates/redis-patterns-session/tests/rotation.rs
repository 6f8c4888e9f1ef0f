//! Id rotation (privilege changes) and login (moving a session to its user).

mod support;

use redis_session::Error;
use redis_test_support::TestContext;
use support::{Cart, cart, index_members, store};

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
