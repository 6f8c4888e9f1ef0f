//! Every documented metric of redis-patterns-messaging is recorded by the operation that should record it,
//! with the documented labels and nothing else; no label or span field carries a stream key, a
//! channel or a payload.

mod support;

use std::{sync::Arc, time::Duration};

use redis_core::redis;
use redis_messaging::{
    CancellationToken, Consumer, Delivery, Event, GapKind, METRICS, Producer, Publisher,
    RetryPolicy, Subscriber, Subscription,
};
use redis_test_support::{
    Metrics, Observed, TestContext, assert_no_field_contains, observe, wait_until,
};
use serde::{Deserialize, Serialize};
use support::{DEADLINE, backoff, ms};
use tokio::sync::Semaphore;

/// In every stream name, channel and payload of this test: no label or span field may show it.
const SECRET: &str = "secret-7f3a";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    note: String,
    /// The handler fails this one.
    fail: bool,
    /// The handler waits for the test's gate before finishing this one.
    gated: bool,
}

fn job(fail: bool, gated: bool) -> Job {
    Job {
        note: format!("payload-{SECRET}"),
        fail,
        gated,
    }
}

/// The rows run so far: every snapshot taken, and the metrics asserted.
#[derive(Default)]
struct Rows {
    snapshots: Vec<Metrics>,
    covered: Vec<&'static str>,
}

impl Rows {
    /// Asserts that `metrics` recorded each `(name, labels)` and keeps the snapshot.
    #[track_caller]
    fn check(&mut self, metrics: Metrics, expected: &[(&'static str, &[(&str, &str)])]) {
        for (name, labels) in expected {
            metrics.assert_recorded(name, labels);
            self.covered.push(name);
        }
        self.snapshots.push(metrics);
    }
}

/// Takes snapshots until the lag and pending gauges of consumer `name` have shown `lag` and
/// `pending` (each snapshot resets gauges, so the values are looked for across snapshots).
async fn gauges_show(observed: &Observed, name: &str, lag: f64, pending: f64) -> Metrics {
    let mut all = Metrics::default();
    let (mut lag_seen, mut pending_seen) = (false, false);
    let labels = [("name", name)];
    wait_until("the group's lag and pending sampled", DEADLINE, || {
        let metrics = observed.take_metrics();
        lag_seen |= metrics.value("redis_patterns_messaging_group_lag", &labels) == lag;
        pending_seen |= metrics.value("redis_patterns_messaging_group_pending", &labels) == pending;
        all.0.extend(metrics.0);
        std::future::ready(lag_seen && pending_seen)
    })
    .await;
    all
}

async fn next_event(sub: &mut Subscription<Job>) -> Event<Job> {
    tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("an event in time")
        .expect("subscription alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_documented_messaging_metric_is_recorded_by_its_operation() {
    let observed = observe().await;
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let stream = format!("stream-{SECRET}");
    let mut rows = Rows::default();

    // Producer: entries sent.
    let producer = Producer::builder(ctx.redis().clone(), &keys, &stream)
        .name("orders-out")
        .build()
        .unwrap();
    producer.send(&job(false, true)).await.unwrap();
    producer
        .send_batch(&[job(false, false), job(false, false)])
        .await
        .unwrap();
    // A delayed entry, due long after this test (its span only).
    producer
        .send_after(&job(false, false), Duration::from_secs(3_600))
        .await
        .unwrap();
    rows.check(
        observed.take_metrics(),
        &[(
            "redis_patterns_messaging_published_total",
            &[("name", "orders-out")],
        )],
    );

    // Consumer, named after its group by default. One entry in the handler (held at the gate),
    // one waiting for a permit, one unread: pending 2, lag 1 until the gate opens.
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, &stream, "billing", "b1")
        .batch_size(1)
        .concurrency(1)
        .block(ms(100))
        .min_idle(Duration::from_secs(2))
        .max_deliveries(2)
        // A failed entry waits longer for its retry than min_idle, without heartbeats: the claim
        // pass reclaims it first (the reclaimed metric), and its second delivery is its last.
        .heartbeats(false)
        .retry(RetryPolicy::Schedule(vec![Duration::from_secs(60)]))
        .metrics_interval(ms(20))
        .build()
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let consumer = consumer.clone();
        let shutdown = shutdown.clone();
        let gate = gate.clone();
        async move {
            consumer
                .run(shutdown, move |d: Delivery<Job>| {
                    let gate = gate.clone();
                    async move {
                        if d.payload.gated {
                            let _permit = gate.acquire().await;
                        }
                        if d.payload.fail {
                            Err(format!("refused {}", d.payload.note))
                        } else {
                            Ok(())
                        }
                    }
                })
                .await
        }
    });
    let billing = [("name", "billing")];
    let metrics = gauges_show(&observed, "billing", 1.0, 2.0).await;
    rows.check(
        metrics,
        &[
            ("redis_patterns_messaging_group_lag", &billing),
            ("redis_patterns_messaging_group_pending", &billing),
        ],
    );

    // Handled and acknowledged.
    gate.add_permits(1);
    wait_until("three entries acknowledged", DEADLINE, || async {
        consumer.stats().acked >= 3
    })
    .await;
    rows.check(
        observed.take_metrics(),
        &[
            ("redis_patterns_messaging_delivered_total", &billing),
            ("redis_patterns_messaging_acked_total", &billing),
            (
                "redis_patterns_messaging_handler_duration_seconds",
                &billing,
            ),
        ],
    );

    // A handler error.
    producer.send(&job(true, false)).await.unwrap();
    wait_until("a handler failure", DEADLINE, || async {
        consumer.stats().failed >= 1
    })
    .await;
    rows.check(
        observed.take_metrics(),
        &[("redis_patterns_messaging_failed_total", &billing)],
    );

