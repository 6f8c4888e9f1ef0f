//! Bad input: garbage and tampered ids are "no session", bad settings are refused by `build`.

mod support;

use std::time::Duration;

use redis_session::{Error, SessionId, SessionStore};
use redis_test_support::TestContext;
use support::{cart, store};

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
