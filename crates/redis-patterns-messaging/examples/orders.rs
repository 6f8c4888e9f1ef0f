//! Orders through a Redis Stream with a consumer group (acknowledgements, a poison message that
//! ends in the dead-letter stream, graceful shutdown), plus a pub/sub notification per order.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-messaging --example orders`

use std::time::Duration;

use redis_core::{KeySpace, Redis};
use redis_messaging::{
    CancellationToken, Consumer, Delivery, Event, Producer, Publisher, Retention, Subscriber,
    read_dead_letters,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u32,
    cents: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = Redis::open(&url).await?;
    let prefix = format!("example{}", std::process::id());
    let keys = KeySpace::new(&prefix)?;
    let channel = format!("{prefix}:orders:billed");

    // Someone listening for "billed" notifications (fire-and-forget pub/sub).
    let mut notifications = Subscriber::builder(redis.clone())
        .channel(&channel)
        .subscribe::<Order>()
        .await?;

    // Writes the stream `<prefix>:messaging:{orders}`.
    let producer = Producer::builder(redis.clone(), &keys, "orders")
        .retention(Retention::MaxLen(10_000))
        .build()?;
    let orders: Vec<Order> = (1..=5)
        .map(|id| Order {
            id,
            cents: 100 * u64::from(id),
        })
        .collect();
    producer.send_batch(&orders).await?;
    println!("produced {} orders to {}", orders.len(), producer.stream());

    let consumer = Consumer::builder(redis.clone(), &keys, "orders", "billing", "billing-1")
        .concurrency(2)
        .block(Duration::from_millis(100))
        .min_idle(Duration::from_millis(200))
        .max_deliveries(2)
        .build()?;
    let shutdown = CancellationToken::new();
    let publisher = Publisher::new(redis.clone());
    let run = tokio::spawn({
        let consumer = consumer.clone();
        let shutdown = shutdown.clone();
        let channel = channel.clone();
        async move {
            consumer
                .run(shutdown, move |d: Delivery<Order>| {
                    let publisher = publisher.clone();
                    let channel = channel.clone();
                    async move {
                        if d.payload.id == 4 {
                            return Err(format!("card declined for order {}", d.payload.id));
                        }
                        publisher
                            .publish(&channel, &d.payload)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(())
                    }
                })
                .await
        }
    });

    // Four orders bill; order 4 fails twice and is dead-lettered.
    let mut billed = 0;
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while billed < 4 {
            if let Some(Event::Message(m)) = notifications.next().await {
                println!(
                    "notified: order {} billed ({} cents)",
                    m.payload.id, m.payload.cents
                );
                billed += 1;
            }
        }
        loop {
            let dead = read_dead_letters(&redis, &keys, "orders", "-", 10).await?;
            if let Some(d) = dead.first() {
                println!(
                    "dead letter: entry {} after {} attempts: {}",
                    d.original_id, d.attempts, d.reason
                );
                return Ok::<_, redis_messaging::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    shutdown.cancel();
    let stats = run.await??;
    println!("consumer stopped gracefully: {stats:?}");
    let _: i64 = redis
        .query(
            redis_core::redis::cmd("DEL")
                .arg(consumer.stream())
                .arg(consumer.dead_letter_stream()),
        )
        .await?;
    waited.map_err(|_| "timed out waiting for the orders")??;
    if stats.acked != 4 || stats.dead_lettered != 1 {
        return Err(format!("unexpected outcome: {stats:?}").into());
    }
    Ok(())
}
