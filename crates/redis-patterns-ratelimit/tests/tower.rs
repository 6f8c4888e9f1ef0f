//! The tower layer: headers on allowed responses, 429 with `Retry-After` on denials, 400 for a
//! key no Redis key can hold, 503 when the check fails, unlimited requests without a key.

mod support;

use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use redis_ratelimit::{Limit, tower::RateLimitLayer};
use redis_test_support::TestContext;
use support::MINUTE;
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn by_api_key(req: &Request<String>) -> Option<String> {
    req.headers()
        .get("x-api-key")?
        .to_str()
        .ok()
        .map(str::to_owned)
}

fn request(key: Option<&str>) -> Request<String> {
    let mut builder = Request::builder().uri("/");
    if let Some(key) = key {
        builder = builder.header("x-api-key", key);
    }
    builder.body(String::new()).unwrap()
}

#[tokio::test]
async fn the_layer_sets_headers_and_answers_429() {
    let mut ctx = TestContext::private().await;
    let limiter = support::limiter(&ctx, Limit::fixed_window(2, MINUTE));
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter, by_api_key))
        .service(service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new("hello".to_owned()))
        }));

    for remaining in ["1", "0"] {
        let response = service.clone().oneshot(request(Some("k1"))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "hello");
        assert_eq!(response.headers()["ratelimit-limit"], "2");
        assert_eq!(response.headers()["ratelimit-remaining"], remaining);
        assert_eq!(response.headers()["ratelimit-reset"], "60");
        assert!(response.headers().get("retry-after").is_none());
    }
    let limited = service.clone().oneshot(request(Some("k1"))).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.body(), "");
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=60).contains(&retry), "{retry}");

    // Another key has its own budget; no key means no limit.
    let other = service.clone().oneshot(request(Some("k2"))).await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    for _ in 0..3 {
        let anonymous = service.clone().oneshot(request(None)).await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::OK);
        assert!(anonymous.headers().get("ratelimit-limit").is_none());
    }

    // A key no Redis key can hold is the client's mistake (400), neither an outage nor a way
    // around the limit.
    for bad in [String::new(), "k".repeat(4096)] {
        let response = service.clone().oneshot(request(Some(&bad))).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{}", bad.len());
    }

    // The check cannot be made (the default policy returns the error): 503.
    ctx.server().unwrap().kill();
    let unavailable = service.clone().oneshot(request(Some("k1"))).await.unwrap();
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_draft_fields_and_a_spoofed_forwarded_for_behind_one_proxy() {
    use redis_ratelimit::tower::{ForwardedIp, HeaderStyle};
    let ctx = TestContext::new().await;
    let limiter = redis_ratelimit::RateLimiter::builder(
        ctx.redis().clone(),
        &ctx.keyspace(),
        Limit::fixed_window(2, MINUTE),
    )
    .name("login")
    .build()
    .unwrap();
    let service = ServiceBuilder::new()
        .layer(
            RateLimitLayer::new(limiter, ForwardedIp::x_forwarded_for(1))
                .header_style(HeaderStyle::Draft),
        )
        .service(service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new("hello".to_owned()))
        }));
    // Every request forges a new left-most address; the proxy appended the real one.
    let from = |forged: &str| {
        Request::builder()
            .uri("/")
            .header("x-forwarded-for", format!("{forged}, 198.51.100.7"))
            .body(String::new())
            .unwrap()
    };
    for (forged, remaining) in [("1.1.1.1", "1"), ("2.2.2.2", "0")] {
        let response = service.clone().oneshot(from(forged)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["ratelimit-policy"],
            r#""login";q=2;w=60"#
        );
        assert_eq!(
            response.headers()["ratelimit"],
            format!(r#""login";r={remaining};t=60"#).as_str()
        );
        assert!(response.headers().get("ratelimit-limit").is_none());
    }
    let limited = service.clone().oneshot(from("3.3.3.3")).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("retry-after").is_some());
    // A second proxy in front would be a different client address: its own budget.
    let other = Request::builder()
        .uri("/")
        .header("x-forwarded-for", "198.51.100.8")
        .body(String::new())
        .unwrap();
    assert_eq!(
        service.clone().oneshot(other).await.unwrap().status(),
        StatusCode::OK
    );
}