    // After min_idle the failed entry is reclaimed, fails its last delivery and is dead-lettered.
    wait_until("the failed entry dead-lettered", DEADLINE, || async {
        consumer.stats().dead_lettered >= 1
    })
    .await;
    rows.check(
        observed.take_metrics(),
        &[
            ("redis_patterns_messaging_reclaimed_total", &billing),
            ("redis_patterns_messaging_dead_lettered_total", &billing),
        ],
    );
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, run)
        .await
        .expect("run returned after the shutdown")
        .expect("run did not panic")
        .expect("run succeeded");

    // Publisher: messages published.
    let channel = format!("{}:prices-{SECRET}", ctx.prefix());
    let publisher = Publisher::new(ctx.redis().clone()).name("alerts").unwrap();
    publisher
        .publish(&channel, &job(false, false))
        .await
        .unwrap();
    rows.check(
        observed.take_metrics(),
        &[(
            "redis_patterns_messaging_published_total",
            &[("name", "alerts")],
        )],
    );

    // A subscription whose reader does not read drops what exceeds its backlog.
    let sub = Subscriber::builder(ctx.redis().clone())
        .name("prices-in")
        .channel(&channel)
        .max_backlog(2)
        .subscribe::<Job>()
        .await
        .unwrap();
    wait_until("a message dropped", DEADLINE, || async {
        publisher
            .publish(&channel, &job(false, false))
            .await
            .unwrap();
        sub.dropped() >= 1
    })
    .await;
    drop(sub);
    rows.check(
        observed.take_metrics(),
        &[(
            "redis_patterns_messaging_pubsub_dropped_total",
            &[("name", "prices-in")],
        )],
    );

    // A subscription whose connection is killed reports a gap (a private server: the kill hits
    // every subscriber on it).
    let private = TestContext::private().await;
    let publisher = Publisher::new(private.redis().clone());
    let mut sub = Subscriber::builder(private.redis().clone())
        .name("prices-in")
        .channel(&channel)
        .reconnect_backoff(backoff(ms(20), ms(300)))
        .subscribe::<Job>()
        .await
        .unwrap();
    wait_until("a subscriber on the channel", DEADLINE, || async {
        publisher
            .publish(&channel, &job(false, false))
            .await
            .unwrap()
            >= 1
    })
    .await;
    let killed: i64 = private
        .redis()
        .query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"))
        .await
        .unwrap();
    assert!(killed >= 1, "killed {killed}");
    loop {
        match next_event(&mut sub).await {
            Event::Gap(gap) => {
                assert_eq!(gap.kind, GapKind::Reconnect, "{gap}");
                break;
            }
            Event::Message(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    rows.check(
        observed.take_metrics(),
        &[(
            "redis_patterns_messaging_pubsub_gaps_total",
            &[("name", "prices-in")],
        )],
    );

    // Every documented metric had its row; every snapshot carries documented metrics and
    // labels only, and none shows the stream, the channel or the payload.
    for doc in METRICS {
        assert!(rows.covered.contains(&doc.name), "{} has no row", doc.name);
    }
    for metrics in &rows.snapshots {
        metrics.assert_documented(&[METRICS, redis_core::metrics::METRICS]);
        metrics.assert_no_label_contains(&[SECRET, ctx.prefix()]);
    }
    let spans = observed.take_spans();
    assert_no_field_contains(&spans, &[SECRET, ctx.prefix()]);
    for name in [
        "messaging.send",
        "messaging.schedule",
        "messaging.ensure_group",
        "messaging.handle",
        "messaging.publish",
        "messaging.subscribe",
    ] {
        assert!(spans.iter().any(|s| s.name == name), "no {name} span");
    }
    // The reclaimed entry's last delivery: its count at creation, its outcome recorded later.
    assert!(
        spans.iter().any(|s| s.name == "messaging.handle"
            && s.fields
                .iter()
                .any(|(k, v)| k == "delivery_count" && v == "2")),
        "no second delivery in a messaging.handle span"
    );
    for outcome in ["ok", "failed", "dead_lettered"] {
        assert!(
            spans
                .iter()
                .any(|s| s.fields.iter().any(|(k, v)| k == "outcome" && v == outcome)),
            "no handle outcome {outcome}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_span_is_a_root_whichever_task_runs_it() {
    use tracing::Instrument as _;

    let observed = observe().await;
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "roots")
        .build()
        .unwrap();
    // One read returns all three: at concurrency 1 the first two run in the reading task (inside
    // the caller's span), the last in a task of its own.
    producer
        .send_batch(&[job(false, false), job(false, false), job(false, false)])
        .await
        .unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, "roots", "g", "c")
        .block(ms(100))
        .batch_size(10)
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (consumer, shutdown) = (consumer.clone(), shutdown.clone());
        async move {
            let handler = |_: Delivery<Job>| async { Ok::<_, std::convert::Infallible>(()) };
            consumer.run(shutdown, handler).await
        }
        .instrument(tracing::info_span!("app.consumer"))
    });
    wait_until("all three acknowledged", DEADLINE, || async {
        consumer.stats().acked == 3
    })
    .await;
    shutdown.cancel();
    run.await.unwrap().unwrap();

    let spans = observed.take_spans();
    let handled: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "messaging.handle")
        .collect();
    assert_eq!(handled.len(), 3, "one span per attempt");
    assert!(
        handled.iter().all(|s| s.parent.is_none()),
        "handler spans are roots: {handled:?}"
    );
    // The caller's span did reach the reading task: the group's creation is inside it.
    assert!(
        spans
            .iter()
            .any(|s| s.name == "messaging.ensure_group"
                && s.parent.as_deref() == Some("app.consumer")),
        "the reading task runs in the caller's span"
    );
}
