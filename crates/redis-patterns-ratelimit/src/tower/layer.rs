//! The layer.

use crate::RateLimiter;

use super::{HeaderStyle, service::RateLimitService};

/// Wraps services in a [`RateLimitService`]. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct RateLimitLayer<K> {
    limiter: RateLimiter,
    extractor: K,
    style: HeaderStyle,
}

impl<K> RateLimitLayer<K> {
    /// Limits requests by the key `extractor` returns, with `limiter`.
    pub fn new(limiter: RateLimiter, extractor: K) -> Self {
        Self {
            limiter,
            extractor,
            style: HeaderStyle::Legacy,
        }
    }

    /// Which header fields to set: [`HeaderStyle::Legacy`] (the default), the IETF draft's
    /// [`HeaderStyle::Draft`], or [`HeaderStyle::Both`].
    #[must_use]
    pub fn header_style(mut self, style: HeaderStyle) -> Self {
        self.style = style;
        self
    }
}

impl<S, K: Clone> tower::Layer<S> for RateLimitLayer<K> {
    type Service = RateLimitService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService::new(inner, self.limiter.clone(), self.extractor.clone())
            .header_style(self.style)
    }
}
