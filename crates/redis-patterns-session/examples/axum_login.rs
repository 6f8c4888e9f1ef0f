//! An axum app with tower-sessions on Redis: log in, count visits, log out.
//!
//! Run: `cargo run -p redis-patterns-session --all-features --example axum_login`
//! (reads `REDIS_URL`, default `redis://127.0.0.1:6379`).
//!
//! The app is driven in-process with `tower::ServiceExt::oneshot`, passing the session cookie
//! between requests like a browser would, so the example finishes on its own. It exits non-zero
//! if any response is not what a working session layer gives.

use std::error::Error;

use axum::{
    Router,
    body::Body,
    extract::Query,
    http::{Request, StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use redis_core::{KeySpace, Redis};
use redis_session::{SessionStore, TowerSessionStore};
use serde::Deserialize;
use tower::ServiceExt as _;
use tower_sessions::{Expiry, Session, SessionManagerLayer, cookie::time::Duration};

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(session: Session, Query(login): Query<Login>) -> impl IntoResponse {
    // New privileges, new id: the id the visitor had before logging in stops working.
    if session.cycle_id().await.is_err() || session.insert("user", &login.user).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    format!("welcome, {}", login.user).into_response()
}

async fn count(session: Session) -> impl IntoResponse {
    let Ok(Some(user)) = session.get::<String>("user").await else {
        return (StatusCode::UNAUTHORIZED, "log in first".to_owned()).into_response();
    };
    let visits = session
        .get::<u64>("visits")
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
        + 1;
    if session.insert("visits", visits).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    format!("{user}: {visits} visits").into_response()
}

async fn logout(session: Session) -> impl IntoResponse {
    match session.flush().await {
        Ok(()) => "bye".into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Sends one request with `cookie`, returns the status, the body and the cookie to use next.
async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    cookie: Option<String>,
) -> Result<(StatusCode, String, Option<String>), Box<dyn Error>> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(cookie) = &cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app.clone().oneshot(request.body(Body::empty())?).await?;
    let status = response.status();
    let next_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .or(cookie);
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await?;
    Ok((
        status,
        String::from_utf8_lossy(&body).into_owned(),
        next_cookie,
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let redis = Redis::open(&url).await?;
    let keys = KeySpace::new(&format!("example-axum-{}", std::process::id()))?;
    let store = SessionStore::builder(redis.clone(), &keys)
        .absolute_timeout(std::time::Duration::from_secs(8 * 3600))
        .build()?;
    let sessions = TowerSessionStore::new(store);
    let app = Router::new()
        .route("/login", post(login))
        .route("/count", get(count))
        .route("/logout", post(logout))
        .layer(
            SessionManagerLayer::new(sessions.clone())
                .with_secure(false)
                .with_expiry(Expiry::OnInactivity(Duration::minutes(30))),
        );

    let (status, body, _) = call(&app, "GET", "/count", None).await?;
    println!("GET /count before login   -> {status} {body}");
    ensure(
        status == StatusCode::UNAUTHORIZED,
        "anonymous visitors are refused",
    )?;

    let (status, body, cookie) = call(&app, "POST", "/login?user=alice", None).await?;
    println!("POST /login?user=alice    -> {status} {body}");
    ensure(
        status == StatusCode::OK && cookie.is_some(),
        "login sets a cookie",
    )?;

    let mut last = String::new();
    for _ in 0..3 {
        let (status, body, _) = call(&app, "GET", "/count", cookie.clone()).await?;
        println!("GET /count                -> {status} {body}");
        ensure(status == StatusCode::OK, "logged-in visits are counted")?;
        last = body;
    }
    ensure(last == "alice: 3 visits", "the counter reaches 3")?;

    let (status, body, _) = call(&app, "POST", "/logout", cookie.clone()).await?;
    println!("POST /logout              -> {status} {body}");
    let (status, body, _) = call(&app, "GET", "/count", cookie.clone()).await?;
    println!("GET /count with old cookie -> {status} {body}");
    ensure(
        status == StatusCode::UNAUTHORIZED,
        "the old cookie is dead after logout",
    )?;

    // Nothing of this example is left in Redis.
    let (_, leftover): (u64, Vec<String>) = redis
        .query(
            redis_core::redis::cmd("SCAN")
                .arg(0)
                .arg("MATCH")
                .arg(keys.scan_pattern())
                .arg("COUNT")
                .arg(10_000),
        )
        .await?;
    ensure(leftover.is_empty(), "logout removed the session")?;
    println!("ok: login, counter and logout behaved");
    Ok(())
}

fn ensure(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("failed: {what}").into())
    }
}
