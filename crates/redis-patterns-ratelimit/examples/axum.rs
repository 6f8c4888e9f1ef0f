//! Rate limit an axum router by API key with the tower layer: `RateLimit-*` headers on every
//! response, 429 with `Retry-After` once the key's budget is spent. The router is driven with
//! `tower::ServiceExt::oneshot`, so no socket is opened and the example ends by itself.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-ratelimit --all-features --example axum`

use std::time::Duration;

use axum::{Router, body::Body, http::Request, http::StatusCode, routing::get};
use redis_ratelimit::{
    Limit, RateLimiter,
    redis_core::{KeySpace, Redis},
    tower::RateLimitLayer,
};
use tower::ServiceExt;

fn api_key(req: &Request<Body>) -> Option<String> {
    req.headers()
        .get("x-api-key")?
        .to_str()
        .ok()
        .map(str::to_owned)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = Redis::open(&url).await?;
    let keys = KeySpace::new("example")?.pattern(&format!("axum{}", std::process::id()))?;

    // Three requests per minute per API key: `example:axum<pid>:ratelimit:sliding:{<api key>}`.
    let limit = Limit::sliding_window(3, Duration::from_secs(60));
    let limiter = RateLimiter::builder(redis, &keys, limit).build()?;
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(RateLimitLayer::new(limiter, api_key));

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let request = Request::get("/hello")
            .header("x-api-key", "demo-key")
            .body(Body::empty())?;
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
            "{} RateLimit-Limit={} RateLimit-Remaining={} RateLimit-Reset={} Retry-After={}",
            response.status(),
            header("ratelimit-limit"),
            header("ratelimit-remaining"),
            header("ratelimit-reset"),
            header("retry-after"),
        );
        if response.status() == StatusCode::TOO_MANY_REQUESTS && header("retry-after") == "-" {
            return Err("a 429 must carry Retry-After".into());
        }
        statuses.push(response.status());
    }
    let expected = [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ];
    if statuses != expected {
        return Err(format!("expected {expected:?}, got {statuses:?}").into());
    }
    println!("the fourth request within a minute was refused with 429");
    Ok(())
}
