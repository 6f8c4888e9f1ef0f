//! redis-patterns-messaging: typed pub/sub with gap events, and a stream consumed by a consumer group
//! with acknowledgements, a dead-letter stream and a graceful shutdown.

use std::time::Duration;

use redis_messaging::{
    CancellationToken, Consumer, Delivery, Event, Idempotency, Producer, Publisher, Retention,
    Subscriber, read_dead_letters,
};
use serde::{Deserialize, Serialize};

use crate::Tour;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u32,
    cents: u64,
}

pub(crate) async fn run(tour: Tour) -> anyhow::Result<()> {
    let Tour { redis, keys } = tour;

    // Pub/sub: fire-and-forget, but a subscription says when it may have missed something.
    let channel = format!("{}:prices", keys.prefix());
    let mut prices = Subscriber::builder(redis.clone())
        .channel(&channel)
        .subscribe::<Order>()
        .await?;
    let publisher = Publisher::new(redis.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut receivers = 0;
    while receivers == 0 && tokio::time::Instant::now() < deadline {
        receivers = publisher
            .publish(&channel, &Order { id: 0, cents: 1999 })
            .await?;
    }
    match tokio::time::timeout(Duration::from_secs(5), prices.next()).await {
        Ok(Some(Event::Message(m))) => println!(
            "   pub/sub: {receivers} subscriber(s) got {:?} on {}",
            m.payload, m.channel
        ),
        other => anyhow::bail!("no pub/sub message: {other:?}"),
    }
    drop(prices);

    // Streams: a producer with bounded retention and a consumer group, all on the stream "orders".
    let producer = Producer::builder(redis.clone(), &keys, "orders")
        .retention(Retention::MaxLen(1_000))
        .build()?;
    let orders: Vec<Order> = (1..=5)
        .map(|id| Order {
            id,
            cents: 100 * u64::from(id),
        })
        .collect();
    let ids = producer.send_batch(&orders).await?;
    println!(
        "   produced {} orders to {} (MAXLEN ~ 1000), first id {}",
        ids.len(),
        producer.stream(),
        ids[0]
    );

    let consumer = Consumer::builder(redis.clone(), &keys, "orders", "billing", "billing-1")
        .concurrency(2)
        .block(Duration::from_millis(100))
        .min_idle(Duration::from_millis(200))
        .max_deliveries(2)
        .build()?;
    let seen = Idempotency::new(redis.clone(), &keys, "orders", Duration::from_secs(60))?;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let consumer = consumer.clone();
        let shutdown = shutdown.clone();
        async move {
            consumer
                .run(shutdown, move |d: Delivery<Order>| {
                    let seen = seen.clone();
                    async move {
                        if d.payload.id == 3 {
                            return Err(format!("card declined (attempt {})", d.attempt));
                        }
                        if seen.begin(&d.id).await.map_err(|e| e.to_string())? {
                            println!(
                                "   billed order {} ({} cents)",
                                d.payload.id, d.payload.cents
                            );
                        }
                        Ok(())
                    }
                })
                .await
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = read_dead_letters(&redis, &keys, "orders", "-", 10).await?;
        if !dead.is_empty() || tokio::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    shutdown.cancel();
    let stats = run.await??;
    let Some(d) = dead.first() else {
        anyhow::bail!("order 3 never reached the dead-letter stream");
    };
    println!(
        "   dead letter in {}: entry {} after {} attempts: {}",
        consumer.dead_letter_stream(),
        d.original_id,
        d.attempts,
        d.reason
    );
    println!(
        "   graceful shutdown: delivered {}, acked {}, failed {}, dead-lettered {}, reclaimed {}",
        stats.delivered, stats.acked, stats.failed, stats.dead_lettered, stats.claimed
    );
    anyhow::ensure!(
        stats.acked == 4,
        "expected 4 acknowledged orders: {stats:?}"
    );
    Ok(())
}
