//! Pub/sub against real servers: typed messages, patterns, bad payloads, and subscriptions that
//! survive `CLIENT KILL` and a server restart with a visible gap.

mod support;

use std::time::Duration;

use redis_core::redis;
use redis_messaging::{
    Backoff, DEFAULT_MAX_BACKLOG, Error, Event, Gap, GapKind, Message, Publisher, Subscriber,
    Subscription,
};
use redis_test_support::{FaultProxy, TestContext, wait_for, wait_until};
use serde::{Deserialize, Serialize};
use support::{DEADLINE, backoff, ms};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Price {
    sku: String,
    cents: u64,
}

/// Publishes until someone is listening on `channel` (a subscription becomes active
/// asynchronously), then returns.
async fn publish_until_heard(publisher: &Publisher, channel: &str, price: &Price) {
    wait_until("a subscriber on the channel", DEADLINE, || async {
        publisher.publish(channel, price).await.unwrap() >= 1
    })
    .await;
}

/// Waits until `sub` hears `channel`: publishes a first price until someone listens, then reads
/// it (or a later copy of it).
async fn subscribed(publisher: &Publisher, channel: &str, sub: &mut Subscription<Price>) {
    let lamp = Price {
        sku: "lamp".into(),
        cents: 1,
    };
    publish_until_heard(publisher, channel, &lamp).await;
    assert_eq!(next_message(sub).await.payload, lamp);
}

/// The next message, skipping the ones published while waiting for the subscription.
async fn next_event<T: serde::de::DeserializeOwned>(sub: &mut Subscription<T>) -> Event<T> {
    tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("an event in time")
        .expect("subscription alive")
}

async fn next_gap<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    sub: &mut Subscription<T>,
) -> Gap {
    loop {
        match next_event(sub).await {
            Event::Gap(gap) => return gap,
            Event::Message(_) => continue,
            other => panic!("unexpected event {other:?}"),
        }
    }
}

async fn next_message<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    sub: &mut Subscription<T>,
) -> Message<T> {
    match next_event(sub).await {
        Event::Message(m) => m,
        other => panic!("unexpected event {other:?}"),
    }
}

#[tokio::test]
async fn typed_messages_arrive_on_channels_and_patterns() {
    let ctx = TestContext::new().await;
    let p = ctx.prefix();
    let publisher = Publisher::new(ctx.redis().clone());
    let mut sub = Subscriber::builder(ctx.redis().clone())
        .channel(format!("{p}:prices"))
        .pattern(format!("{p}:alerts:*"))
        .subscribe::<Price>()
        .await
        .unwrap();

    let lamp = Price {
        sku: "lamp".into(),
        cents: 1999,
    };
    publish_until_heard(&publisher, &format!("{p}:prices"), &lamp).await;
    let m = next_message(&mut sub).await;
    assert_eq!(m.channel, format!("{p}:prices"));
    assert_eq!(m.pattern, None);
    assert_eq!(m.payload, lamp);
    // Drain the extra copies published while the subscription was coming up.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {}

    let alert = Price {
        sku: "desk".into(),
        cents: 1,
    };
    let heard = publisher
        .publish(&format!("{p}:alerts:desk"), &alert)
        .await
        .unwrap();
    assert_eq!(heard, 1);
    let m = next_message(&mut sub).await;
    assert_eq!(m.channel, format!("{p}:alerts:desk"));
    assert_eq!(m.pattern.as_deref(), Some(&*format!("{p}:alerts:*")));
    assert_eq!(m.payload, alert);

    // A payload written by something else is an event, not a panic or a dead subscription.
    let _: i64 = ctx
        .redis()
        .query(
            redis::cmd("PUBLISH")
                .arg(format!("{p}:prices"))
                .arg("{not json"),
        )
        .await
        .unwrap();
    match next_event(&mut sub).await {
        Event::Undecodable(bad) => {
            assert_eq!(bad.payload, b"{not json");
            assert!(bad.error.is_decode_error());
        }
        other => panic!("expected an undecodable event, got {other:?}"),
    }
    publisher
        .publish(&format!("{p}:prices"), &lamp)
        .await
        .unwrap();
    assert_eq!(next_message(&mut sub).await.payload, lamp);
}

