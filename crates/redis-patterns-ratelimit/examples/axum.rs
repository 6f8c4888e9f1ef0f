//! Rate limit an axum router with the tower layer, two limiters on two route groups: the API by
//! API key (`x-api-key`), the login form by client address behind one trusted load balancer
//! (`X-Forwarded-For`). `RateLimit-*` headers on every limited response, 429 with `Retry-After`
//! once a budget is spent. The router is driven with `tower::ServiceExt::oneshot`, so no socket
//! is opened and the example ends by itself.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-ratelimit --all-features --example axum`

use std::time::Duration;

use axum::{
    Router,
    body::Body,
    http::{HeaderName, Request, StatusCode},
    routing::{get, post},
};
use redis_ratelimit::{
    Limit, RateLimiter,
    redis_core::{KeySpace, Redis},
    tower::{ForwardedIp, HeaderKey, RateLimitLayer},
};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = Redis::open(&url).await?;
    let keys = KeySpace::new("example")?.pattern(&format!("axum{}", std::process::id()))?;

    // The API: three requests per minute per API key,
    // `example:axum<pid>:api:ratelimit:sliding:{<api key>}`.
    let api = RateLimiter::builder(
        redis.clone(),
        &keys.pattern("api")?,
        Limit::sliding_window(3, Duration::from_secs(60)),
    )
    .name("api")
    .build()?;
    // The login form: two attempts per minute per client address, exact.
    let login = RateLimiter::builder(
        redis,
        &keys.pattern("login")?,
        Limit::sliding_log(2, Duration::from_secs(60)),
    )
    .name("login")
    .build()?;

    let api_routes = Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .layer(RateLimitLayer::new(
            api,
            HeaderKey::new(HeaderName::from_static("x-api-key")),
        ));
    let login_routes = Router::new()
        .route("/login", post(|| async { "welcome" }))
        // One load balancer in front, which appends the address it saw to X-Forwarded-For.
        .layer(RateLimitLayer::new(login, ForwardedIp::x_forwarded_for(1)));
    let app = Router::new().merge(api_routes).merge(login_routes);

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let request = Request::get("/api/hello")
            .header("x-api-key", "demo-key")
            .body(Body::empty())?;
        statuses.push(send(&app, request).await?);
    }
    // Each login attempt forges a different left-most address; the load balancer appended the
    // real one (198.51.100.7), which is what the limit counts.
    for forged in ["1.1.1.1", "2.2.2.2", "3.3.3.3"] {
        let request = Request::post("/login")
            .header("x-forwarded-for", format!("{forged}, 198.51.100.7"))
            .body(Body::empty())?;
        statuses.push(send(&app, request).await?);
    }
    use StatusCode as S;
    let expected = [
        S::OK,
        S::OK,
        S::OK,
        S::TOO_MANY_REQUESTS,
        S::OK,
        S::OK,
        S::TOO_MANY_REQUESTS,
    ];
    if statuses != expected {
        return Err(format!("expected {expected:?}, got {statuses:?}").into());
    }
    println!("the fourth API call and the third login within a minute were refused with 429");
    Ok(())
}

async fn send(
    app: &Router,
    request: Request<Body>,
) -> Result<StatusCode, Box<dyn std::error::Error>> {
    let path = request.uri().path().to_owned();
    let response = app.clone().oneshot(request).await?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    println!(
        "{path}: {} RateLimit-Limit={} RateLimit-Remaining={} RateLimit-Reset={} Retry-After={}",
        response.status(),
        header("ratelimit-limit"),
        header("ratelimit-remaining"),
        header("ratelimit-reset"),
        header("retry-after"),
    );
    if response.status() == StatusCode::TOO_MANY_REQUESTS && header("retry-after") == "-" {
        return Err("a 429 must carry Retry-After".into());
    }
    Ok(response.status())
}
