//! A tower [`Layer`](::tower::Layer) that rate limits HTTP requests (feature `tower`).
//!
//! [`RateLimitLayer`] takes a [`RateLimiter`](crate::RateLimiter) and a [`KeyExtractor`]: a
//! ready-made one ([`PeerIp`], [`ForwardedIp`] behind trusted proxies, [`HeaderKey`] for an API
//! key, [`ConstantKey`] for one global limit) or any `Fn(&http::Request<B>) -> Option<String>`. For each request it checks the key: allowed
//! requests reach the inner service and their responses get the `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` headers; denied ones are answered at once with
//! `429 Too Many Requests` and those headers plus `Retry-After`. Requests without a key (the
//! extractor returns `None`) pass unlimited. A key no Redis key can hold (empty, or too long for
//! the key space) is answered `400 Bad Request`. When the check itself fails (Redis unreachable
//! under [`FailurePolicy::ReturnError`](crate::FailurePolicy::ReturnError)) the layer answers
//! `503 Service Unavailable`.
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_ratelimit::{Limit, RateLimiter, redis_core::KeySpace, tower::RateLimitLayer};
//!
//! # fn demo(redis: redis_core::Redis) -> redis_ratelimit::Result<()> {
//! let keys = KeySpace::new("myapp")?.pattern("api")?;
//! let limit = Limit::gcra(10, Duration::from_secs(1), 5);
//! let limiter = RateLimiter::builder(redis, &keys, limit).build()?;
//! let layer = RateLimitLayer::new(limiter, |req: &http::Request<String>| {
//!     req.headers().get("x-api-key")?.to_str().ok().map(str::to_owned)
//! });
//! # let _ = layer; Ok(()) }
//! ```

mod extract;
mod future;
mod layer;
mod service;

pub use extract::{ConstantKey, ForwardedIp, HeaderKey, PeerIp};

/// Which rate limit header fields the layer sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (the draft's earlier
    /// revisions, which most clients read today). The default.
    #[default]
    Legacy,
    /// `RateLimit-Policy` and `RateLimit` as in draft-ietf-httpapi-ratelimit-headers-11, the
    /// policy named after the limiter.
    Draft,
    /// Both sets.
    Both,
}
pub use future::ResponseFuture;
pub use layer::RateLimitLayer;
pub use service::RateLimitService;

/// Picks the identity a request is limited by (an API key, a user id, a client address).
///
/// Implemented for every `Fn(&http::Request<B>) -> Option<String> + Clone + Send + Sync + 'static`.
pub trait KeyExtractor<B>: Clone + Send + Sync + 'static {
    /// The identity of `request`, or `None` to let it through unlimited.
    fn extract(&self, request: &http::Request<B>) -> Option<String>;
}

impl<B, F> KeyExtractor<B> for F
where
    F: Fn(&http::Request<B>) -> Option<String> + Clone + Send + Sync + 'static,
{
    fn extract(&self, request: &http::Request<B>) -> Option<String> {
        self(request)
    }
}
