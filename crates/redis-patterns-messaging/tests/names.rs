//! The `name` every builder takes for metrics and spans, and the consumer's metrics interval, are
//! checked when building.

use std::time::Duration;

use redis_messaging::{Consumer, Error, Producer, Publisher, Subscriber};
use redis_test_support::TestContext;

/// Empty, a key-like name, a space, 65 characters.
const BAD_NAMES: [&str; 4] = [
    "",
    "user:42",
    "with space",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

#[tokio::test]
async fn names_and_the_metrics_interval_are_checked_when_building() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let redis = ctx.redis();
    let consumer = || Consumer::builder(redis.clone(), &keys, "s", "g", "c");
    let producer = || Producer::builder(redis.clone(), &keys, "s");
    for bad in BAD_NAMES {
        assert!(
            matches!(consumer().name(bad).build(), Err(Error::InvalidConfig(_))),
            "{bad:?}"
        );
        assert!(
            matches!(producer().name(bad).build(), Err(Error::InvalidConfig(_))),
            "{bad:?}"
        );
        assert!(
            matches!(
                Publisher::new(redis.clone()).name(bad),
                Err(Error::InvalidConfig(_))
            ),
            "{bad:?}"
        );
        let subscribed = Subscriber::builder(redis.clone())
            .channel("c")
            .name(bad)
            .subscribe::<u64>()
            .await;
        assert!(
            matches!(subscribed, Err(Error::InvalidConfig(_))),
            "{bad:?}"
        );
    }
    assert!(consumer().name("billing.eu-1_a").build().is_ok());
    assert!(producer().name("orders").build().is_ok());
    assert!(Publisher::new(redis.clone()).name("alerts").is_ok());
    // A group name that is no valid metrics name is fine: the consumer reports as "default".
    assert!(
        Consumer::builder(redis.clone(), &keys, "s", "group:with:colons", "c")
            .build()
            .is_ok()
    );

    assert!(matches!(
        consumer().metrics_interval(Duration::ZERO).build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(
        consumer()
            .metrics_interval(Duration::from_millis(1))
            .build()
            .is_ok()
    );
}
