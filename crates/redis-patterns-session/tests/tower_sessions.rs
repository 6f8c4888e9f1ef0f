//! The tower-sessions store against a real Redis.
#![cfg(feature = "tower-sessions")]

mod support;

use std::time::Duration;

use redis_core::redis;
use redis_session::TowerSessionStore;
use redis_test_support::{TestContext, wait_until};
use support::{contains, dump, store};
use time::OffsetDateTime;
use tower_sessions::{
    SessionStore as _,
    session::{Id, Record},
};

fn record(expires_in: time::Duration) -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert("counter".to_owned(), serde_json::json!(1));
    data.insert("__created".to_owned(), serde_json::json!("not metadata"));
    data.insert("_x".to_owned(), serde_json::json!({ "nested": [1, 2] }));
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc() + expires_in,
    }
}

#[tokio::test]
async fn records_round_trip_without_the_id_in_redis() {
    let ctx = TestContext::new().await;
    let tower = TowerSessionStore::new(store(&ctx, 60_000, 600_000, 0));
    let mut rec = record(time::Duration::minutes(10));
    tower.create(&mut rec).await.unwrap();
    let loaded = tower.load(&rec.id).await.unwrap().expect("live record");
    assert_eq!(loaded.data, rec.data);
    assert_eq!(loaded.id, rec.id);
    let diff = (loaded.expiry_date - rec.expiry_date).abs();
    assert!(diff < time::Duration::milliseconds(2), "{diff}");

    rec.data.insert("counter".into(), serde_json::json!(2));
    rec.data.remove("_x");
    tower.save(&rec).await.unwrap();
    let loaded = tower.load(&rec.id).await.unwrap().unwrap();
    assert_eq!(loaded.data, rec.data);

    let everything = dump(ctx.redis(), &ctx.keys().await).await;
    let id = rec.id.to_string();
    assert!(everything.iter().all(|b| !contains(b, id.as_bytes())));

    tower.delete(&rec.id).await.unwrap();
    assert!(tower.load(&rec.id).await.unwrap().is_none());
    // A save after the delete does not bring the session back.
    tower.save(&rec).await.unwrap();
    assert!(tower.load(&rec.id).await.unwrap().is_none());
    assert!(ctx.keys().await.is_empty());
    assert!(tower.load(&Id(42)).await.unwrap().is_none());
}

#[tokio::test]
async fn create_never_overwrites_an_existing_record() {
    let ctx = TestContext::new().await;
    let tower = TowerSessionStore::new(store(&ctx, 60_000, 600_000, 0));
    let mut first = record(time::Duration::minutes(10));
    tower.create(&mut first).await.unwrap();
    let mut second = record(time::Duration::minutes(10));
    second.id = first.id;
    second.data.insert("counter".into(), serde_json::json!(99));
    tower.create(&mut second).await.unwrap();
    assert_ne!(second.id, first.id, "a colliding id is replaced");
    assert_eq!(
        tower.load(&first.id).await.unwrap().unwrap().data["counter"],
        1
    );
    assert_eq!(
        tower.load(&second.id).await.unwrap().unwrap().data["counter"],
        99
    );
}

#[tokio::test]
async fn expiry_date_and_absolute_timeout_are_enforced_by_the_server() {
    let ctx = TestContext::new().await;
    // Absolute timeout of 1.5 s, while tower-sessions asks for 10 minutes.
    let tower = TowerSessionStore::new(store(&ctx, 1_000, 1_500, 0));
    let mut long = record(time::Duration::minutes(10));
    tower.create(&mut long).await.unwrap();
    let key = tower.key_of(&long.id).unwrap();
    let pttl: i64 = ctx
        .redis()
        .query(redis::cmd("PTTL").arg(&key))
        .await
        .unwrap();
    assert!((1..=1_500).contains(&pttl), "{pttl}");

    // And a record whose expiry date is near ends then.
    let mut short = record(time::Duration::milliseconds(300));
    tower.create(&mut short).await.unwrap();
    wait_until(
        "the short record to expire",
        Duration::from_secs(20),
        || {
            let tower = tower.clone();
            let id = short.id;
            async move { tower.load(&id).await.unwrap().is_none() }
        },
    )
    .await;
    wait_until("the absolute timeout", Duration::from_secs(20), || {
        let tower = tower.clone();
        let rec = long.clone();
        async move {
            // Saving keeps pushing the expiry date; the absolute cap still wins.
            tower.save(&rec).await.unwrap();
            tower.load(&rec.id).await.unwrap().is_none()
        }
    })
    .await;
    assert!(ctx.keys().await.is_empty());
}

