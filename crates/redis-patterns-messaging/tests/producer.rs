//! The producer against a real server: retention by length and by age, and where it writes.

mod support;

use std::time::Duration;

use redis_core::redis;
use redis_messaging::{Error, Producer, Retention, stream_key};
use redis_test_support::{TestContext, wait_until};
use support::{DEADLINE, Order};

#[tokio::test]
async fn producer_trims_by_length_and_by_age() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();

    let by_len = Producer::builder(ctx.redis().clone(), &keys, "len")
        .retention(Retention::MaxLen(10))
        .build()
        .unwrap();
    let orders: Vec<Order> = (0..1000).map(|n| Order { n }).collect();
    let ids = by_len.send_batch(&orders).await.unwrap();
    assert_eq!(ids.len(), 1000);
    assert!(ids.windows(2).all(|w| w[0] != w[1]));
    let len: u64 = ctx
        .redis()
        .query(redis::cmd("XLEN").arg(by_len.stream()))
        .await
        .unwrap();
    // Approximate trimming keeps at least 10 and far fewer than 1000.
    assert!((10..1000).contains(&len), "len {len}");

    let by_age = Producer::builder(ctx.redis().clone(), &keys, "age")
        .retention(Retention::MaxAge(Duration::from_millis(1)))
        .build()
        .unwrap();
    let first = by_age.send(&Order { n: 1 }).await.unwrap();
    assert!(first.contains('-'));
    // Entries older than the age limit go once a later write trims (MINID by the server clock).
    wait_until("old entries trimmed by MINID", DEADLINE, || async {
        let _ = by_age.send_batch(&orders[..200]).await.unwrap();
        let oldest: redis::streams::StreamRangeReply = ctx
            .redis()
            .query(
                redis::cmd("XRANGE")
                    .arg(by_age.stream())
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1),
            )
            .await
            .unwrap();
        oldest.ids.first().is_some_and(|e| e.id != first)
    })
    .await;

    let bad = Producer::builder(ctx.redis().clone(), &keys, "bad")
        .retention(Retention::MaxLen(0))
        .build();
    assert!(matches!(bad, Err(Error::InvalidConfig(_))));
}

#[tokio::test]
async fn a_producer_writes_the_stream_under_the_messaging_pattern() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "orders")
        .build()
        .unwrap();
    let expected = format!("{}:messaging:{{orders}}", keys.prefix());
    assert_eq!(producer.stream().as_str(), expected);
    assert_eq!(stream_key(&keys, "orders").unwrap(), *producer.stream());
    producer.send(&Order { n: 1 }).await.unwrap();
    assert_eq!(ctx.keys().await, [expected]);
    // A name that makes no key is refused when building, not on the first write.
    assert!(matches!(
        Producer::builder(ctx.redis().clone(), &keys, "").build(),
        Err(Error::Core(redis_core::Error::InvalidKey(_)))
    ));
}
