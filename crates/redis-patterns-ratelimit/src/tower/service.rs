//! The service.

use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};

use crate::{Decision, RateLimiter};

use super::{KeyExtractor, future::ResponseFuture};

/// Checks each request's key before calling the inner service. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct RateLimitService<S, K> {
    inner: S,
    limiter: RateLimiter,
    extractor: K,
}

impl<S, K> RateLimitService<S, K> {
    /// Wraps `inner`.
    pub fn new(inner: S, limiter: RateLimiter, extractor: K) -> Self {
        Self {
            inner,
            limiter,
            extractor,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, K, ReqBody, ResBody> tower::Service<Request<ReqBody>> for RateLimitService<S, K>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    K: KeyExtractor<ReqBody>,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone is not ready; keep the ready one for this request (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        let key = self.extractor.extract(&request);
        ResponseFuture::new(Box::pin(async move {
            let Some(key) = key else {
                return inner.call(request).await;
            };
            match limiter.check(&key).await {
                Ok(decision) if decision.is_allowed() => {
                    let mut response = inner.call(request).await?;
                    set_headers(response.headers_mut(), &decision);
                    Ok(response)
                }
                Ok(decision) => Ok(answer(StatusCode::TOO_MANY_REQUESTS, Some(&decision))),
                // The request named an identity no key can hold (empty, or too long): its
                // sender's mistake, not an outage, and never a way around the limit.
                Err(crate::Error::Core(redis_core::Error::InvalidKey(e))) => {
                    tracing::debug!(error = %e, "rate limit key rejected; answering 400");
                    Ok(answer(StatusCode::BAD_REQUEST, None))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rate limit check failed; answering 503");
                    Ok(answer(StatusCode::SERVICE_UNAVAILABLE, None))
                }
            }
        }))
    }
}

fn answer<B: Default>(status: StatusCode, decision: Option<&Decision>) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    if let Some(decision) = decision {
        set_headers(response.headers_mut(), decision);
    }
    response
}

/// Sets the `RateLimit-*` headers, and `Retry-After` on a denial, from `decision`.
pub(crate) fn set_headers(headers: &mut HeaderMap, decision: &Decision) {
    for (name, value) in decision.headers() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
}