#[tokio::test]
async fn records_with_thousands_of_entries_round_trip() {
    // More values than Lua can unpack at once (about 8000): nothing on the way may unpack them.
    let ctx = TestContext::new().await;
    let tower = TowerSessionStore::new(store(&ctx, 60_000, 600_000, 0));
    let mut rec = record(time::Duration::minutes(10));
    for i in 0..5_000 {
        rec.data.insert(format!("k{i}"), serde_json::json!(i));
    }
    tower.create(&mut rec).await.unwrap();
    assert_eq!(tower.load(&rec.id).await.unwrap().unwrap().data, rec.data);
    for i in 5_000..9_000 {
        rec.data.insert(format!("k{i}"), serde_json::json!(i));
    }
    rec.data.remove("k0");
    tower.save(&rec).await.unwrap();
    assert_eq!(tower.load(&rec.id).await.unwrap().unwrap().data, rec.data);
}

#[tokio::test]
async fn a_far_expiry_date_loads_exactly_and_the_absolute_timeout_still_caps_it() {
    let ctx = TestContext::new().await;
    let tower = TowerSessionStore::new(store(&ctx, 60_000, 600_000, 0));
    let mut rec = record(time::Duration::ZERO);
    // Year 9999: more than 14 digits of milliseconds.
    rec.expiry_date =
        OffsetDateTime::from_unix_timestamp_nanos(253_402_300_799_123_000_000).unwrap();
    tower.create(&mut rec).await.unwrap();
    let loaded = tower.load(&rec.id).await.unwrap().expect("live record");
    assert_eq!(loaded.expiry_date, rec.expiry_date);
    let pttl: i64 = ctx
        .redis()
        .query(redis::cmd("PTTL").arg(tower.key_of(&rec.id).unwrap()))
        .await
        .unwrap();
    assert!((1..=600_000).contains(&pttl), "{pttl}");
}

mod app {
    use axum::{
        Router,
        body::Body,
        extract::Query,
        http::{Request, StatusCode, header},
        response::IntoResponse,
        routing::{get, post},
    };
    use tower::ServiceExt as _;
    use tower_sessions::{Expiry, Session, SessionManagerLayer};

    #[derive(serde::Deserialize)]
    struct Login {
        user: String,
    }

    async fn visit(session: Session) -> StatusCode {
        match session.insert("visited", true).await {
            Ok(()) => StatusCode::OK,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    async fn login(session: Session, Query(login): Query<Login>) -> StatusCode {
        if session.cycle_id().await.is_err() || session.insert("user", &login.user).await.is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        StatusCode::OK
    }

    async fn count(session: Session) -> axum::response::Response {
        let Ok(Some(user)) = session.get::<String>("user").await else {
            return StatusCode::UNAUTHORIZED.into_response();
        };
        let visits = session.get::<u64>("visits").await.unwrap().unwrap_or(0) + 1;
        session.insert("visits", visits).await.unwrap();
        format!("{user}: {visits}").into_response()
    }

    async fn logout(session: Session) -> StatusCode {
        match session.flush().await {
            Ok(()) => StatusCode::OK,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(super) fn router(store: redis_session::TowerSessionStore) -> Router {
        Router::new()
            .route("/visit", get(visit))
            .route("/login", post(login))
            .route("/count", get(count))
            .route("/logout", post(logout))
            .layer(
                SessionManagerLayer::new(store)
                    .with_secure(false)
                    .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30))),
            )
    }

    /// One request with `cookie`: the status, the body and the cookie the response sets, if any.
    pub(super) async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, String, Option<String>) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let set = response
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned(), set)
    }
}

