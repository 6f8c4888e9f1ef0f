//! A session's data from creation to destruction: typed fields, partial updates, large sessions,
//! concurrent writers and the codecs.

mod support;

use std::{collections::BTreeMap, time::Duration};

use redis_core::redis;
#[cfg(feature = "msgpack")]
use redis_session::SessionStore;
use redis_session::{Error, ErrorPredicates as _};
use redis_test_support::TestContext;
use support::{Cart, cart, store};

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
    // More values than Lua can unpack at once (about 8000): nothing on the way may unpack them.
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
    assert_eq!(s.get_raw("theme"), Some(&b"\xa5light"[..]));
    let key = store.key_of(&id).unwrap().unwrap();
    let stored: Vec<u8> = ctx
        .redis()
        .query(redis::cmd("GET").arg(&key))
        .await
        .unwrap();
    assert!(support::contains(&stored, b"\xa5theme\xa6\xa5light"));
    let rotated = store.rotate_for_user(&id, "mia").await.unwrap().unwrap();
    let s = store.load(&rotated).await.unwrap().unwrap();
    assert_eq!(s.deserialize::<Cart>().unwrap(), expected);
}

#[tokio::test]
async fn values_of_every_stored_length_survive_an_edit_on_the_server() {
    // The fields are a MessagePack map the client writes and the update script rewrites: values
    // of each string length class (fixstr, str8, str16, str32 once encoded) must come back
    // intact.
    let ctx = TestContext::new().await;
    let store = store(&ctx, 60_000, 600_000, 0);
    let lengths = [0usize, 1, 31, 32, 255, 256, 65_535, 65_536, 200_000];
    let value = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 7 % 256) as u8).collect() };
    let data: BTreeMap<String, Vec<u8>> = lengths
        .iter()
        .map(|&n| (format!("len{n}"), value(n)))
        .collect();
    let id = store.create(&data).await.unwrap();
    assert!(store.set_field(&id, "edited", &true).await.unwrap());
    assert!(store.remove_field(&id, "len1").await.unwrap());
    let s = store.load(&id).await.unwrap().unwrap();
    for n in lengths.iter().filter(|&&n| n != 1) {
        assert_eq!(
            s.get::<Vec<u8>>(&format!("len{n}")).unwrap(),
            Some(value(*n)),
            "length {n}"
        );
    }
    assert_eq!(s.get::<Vec<u8>>("len1").unwrap(), None);
    assert_eq!(s.get::<bool>("edited").unwrap(), Some(true));

    // Every field removed: the empty map the script writes back loads as no fields.
    for name in s.field_names().map(str::to_owned).collect::<Vec<_>>() {
        assert!(store.remove_field(&id, &name).await.unwrap());
    }
    let s = store.load(&id).await.unwrap().unwrap();
    assert_eq!(s.field_names().count(), 0);
}
