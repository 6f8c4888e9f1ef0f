//! The session store on a real 3-master Redis Cluster: every script stays on one slot, including
//! rotation, login (which moves a session across slots in two steps) and per-user revocation.

use std::{collections::HashSet, time::Duration};

use redis_core::KeySpace;
use redis_session::SessionStore;
use redis_test_support::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_work_across_a_three_master_cluster() {
    let cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    let store = SessionStore::builder(redis, &KeySpace::new("sess-cluster").unwrap())
        .idle_timeout(Duration::from_secs(60))
        .touch_interval(Duration::ZERO)
        .secret(vec![9u8; 32])
        .build()
        .unwrap();

    // Anonymous sessions spread over the masters.
    let mut masters = HashSet::new();
    let mut anonymous = Vec::new();
    for i in 0..30 {
        let id = store.create(&serde_json::json!({ "n": i })).await.unwrap();
        masters.insert(store.key_of(&id).unwrap().unwrap().slot() / (16384 / 3 + 1));
        anonymous.push(id);
    }
    assert_eq!(masters.len(), 3, "sessions should land on every master");

    // Field updates, rotation and login on every slot.
    let mut users = Vec::new();
    for (i, id) in anonymous.iter().enumerate() {
        assert!(store.set_field(id, "cart", &vec![i; 2]).await.unwrap());
        let rotated = store.rotate(id).await.unwrap().expect("rotated");
        assert!(store.load(id).await.unwrap().is_none());
        let user = format!("user-{}", i % 5);
        let logged_in = store
            .rotate_for_user(&rotated, &user)
            .await
            .unwrap()
            .expect("logged in");
        assert!(store.load(&rotated).await.unwrap().is_none());
        let s = store.load(&logged_in).await.unwrap().unwrap();
        assert_eq!(s.user(), Some(user.as_str()));
        assert_eq!(s.get::<Vec<usize>>("cart").unwrap(), Some(vec![i; 2]));
        // A logged-in session rotates within its user's slot, index included.
        let again = store
            .rotate(&logged_in)
            .await
            .unwrap()
            .expect("rotated again");
        users.push((user, again));
    }

    // Concurrent writers on one session from several tasks.
    let (_, shared) = users[0].clone();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            let id = shared.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    assert!(
                        store
                            .set_field(&id, &format!("w{t}-{i}"), &i)
                            .await
                            .unwrap()
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let s = store.load(&shared).await.unwrap().unwrap();
    assert_eq!(s.field_names().filter(|n| n.starts_with('w')).count(), 100);

    // Per-user listing and revocation.
    for u in 0..5 {
        let user = format!("user-{u}");
        assert_eq!(store.list_user(&user).await.unwrap().len(), 6, "{user}");
    }
    assert_eq!(store.revoke_user("user-0").await.unwrap(), 6);
    for (user, id) in &users {
        let live = store.load(id).await.unwrap().is_some();
        assert_eq!(live, user != "user-0", "{user}");
    }
    let handle = store.list_user("user-1").await.unwrap()[0].handle.clone();
    assert!(store.revoke("user-1", &handle).await.unwrap());
    assert_eq!(store.list_user("user-1").await.unwrap().len(), 5);
    let (_, last) = users.last().unwrap();
    assert!(store.destroy(last).await.unwrap());
    assert!(store.load(last).await.unwrap().is_none());

    // A user's session logged in as another user leaves the first user's index on its slot.
    for i in 0..10 {
        let (from, to) = (format!("mover-{i}"), format!("moved-{i}"));
        let id = store
            .create_for_user(&from, &serde_json::json!({ "i": i }))
            .await
            .unwrap();
        let moved = store.rotate_for_user(&id, &to).await.unwrap().unwrap();
        assert!(store.list_user(&from).await.unwrap().is_empty());
        assert_eq!(store.list_user(&to).await.unwrap().len(), 1);
        assert_eq!(store.revoke_user(&to).await.unwrap(), 1);
        assert!(store.load(&moved).await.unwrap().is_none());
    }
}
