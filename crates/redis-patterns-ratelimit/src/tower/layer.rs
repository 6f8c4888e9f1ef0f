//! The layer.

use crate::RateLimiter;

use super::service::RateLimitService;

/// Wraps services in a [`RateLimitService`]. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct RateLimitLayer<K> {
    limiter: RateLimiter,
    extractor: K,
}

impl<K> RateLimitLayer<K> {
    /// Limits requests by the key `extractor` returns, with `limiter`.
    pub fn new(limiter: RateLimiter, extractor: K) -> Self {
        Self { limiter, extractor }
    }
}

impl<S, K: Clone> tower::Layer<S> for RateLimitLayer<K> {
    type Service = RateLimitService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService::new(inner, self.limiter.clone(), self.extractor.clone())
    }
}