#[tokio::test]
async fn login_counter_and_logout_through_the_tower_sessions_layer() {
    use axum::http::StatusCode;
    let ctx = TestContext::new().await;
    let app = app::router(TowerSessionStore::new(store(&ctx, 60_000, 600_000, 0)));

    let (status, _, _) = app::call(&app, "GET", "/count", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, anonymous) = app::call(&app, "GET", "/visit", None).await;
    assert_eq!(status, StatusCode::OK);
    let anonymous = anonymous.expect("an anonymous session cookie");
    assert_eq!(ctx.keys().await.len(), 1);

    // Logging in cycles the id: the pre-login cookie stops working.
    let (status, _, logged_in) =
        app::call(&app, "POST", "/login?user=alice", Some(&anonymous)).await;
    assert_eq!(status, StatusCode::OK);
    let logged_in = logged_in.expect("a new cookie at login");
    assert_ne!(logged_in, anonymous);
    assert_eq!(ctx.keys().await.len(), 1, "the old record was deleted");
    for n in 1..=3 {
        let (status, body, _) = app::call(&app, "GET", "/count", Some(&logged_in)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("alice: {n}"));
    }
    let (status, _, _) = app::call(&app, "GET", "/count", Some(&anonymous)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the pre-login id still works"
    );

    // The cookie value never reaches Redis.
    let id = logged_in.split_once('=').unwrap().1.to_owned();
    let everything = dump(ctx.redis(), &ctx.keys().await).await;
    assert!(everything.iter().all(|b| !contains(b, id.as_bytes())));

    let (status, _, _) = app::call(&app, "POST", "/logout", Some(&logged_in)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = app::call(&app, "GET", "/count", Some(&logged_in)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the cookie works after logout"
    );
    assert!(ctx.keys().await.is_empty(), "{:?}", ctx.keys().await);
}

/// Script calls of any kind between two `INFO commandstats` snapshots.
fn script_calls(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> u64 {
    ["eval", "evalsha", "eval_ro", "evalsha_ro"]
        .iter()
        .map(|name| after.get(*name).unwrap_or(&0) - before.get(*name).unwrap_or(&0))
        .sum()
}

#[tokio::test]
async fn saving_a_record_the_store_has_seen_is_one_plain_set_that_keeps_its_creation_time() {
    use redis_test_support::command_calls;

    let ctx = TestContext::private().await;
    let redis = ctx.redis().clone();
    let tower = TowerSessionStore::new(store(&ctx, 60_000, 3_600_000, 0));
    // The first create reads the server's clock (a script); the next ones are plain.
    tower
        .create(&mut record(time::Duration::minutes(10)))
        .await
        .unwrap();
    let mut rec = record(time::Duration::minutes(10));
    tower.create(&mut rec).await.unwrap();
    let key = tower.key_of(&rec.id).unwrap();
    let header = |redis: redis_core::Redis, key: redis_core::Key| async move {
        let value: Vec<u8> = redis.query(redis::cmd("GET").arg(&key)).await.unwrap();
        value[..18].to_vec()
    };
    let created = header(redis.clone(), key.clone()).await;

    let before = command_calls(&redis).await;
    rec.data.insert("counter".into(), serde_json::json!(2));
    rec.expiry_date = OffsetDateTime::now_utc() + time::Duration::minutes(20);
    tower.save(&rec).await.unwrap();
    let after = command_calls(&redis).await;
    assert_eq!(script_calls(&before, &after), 0, "{after:?}");
    assert_eq!(after["set"] - before["set"], 1);
    assert_eq!(header(redis.clone(), key.clone()).await, created);
    assert_eq!(
        tower.load(&rec.id).await.unwrap().unwrap().data["counter"],
        2
    );
    let pttl: i64 = redis.query(redis::cmd("PTTL").arg(&key)).await.unwrap();
    assert!((10 * 60_000..=20 * 60_000).contains(&pttl), "{pttl}");

    // A store that has not seen the record saves it through the script, with the same result.
    let other = TowerSessionStore::new(store(&ctx, 60_000, 3_600_000, 0));
    rec.data.insert("counter".into(), serde_json::json!(3));
    let before = command_calls(&redis).await;
    other.save(&rec).await.unwrap();
    let after = command_calls(&redis).await;
    assert!(script_calls(&before, &after) >= 1, "{after:?}");
    assert_eq!(header(redis.clone(), key.clone()).await, created);
    assert_eq!(
        tower.load(&rec.id).await.unwrap().unwrap().data["counter"],
        3
    );

    // Deleted behind the store's back: the plain save brings nothing back.
    let _: i64 = redis.query(redis::cmd("DEL").arg(&key)).await.unwrap();
    tower.save(&rec).await.unwrap();
    let exists: bool = redis.query(redis::cmd("EXISTS").arg(&key)).await.unwrap();
    assert!(!exists);
    assert!(tower.load(&rec.id).await.unwrap().is_none());
}
