//! Operation spans cost nothing when no one could see them, and are real spans once someone can.
//! One test in its own process: it depends on the process having no subscriber and no logger.

use redis_core::{
    __private::{spans_seen, trace_spans_seen},
    in_span, operation_span,
};
use redis_test_support::TestContext;

/// A `log` logger that takes everything at `Info` and finer and keeps nothing.
struct Discard;

impl log::Log for Discard {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, _: &log::Record<'_>) {}

    fn flush(&self) {}
}

static DISCARD: Discard = Discard;

#[tokio::test]
async fn spans_are_none_until_a_logger_or_subscriber_could_see_them() {
    let ctx = TestContext::new().await;
    assert!(!tracing::dispatcher::has_been_set(), "no subscriber yet");
    assert!(!spans_seen());
    let span = operation_span!(ctx.redis(), "test.op", outcome = tracing::field::Empty);
    assert!(span.is_none(), "{span:?}");
    // Recording into it is a no-op, not a panic.
    span.record("outcome", "ok");
    // `in_span!` awaits the future as it is.
    let pong: String = in_span!(span, ctx.redis().query(&redis::cmd("PING"))).unwrap();
    assert_eq!(pong, "PONG");
    assert!(!trace_spans_seen());

    // A logger at `Info`: tracing's `log` feature (when some crate turns it on) would hand it the
    // span, so the span is made as tracing makes it.
    log::set_logger(&DISCARD).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    assert!(spans_seen());
    // A script call's `TRACE` span needs a logger at `Trace`.
    assert!(!trace_spans_seen());
    log::set_max_level(log::LevelFilter::Trace);
    assert!(trace_spans_seen());

    // A logger that wants only warnings: nothing could see an `INFO` span again.
    log::set_max_level(log::LevelFilter::Warn);
    assert!(!spans_seen());
    assert!(operation_span!(ctx.redis(), "test.op").is_none());
}