#[tokio::test]
async fn bad_subscriptions_are_rejected() {
    let ctx = TestContext::new().await;
    let empty = Subscriber::builder(ctx.redis().clone())
        .subscribe::<Price>()
        .await;
    assert!(matches!(empty, Err(Error::InvalidConfig(_))));
    let blank = Subscriber::builder(ctx.redis().clone())
        .channel("")
        .subscribe::<Price>()
        .await;
    assert!(matches!(blank, Err(Error::InvalidConfig(_))));
    // A backoff whose minimum is above its maximum is refused before any builder sees it.
    assert!(matches!(
        Backoff::new(Duration::from_secs(2), Duration::from_secs(1)),
        Err(redis_core::Error::InvalidConfig(_))
    ));
    let sharded = Subscriber::builder(ctx.redis().clone())
        .sharded_channel("x")
        .subscribe::<Price>()
        .await;
    assert!(matches!(
        sharded,
        Err(Error::Core(redis_core::Error::Unsupported(_)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_survives_client_kill_and_reports_a_gap() {
    let ctx = TestContext::private().await;
    let p = ctx.prefix().to_owned();
    let channel = format!("{p}:prices");
    let publisher = Publisher::new(ctx.redis().clone());
    let mut sub = Subscriber::builder(ctx.redis().clone())
        .channel(&channel)
        .pattern(format!("{p}:p*"))
        .reconnect_backoff(backoff(ms(20), ms(500)))
        .subscribe::<Price>()
        .await
        .unwrap();
    subscribed(&publisher, &channel, &mut sub).await;

    // Kill every connection with subscriptions (only ours on this private server).
    let killed: i64 = ctx
        .redis()
        .query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"))
        .await
        .unwrap();
    assert!(killed >= 1, "killed {killed}");

    let gap = next_gap(&mut sub).await;
    assert!(gap.attempts >= 1);
    assert!(gap.reason.contains("closed"), "{gap}");
    assert_eq!(gap.kind, GapKind::Reconnect, "{gap}");
    assert_eq!(gap.dropped, 0, "{gap}");

    // Resubscribed to both the channel and the pattern.
    let after = Price {
        sku: "after-kill".into(),
        cents: 2,
    };
    let heard = wait_for("the channel and the pattern resubscribed", DEADLINE, || {
        let publisher = publisher.clone();
        let channel = channel.clone();
        let after = after.clone();
        async move {
            let n = publisher.publish(&channel, &after).await.unwrap();
            (n >= 1).then_some(n)
        }
    })
    .await;
    // One connection with a channel and a matching pattern counts as two receivers.
    assert_eq!(heard, 2);
    let m = next_message(&mut sub).await;
    assert_eq!(m.payload, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_survives_a_server_restart_and_reports_a_gap() {
    let mut ctx = TestContext::private().await;
    let channel = format!("{}:prices", ctx.prefix());
    let publisher = Publisher::new(ctx.redis().clone());
    let mut sub = Subscriber::builder(ctx.redis().clone())
        .channel(&channel)
        .reconnect_backoff(backoff(ms(20), ms(300)))
        .health_check_interval(Duration::from_millis(500))
        .subscribe::<Price>()
        .await
        .unwrap();
    subscribed(&publisher, &channel, &mut sub).await;

    // Crash the server, keep it down a moment (reconnects fail meanwhile), bring it back.
    let server = ctx.server().unwrap();
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await; // the outage itself, not a wait for a result
    server.restart();

    let gap = next_gap(&mut sub).await;
    assert!(gap.duration >= Duration::from_millis(200), "{gap}");
    assert!(
        gap.attempts >= 2,
        "reconnects failed while the server was down: {gap}"
    );

    let after = Price {
        sku: "after-restart".into(),
        cents: 3,
    };
    wait_until("the subscription is back", DEADLINE, || async {
        publisher
            .publish(&channel, &after)
            .await
            .is_ok_and(|n| n >= 1)
    })
    .await;
    assert_eq!(next_message(&mut sub).await.payload, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_connection_is_caught_by_the_health_check() {
    let mut ctx = TestContext::private().await;
    let port = ctx.server().unwrap().port();
    let proxy = FaultProxy::start(port).await;
    let through_proxy = redis_core::Redis::open(&proxy.url()).await.unwrap();
    let channel = format!("{}:prices", ctx.prefix());
    let publisher = Publisher::new(ctx.redis().clone());
    let mut sub = Subscriber::builder(through_proxy)
        .channel(&channel)
        .health_check_interval(Duration::from_millis(300))
        .reconnect_backoff(backoff(ms(20), ms(200)))
        .subscribe::<Price>()
        .await
        .unwrap();
    subscribed(&publisher, &channel, &mut sub).await;

    // Bytes vanish, nothing is closed: only the health check can notice.
    proxy.set_blackhole(true);
    tokio::time::sleep(Duration::from_secs(1)).await; // the outage itself
    proxy.set_blackhole(false);

    let gap = next_gap(&mut sub).await;
    assert!(gap.reason.contains("health check"), "{gap}");
    let after = Price {
        sku: "after-blackhole".into(),
        cents: 4,
    };
    wait_until("the subscription is back", DEADLINE, || async {
        publisher.publish(&channel, &after).await.unwrap() >= 1
    })
    .await;
    loop {
        let m = next_message(&mut sub).await;
        if m.payload == after {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_again_and_again_gets_backoff_not_a_reconnect_storm() {
    let ctx = TestContext::private().await;
    let channel = format!("{}:prices", ctx.prefix());
    let publisher = Publisher::new(ctx.redis().clone());
    let mut sub = Subscriber::builder(ctx.redis().clone())
        .channel(&channel)
        .reconnect_backoff(backoff(ms(50), Duration::from_secs(2)))
        .subscribe::<Price>()
        .await
        .unwrap();
    subscribed(&publisher, &channel, &mut sub).await;

    // Every connection the subscription makes is killed as soon as it shows up, for 1.5 s. Each
    // reconnect succeeds (the server is up), so only a backoff that carries over from one
    // short-lived connection to the next keeps this from turning into a reconnect loop.
    let started = std::time::Instant::now();
    let mut killed_total = 0i64;
    while started.elapsed() < Duration::from_millis(1500) {
        let killed: i64 = ctx
            .redis()
            .query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"))
            .await
            .unwrap();
        killed_total += killed;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Delays of at least 25, 50, 100, 200, 400 and 800 ms (jitter keeps the upper half of each
    // step) fit at most about seven connections into 1.5 s; without the carried-over backoff each
    // kill is followed by an immediate reconnect, hundreds of times.
    assert!(
        (1..=12).contains(&killed_total),
        "{killed_total} connections killed in 1.5 s"
    );

    // It comes back once the killing stops, and every lost connection was reported.
    let after = Price {
        sku: "after-storm".into(),
        cents: 5,
    };
    wait_until("the subscription is back", DEADLINE, || async {
        publisher.publish(&channel, &after).await.unwrap() >= 1
    })
    .await;
    let mut gaps = 0;
    loop {
        match next_event(&mut sub).await {
            Event::Gap(_) => gaps += 1,
            Event::Message(m) if m.payload == after => break,
            Event::Message(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(gaps >= 1, "no gap reported");
}

#[tokio::test]
async fn a_reader_that_falls_behind_keeps_at_most_max_backlog_and_sees_an_overflow_gap() {
    const BOUND: usize = 100;
    const BURST: u64 = 1_000;
    let ctx = TestContext::new().await;
    let p = ctx.prefix();
    let channel = format!("{p}:burst");
    let publisher = Publisher::new(ctx.redis().clone());
    let mut sub = Subscriber::builder(ctx.redis().clone())
        .channel(&channel)
        .max_backlog(BOUND)
        .subscribe::<u64>()
        .await
        .unwrap();
    // Wait for the subscription, then skip everything up to a marker published once.
    wait_until("a subscriber on the channel", DEADLINE, || async {
        publisher.publish(&channel, &u64::MAX).await.unwrap() >= 1
    })
    .await;
    publisher.publish(&channel, &(u64::MAX - 1)).await.unwrap();
    loop {
        match next_event(&mut sub).await {
            Event::Message(m) if m.payload == u64::MAX - 1 => break,
            Event::Message(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(sub.backlog(), 0);
    assert_eq!(sub.dropped(), 0);

    // Ten times the bound while nobody reads: every message is either waiting or dropped, and
    // no more than the bound ever waits.
    for i in 0..BURST {
        assert_eq!(publisher.publish(&channel, &i).await.unwrap(), 1);
        assert!(sub.backlog() <= BOUND, "backlog {}", sub.backlog());
    }
    wait_until("every message of the burst handled", DEADLINE, || async {
        assert!(sub.backlog() <= BOUND, "backlog {}", sub.backlog());
        sub.backlog() as u64 + sub.dropped() == BURST
    })
    .await;
    assert_eq!(sub.backlog(), BOUND);
    assert_eq!(sub.dropped(), BURST - BOUND as u64);

    // The reader gets the first BOUND messages in order, then a gap that counts the rest.
    for i in 0..BOUND as u64 {
        assert_eq!(next_message(&mut sub).await.payload, i);
    }
    match next_event(&mut sub).await {
        Event::Gap(gap) => {
            assert_eq!(gap.kind, GapKind::Overflow, "{gap}");
            assert_eq!(gap.dropped, BURST - BOUND as u64, "{gap}");
            assert_eq!(gap.attempts, 0, "{gap}");
        }
        other => panic!("expected an overflow gap, got {other:?}"),
    }

    // Later messages arrive normally again.
    for i in 0..3u64 {
        assert_eq!(publisher.publish(&channel, &(BURST + i)).await.unwrap(), 1);
    }
    for i in 0..3u64 {
        assert_eq!(next_message(&mut sub).await.payload, BURST + i);
    }
    assert_eq!(sub.dropped(), BURST - BOUND as u64);
    assert_eq!(sub.backlog(), 0);
}

#[tokio::test]
async fn max_backlog_defaults_and_zero_is_rejected() {
    assert_eq!(DEFAULT_MAX_BACKLOG, 10_000);
    let ctx = TestContext::new().await;
    let err = Subscriber::builder(ctx.redis().clone())
        .channel("c")
        .max_backlog(0)
        .subscribe::<u64>()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
}
