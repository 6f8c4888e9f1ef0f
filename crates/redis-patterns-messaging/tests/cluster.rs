//! Sharded pub/sub and streams on a 3-master Redis Cluster.

mod support;

use std::{
    collections::{BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use redis_core::{KeySpace, redis};
use redis_messaging::{
    Consumer, Delivery, Event, Producer, Publisher, Subscriber, read_dead_letters,
};
use redis_test_support::{TestCluster, wait_until};
use serde::{Deserialize, Serialize};
use support::{DEADLINE, Running};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tick {
    shard: String,
    n: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sharded_pub_sub_and_streams_work_across_every_master() {
    let cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;

    // Channels whose slots land on different masters ({a}, {b}, {c} hash to 15495, 3300, 7365).
    let channels: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|t| format!("ticks:{{{t}}}"))
        .collect();
    let slots: BTreeSet<u16> = channels
        .iter()
        .map(|c| redis_core::keys::slot(c.as_bytes()))
        .collect();
    assert_eq!(slots.len(), 3);

    let mut builder = Subscriber::builder(redis.clone());
    for c in &channels {
        builder = builder.sharded_channel(c);
    }
    let mut sub = builder.subscribe::<Tick>().await.unwrap();
    let publisher = Publisher::new(redis.clone());
    for c in &channels {
        wait_until("the shard subscription is active", DEADLINE, || async {
            let tick = Tick {
                shard: c.clone(),
                n: 0,
            };
            publisher.spublish(c, &tick).await.unwrap() >= 1
        })
        .await;
    }
    let mut heard = HashSet::new();
    while heard.len() < channels.len() {
        let event = tokio::time::timeout(DEADLINE, sub.next())
            .await
            .unwrap()
            .unwrap();
        match event {
            Event::Message(m) => {
                assert!(m.sharded);
                assert_eq!(m.channel, m.payload.shard);
                heard.insert(m.channel);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // Every node drops its pub/sub connections: each loss is reported as a gap, and the sharded
    // channels are subscribed again on their owners.
    let mut killed = 0;
    for url in cluster.urls() {
        let mut node = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let n: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut node)
            .await
            .unwrap();
        killed += n;
    }
    assert!(killed >= 3, "one sharded subscription per master: {killed}");
    let mut gaps = 0;
    let mut heard = HashSet::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    while gaps == 0 || heard.len() < channels.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "gaps {gaps}, heard again {heard:?}"
        );
        for c in &channels {
            let tick = Tick {
                shard: c.clone(),
                n: 1,
            };
            publisher.spublish(c, &tick).await.unwrap();
        }
        while let Ok(event) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            match event.unwrap() {
                Event::Gap(_) => gaps += 1,
                Event::Message(m) => {
                    assert!(m.sharded);
                    if m.payload.n == 1 {
                        heard.insert(m.channel);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    drop(sub);

    // Plain channels and patterns work on a cluster too (broadcast over the cluster bus).
    let mut plain = Subscriber::builder(redis.clone())
        .channel("news")
        .pattern("alerts:*")
        .subscribe::<Tick>()
        .await
        .unwrap();
    let news = Tick {
        shard: "news".into(),
        n: 1,
    };
    // PUBLISH counts receivers on the node that took it only; the message itself crosses the
    // cluster bus. So publish until the subscription has seen both kinds.
    let mut kinds = HashSet::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    while kinds.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "plain pub/sub on the cluster"
        );
        publisher.publish("news", &news).await.unwrap();
        publisher.publish("alerts:disk", &news).await.unwrap();
        while let Ok(event) = tokio::time::timeout(Duration::from_millis(200), plain.next()).await {
            match event.unwrap() {
                Event::Message(m) => {
                    assert!(!m.sharded);
                    assert_eq!(m.payload, news);
                    kinds.insert(m.pattern.is_some());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    drop(plain);

    // Streams on three slots, each with its dead-letter companion on the same slot.
    let keys = KeySpace::new("cluster").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut runs = Vec::new();
    for name in ["orders", "payments", "emails"] {
        let producer = Producer::builder(redis.clone(), &keys, name)
            .build()
            .unwrap();
        let ticks: Vec<Tick> = (0..50)
            .map(|n| Tick {
                shard: name.into(),
                n,
            })
            .collect();
        producer.send_batch(&ticks).await.unwrap();
        let consumer = Consumer::builder(redis.clone(), &keys, name, "g", "c1")
            .batch_size(10)
            .concurrency(4)
            .block(Duration::from_millis(100))
            .min_idle(Duration::from_millis(300))
            .claim_interval(Duration::from_millis(100))
            .max_deliveries(2)
            .build()
            .unwrap();
        assert_eq!(
            consumer.dead_letter_stream().slot(),
            consumer.stream().slot()
        );
        let seen = seen.clone();
        runs.push(Running::start(&consumer, move |d: Delivery<Tick>| {
            let seen = seen.clone();
            async move {
                // Tick 13 of each stream is poison and ends in that stream's dead letters.
                if d.payload.n == 13 {
                    return Err("unlucky");
                }
                seen.lock().unwrap().push((d.payload.shard, d.payload.n));
                Ok(())
            }
        }));
    }
    wait_until(
        "every stream consumed and dead-lettered",
        DEADLINE,
        || async {
            if seen.lock().unwrap().len() < 3 * 49 {
                return false;
            }
            for name in ["orders", "payments", "emails"] {
                if read_dead_letters(&redis, &keys, name, "-", 10)
                    .await
                    .unwrap()
                    .len()
                    != 1
                {
                    return false;
                }
            }
            true
        },
    )
    .await;
    for run in runs {
        run.stop().await;
    }
    let seen = seen.lock().unwrap().clone();
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 3 * 49);
    for name in ["orders", "payments", "emails"] {
        let dead = read_dead_letters(&redis, &keys, name, "-", 10)
            .await
            .unwrap();
        assert_eq!(dead[0].attempts, 2);
        assert_eq!(dead[0].reason, "unlucky");
    }
}
