//! Every pattern behind one axum service that exports Prometheus metrics at `/metrics`.
//!
//! `GET /work` runs each pattern once (a rate-limit check and a concurrency slot, a cache load, a
//! lock, a Redlock and a semaphore permit, a session, a stream entry through a consumer group, a
//! pub/sub message); `GET /metrics` renders what they
//! recorded, with the help texts of every crate's `METRICS` table. Import
//! `docs/grafana-dashboard.json` into Grafana to watch them.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-demo --features metrics --example prometheus`
//! then `curl localhost:9464/work` and `curl localhost:9464/metrics`. With `-- --check` it serves
//! on a free port, prints `listening on http://127.0.0.1:<port>`, and exits after its first
//! scrape of `/metrics` (what `cargo xtask test` does).

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use redis_cache::{Cache, EntryOptions};
use redis_core::{KeySpace, Redis};
use redis_lock::{Lock, Redlock, Semaphore};
use redis_messaging::{CancellationToken, Consumer, Delivery, Producer, Publisher, Subscriber};
use redis_ratelimit::{Acquired, ConcurrencyLimiter, Limit, RateLimiter};
use redis_session::SessionStore;
use tokio::sync::Notify;

/// The patterns the service runs, each built with the name its metrics carry.
struct Service {
    limiter: RateLimiter,
    uploads: ConcurrencyLimiter,
    cache: Cache,
    lock: Lock,
    redlock: Redlock,
    workers: Semaphore,
    sessions: SessionStore,
    producer: Producer,
    publisher: Publisher,
    channel: String,
    prometheus: PrometheusHandle,
    scraped: Notify,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let check = std::env::args().any(|a| a == "--check");
    // The recorder comes first: each pattern registers its handles with the recorder installed
    // when it is built.
    let prometheus = PrometheusBuilder::new()
        .set_buckets(&[
            0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
        ])?
        // Attempts per lock acquisition are counts, not seconds.
        .set_buckets_for_metric(
            Matcher::Full("redis_patterns_lock_attempts".to_owned()),
            &[1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0],
        )?
        .install_recorder()?;
    for table in [
        redis_core::metrics::METRICS,
        redis_cache::METRICS,
        redis_lock::METRICS,
        redis_messaging::METRICS,
        redis_ratelimit::METRICS,
        redis_session::METRICS,
    ] {
        redis_core::metrics::describe(table);
    }

    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = Redis::open(&url).await?;
    let keys = KeySpace::new(&format!("prometheus{}", std::process::id()))?;
    let channel = format!("prices{}", std::process::id());

    let limit = Limit::gcra(100, Duration::from_secs(1), 10);
    let limiter = RateLimiter::builder(redis.clone(), &keys, limit)
        .name("api")
        .build()?;
    let uploads = ConcurrencyLimiter::builder(redis.clone(), &keys, 4)
        .name("uploads")
        .build()?;
    let cache = Cache::builder(redis.clone(), &keys)
        .name("products")
        .build()?;
    let lock = Lock::builder(redis.clone(), &keys).name("jobs").build()?;
    // One instance keeps the example self-contained; production Redlock uses 3 or 5 masters.
    let redlock = Redlock::builder(vec![redis.clone()], &keys)
        .name("reports")
        .build()?;
    let workers = Semaphore::builder(redis.clone(), &keys, 8)
        .name("workers")
        .build()?;
    let sessions = SessionStore::builder(redis.clone(), &keys)
        .name("web")
        .build()?;
    let producer = Producer::builder(redis.clone(), &keys, "orders")
        .name("orders")
        .build()?;
    let consumer = Consumer::builder(redis.clone(), &keys, "orders", "billing", "billing-1")
        .name("billing")
        .metrics_interval(Duration::from_millis(100))
        .build()?;
    let publisher = Publisher::new(redis.clone()).name("prices")?;
    let mut subscription = Subscriber::builder(redis.clone())
        .name("prices")
        .channel(channel.clone())
        .subscribe::<u64>()
        .await?;

    let shutdown = CancellationToken::new();
    let consuming = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            consumer
                .run(shutdown, |_: Delivery<u64>| async {
                    Ok::<_, std::io::Error>(())
                })
                .await
        })
    };
    let listening = tokio::spawn(async move { while subscription.next().await.is_some() {} });
    let upkeep = {
        let prometheus = prometheus.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                prometheus.run_upkeep();
            }
        })
    };

    let service = Arc::new(Service {
        limiter,
        uploads,
        cache,
        lock,
        redlock,
        workers,
        sessions,
        producer,
        publisher,
        channel,
        prometheus,
        scraped: Notify::new(),
    });
    let app = Router::new()
        .route("/work", get(work))
        .route("/metrics", get(render))
        .with_state(service.clone());
    let listener =
        tokio::net::TcpListener::bind(("127.0.0.1", if check { 0 } else { 9464 })).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            if check {
                service.scraped.notified().await;
            } else {
                let _ = tokio::signal::ctrl_c().await;
            }
        })
        .await?;

    shutdown.cancel();
    consuming.await??;
    listening.abort();
    upkeep.abort();
    let removed = delete_keys(&redis, &keys).await?;
    println!("stopped; removed {removed} keys under {keys:?}");
    Ok(())
}

/// Runs every pattern once.
async fn work(State(s): State<Arc<Service>>) -> Result<&'static str, (StatusCode, String)> {
    let fail = |e: &dyn std::fmt::Display| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    s.limiter.check("client-1").await.map_err(|e| fail(&e))?;
    if let Acquired::Granted(permit) = s
        .uploads
        .try_acquire("client-1")
        .await
        .map_err(|e| fail(&e))?
    {
        permit.release().await.map_err(|e| fail(&e))?;
    }
    let _: Option<u64> = s
        .cache
        .get_or_load_with("product:1", &EntryOptions::new(), || async {
            Ok::<_, std::io::Error>(Some(7))
        })
        .await
        .map_err(|e| fail(&e))?;
    let guard = s.lock.acquire("job:1").await.map_err(|e| fail(&e))?;
    guard.release().await.map_err(|e| fail(&e))?;
    let guard = s.redlock.acquire("report:1").await.map_err(|e| fail(&e))?;
    guard.release().await.map_err(|e| fail(&e))?;
    let permit = s.workers.acquire("pool").await.map_err(|e| fail(&e))?;
    permit.release().await.map_err(|e| fail(&e))?;
    let id = s.sessions.create(&()).await.map_err(|e| fail(&e))?;
    s.sessions.load(&id).await.map_err(|e| fail(&e))?;
    s.producer.send(&1u64).await.map_err(|e| fail(&e))?;
    s.publisher
        .publish(&s.channel, &1u64)
        .await
        .map_err(|e| fail(&e))?;
    Ok("ok\n")
}

/// The Prometheus text format; in `--check` mode the first scrape ends the service.
async fn render(State(s): State<Arc<Service>>) -> String {
    let text = s.prometheus.render();
    s.scraped.notify_one();
    text
}

/// `UNLINK`s the example's keys (found with `SCAN`, never `KEYS`).
async fn delete_keys(redis: &Redis, keys: &KeySpace) -> redis_core::Result<usize> {
    let mut cursor = 0u64;
    let mut removed = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis
            .query(
                redis_core::redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(keys.scan_pattern())
                    .arg("COUNT")
                    .arg(500),
            )
            .await?;
        if !batch.is_empty() {
            removed += redis
                .query::<usize>(redis_core::redis::cmd("UNLINK").arg(&batch))
                .await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}
