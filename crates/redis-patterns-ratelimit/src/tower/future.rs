//! The response future.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;

/// The future of a [`RateLimitService`](super::RateLimitService) response: the check, then the
/// inner service (or the 429 answer).
pub struct ResponseFuture<T, E> {
    inner: BoxFuture<'static, Result<T, E>>,
}

impl<T, E> ResponseFuture<T, E> {
    pub(crate) fn new(inner: BoxFuture<'static, Result<T, E>>) -> Self {
        Self { inner }
    }
}

impl<T, E> fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
