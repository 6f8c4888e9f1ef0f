//! The service.

use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};

use crate::{Decision, RateLimiter};

use super::{HeaderStyle, KeyExtractor, future::ResponseFuture};

/// Checks each request's key before calling the inner service. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct RateLimitService<S, K> {
    inner: S,
    limiter: RateLimiter,
    extractor: K,
    style: HeaderStyle,
    /// The limiter's `RateLimit-Policy` item, built once.
    policy: std::sync::Arc<str>,
}

impl<S, K> RateLimitService<S, K> {
    /// Wraps `inner`.
    pub fn new(inner: S, limiter: RateLimiter, extractor: K) -> Self {
        Self {
            policy: limiter.policy_item().into(),
            inner,
            limiter,
            extractor,
            style: HeaderStyle::Legacy,
        }
    }

    /// Which header fields to set. Defaults to [`HeaderStyle::Legacy`].
    #[must_use]
    pub fn header_style(mut self, style: HeaderStyle) -> Self {
        self.style = style;
        self
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
        let headers = Headers {
            style: self.style,
            policy: self.policy.clone(),
        };
        ResponseFuture::new(Box::pin(async move {
            let Some(key) = key else {
                return inner.call(request).await;
            };
            match limiter.check(&key).await {
                Ok(decision) if decision.is_allowed() => {
                    let mut response = inner.call(request).await?;
                    headers.set(response.headers_mut(), &decision);
                    Ok(response)
                }
                Ok(decision) => {
                    let mut response = answer(StatusCode::TOO_MANY_REQUESTS);
                    headers.set(response.headers_mut(), &decision);
                    Ok(response)
                }
                // The request named an identity no key can hold (empty, or too long): its
                // sender's mistake, not an outage, and never a way around the limit.
                Err(crate::Error::Core(redis_core::Error::InvalidKey(e))) => {
                    tracing::debug!(error = %e, "rate limit key rejected; answering 400");
                    Ok(answer(StatusCode::BAD_REQUEST))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rate limit check failed; answering 503");
                    Ok(answer(StatusCode::SERVICE_UNAVAILABLE))
                }
            }
        }))
    }
}

fn answer<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
}

/// The header fields a service sets.
struct Headers {
    style: HeaderStyle,
    policy: std::sync::Arc<str>,
}

impl Headers {
    /// Sets the fields of the style, and `Retry-After` on a denial, from `decision`.
    fn set(&self, headers: &mut HeaderMap, decision: &Decision) {
        match self.style {
            HeaderStyle::Legacy => insert(headers, decision.headers()),
            HeaderStyle::Draft => insert(headers, decision.draft_headers(&self.policy)),
            HeaderStyle::Both => {
                insert(headers, decision.headers());
                insert(headers, decision.draft_headers(&self.policy));
            }
        }
    }
}

fn insert(headers: &mut HeaderMap, fields: Vec<(&'static str, String)>) {
    for (name, value) in fields {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
}
