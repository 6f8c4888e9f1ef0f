//! The traffic of the failover tests: producers sending and scheduling, two consumers of one
//! group handling (and recording) every delivery, a publisher and a subscriber, all running
//! while the deployment changes under them; and what is checked once it has settled.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use redis_core::{KeySpace, Redis, redis};
use redis_messaging::{Consumer, Delivery, Event, Producer, Publisher, Subscriber};
use redis_test_support::{CallLog, ErrorWindow, wait_until};
use tokio::task::JoinHandle;

use super::{DEADLINE, Order, Running};

/// No call may take longer, failover or not.
pub const CALL_BOUND: Duration = Duration::from_secs(5);
/// A short node time-out so a killed cluster master's replica takes over within seconds.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);
/// An entry or job acknowledged to its sender can be lost with the master only if it was
/// acknowledged this shortly before the kill (replication is asynchronous but prompt).
pub const LOSS_BOUND: Duration = Duration::from_secs(2);
/// How soon after the new master answers a worker must be back (a loaded machine's slack on top
/// of "about a second").
pub const RESUME_BOUND: Duration = Duration::from_millis(2000);
/// Delay of the jobs the load schedules.
const LOAD_DELAY: Duration = Duration::from_millis(300);

/// Which kind of channel the subscriber listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `SUBSCRIBE`/`PUBLISH`.
    Plain,
    /// `SSUBSCRIBE`/`SPUBLISH`, on the stream's slot.
    Sharded,
}

/// One delivery as the handler saw it.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    job: Option<String>,
    at: Instant,
}

/// What the load and the workers observed, shared with the test.
#[derive(Debug, Default)]
struct Observed {
    /// Entry id -> when `send` returned it.
    sent: Mutex<BTreeMap<String, Instant>>,
    /// Job id -> when `send_after` returned it.
    scheduled: Mutex<BTreeMap<String, Instant>>,
    deliveries: Mutex<Vec<Seen>>,
    /// Entry id -> handlers running on it now.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Handlers that started on an entry another handler was still running on.
    overlaps: AtomicUsize,
    published: Mutex<Vec<Instant>>,
    heard: Mutex<Vec<Instant>>,
    gaps: AtomicUsize,
}

impl Observed {
    fn deliveries(&self) -> Vec<Seen> {
        self.deliveries.lock().unwrap().clone()
    }

    fn delivered_ids(&self) -> BTreeSet<String> {
        self.deliveries().into_iter().map(|d| d.id).collect()
    }

    async fn handle(&self, d: Delivery<Order>) {
        {
            let mut running = self.in_flight.lock().unwrap();
            let n = running.entry(d.id.clone()).or_default();
            if *n > 0 {
                self.overlaps.fetch_add(1, Ordering::Relaxed);
            }
            *n += 1;
        }
        // A little work, so that two handlers on one entry at once would overlap.
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.deliveries.lock().unwrap().push(Seen {
            id: d.id.clone(),
            job: d.job_id.clone(),
            at: Instant::now(),
        });
        *self.in_flight.lock().unwrap().get_mut(&d.id).unwrap() -= 1;
    }
}

/// When each worker was first seen working after an instant (the new master answering).
#[derive(Debug, Clone, Copy)]
pub struct Resumed {
    /// The first delivery to a handler.
    pub consumer: Duration,
    /// The first message the subscriber received.
    pub subscriber: Duration,
    /// The first successful `send`.
    pub send: Duration,
}

/// What [`Traffic::finish`] found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The callers' error window (sends, schedules, publishes).
    pub window: ErrorWindow,
    /// Entries acknowledged to their sender.
    pub sent: usize,
    /// Of those, not in the stream afterwards: acknowledged by a master that died before its
    /// replica had them.
    pub lost: usize,
    /// Jobs acknowledged to their scheduler.
    pub scheduled: usize,
    /// Of those, never delivered (lost with the master before replication).
    pub lost_jobs: usize,
    /// Deliveries of an entry already delivered before.
    pub redelivered: usize,
    /// Messages published successfully.
    pub published: usize,
    /// Messages the subscriber received.
    pub heard: usize,
    /// Gap events.
    pub gaps: usize,
}

/// Producers, consumers, a publisher and a subscriber on one stream, running until
/// [`finish`](Self::finish).
pub struct Traffic {
    redis: Redis,
    producer: Producer,
    log: Arc<CallLog>,
    observed: Arc<Observed>,
    consumers: Vec<Running>,
    load: Vec<JoinHandle<()>>,
    listener: JoinHandle<()>,
}

impl Traffic {
    /// Starts everything on the stream `name` of `keys` and the channel `<stream>:events`.
    pub async fn start(redis: &Redis, keys: &KeySpace, name: &str, channel: Channel) -> Self {
        let producer = Producer::builder(redis.clone(), keys, name)
            .build()
            .unwrap();
        let observed = Arc::new(Observed::default());
        let consumers = ["c1", "c2"]
            .into_iter()
            .map(|c| {
                let consumer = Consumer::builder(redis.clone(), keys, name, "g", c)
                    .batch_size(20)
                    .concurrency(4)
                    .block(Duration::from_millis(500))
                    .min_idle(Duration::from_secs(3))
                    .claim_interval(Duration::from_millis(500))
                    .build()
                    .unwrap();
                let observed = observed.clone();
                Running::start(&consumer, move |d: Delivery<Order>| {
                    let observed = observed.clone();
                    async move {
                        observed.handle(d).await;
                        Ok::<_, Infallible>(())
                    }
                })
            })
            .collect();
        let topic = format!("{}:events", producer.stream());
        let builder = Subscriber::builder(redis.clone());
        let builder = match channel {
            Channel::Plain => builder.channel(&topic),
            Channel::Sharded => builder.sharded_channel(&topic),
        };
        let mut subscription = builder.subscribe::<Order>().await.unwrap();
        let listener = tokio::spawn({
            let observed = observed.clone();
            async move {
                while let Some(event) = subscription.next().await {
                    match event {
                        Event::Message(_) => observed.heard.lock().unwrap().push(Instant::now()),
                        Event::Gap(_) => {
                            observed.gaps.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected event {other:?}"),
                    }
                }
            }
        });
        let log = CallLog::new(CALL_BOUND);
        let mut load = Vec::new();
        for task in 0..2u64 {
            let (log, producer, observed) = (log.clone(), producer.clone(), observed.clone());
            load.push(tokio::spawn(async move {
                for n in task * 1_000_000_000.. {
                    if log.stopped() {
                        return;
                    }
                    if let Some(Ok(id)) = log.call("send", producer.send(&Order { n })).await {
                        observed.sent.lock().unwrap().insert(id, Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }));
        }
        load.push(tokio::spawn({
            let (log, producer, observed) = (log.clone(), producer.clone(), observed.clone());
            async move {
                for n in 5_000_000_000.. {
                    if log.stopped() {
                        return;
                    }
                    let order = Order { n };
                    let schedule = producer.send_after(&order, LOAD_DELAY);
                    if let Some(Ok(job)) = log.call("schedule", schedule).await {
                        observed
                            .scheduled
                            .lock()
                            .unwrap()
                            .insert(job.job_id, Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
        load.push(tokio::spawn({
            let (log, observed) = (log.clone(), observed.clone());
            let publisher = Publisher::new(redis.clone());
            async move {
                for n in 6_000_000_000.. {
                    if log.stopped() {
                        return;
                    }
                    let order = Order { n };
                    let published = match channel {
                        Channel::Plain => {
                            log.call("publish", publisher.publish(&topic, &order)).await
                        }
                        Channel::Sharded => {
                            log.call("publish", publisher.spublish(&topic, &order))
                                .await
                        }
                    };
                    if let Some(Ok(_)) = published {
                        observed.published.lock().unwrap().push(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
        Self {
            redis: redis.clone(),
            producer,
            log,
            observed,
            consumers,
            load,
            listener,
        }
    }

    /// The stream's key.
    pub fn stream(&self) -> &redis_core::Key {
        self.producer.stream()
    }

    /// Waits until calls succeed, the consumers handle entries and the subscriber hears messages.
    pub async fn warmed_up(&self) {
        self.log.wait_successes(300, "load before the switch").await;
        let now = Instant::now();
        self.resumed_after(now).await;
    }

    /// Waits for `n` more successful calls.
    pub async fn succeeds(&self, n: usize, what: &str) {
        self.log.wait_successes(n, what).await;
    }

    /// Schedules one job due after each of `delays` and returns their job ids.
    pub async fn schedule(&self, delays: impl IntoIterator<Item = Duration>) -> Vec<String> {
        let mut jobs = Vec::new();
        for (i, delay) in delays.into_iter().enumerate() {
            let n = 7_000_000_000 + i as u64;
            let job = self.producer.send_after(&Order { n }, delay).await.unwrap();
            jobs.push(job.job_id);
        }
        jobs
    }

    /// Whether every job of `jobs` has been delivered.
    pub fn delivered_jobs(&self, jobs: &[String]) -> bool {
        let delivered: BTreeSet<String> = self
            .observed
            .deliveries()
            .into_iter()
            .filter_map(|d| d.job)
            .collect();
        jobs.iter().all(|j| delivered.contains(j))
    }

    /// Waits (up to 10 s) until a delivery, a received message and a successful send happened
    /// after `t`, and returns how long after `t` each first did.
    pub async fn resumed_after(&self, t: Instant) -> Resumed {
        let first = |times: Vec<Instant>| times.into_iter().filter(|&at| at > t).min();
        let o = &self.observed;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let consumer = first(o.deliveries().into_iter().map(|d| d.at).collect());
            let subscriber = first(o.heard.lock().unwrap().clone());
            let send = first(o.sent.lock().unwrap().values().copied().collect());
            if let (Some(consumer), Some(subscriber), Some(send)) = (consumer, subscriber, send) {
                return Resumed {
                    consumer: consumer - t,
                    subscriber: subscriber - t,
                    send: send - t,
                };
            }
            assert!(
                Instant::now() < deadline,
                "consumer, subscriber and sends at work again within 10 s: delivery {consumer:?}, \
                 message {subscriber:?}, send {send:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the load and checks the callers' errors ([`CallLog::check`]); waits until every
    /// entry in the stream has been delivered and every scheduled job is due and moved; stops the
    /// consumers. Checks that no entry was handled by two handlers at once and that anything
    /// acknowledged to a caller and lost was acknowledged at most [`LOSS_BOUND`] before `event`.
    pub async fn finish(self, what: &str, event: Instant, settled: Instant) -> Outcome {
        self.log.stop();
        for task in self.load {
            task.await.expect("load task panicked");
        }
        let window = self.log.check(what, event, settled);
        let o = &self.observed;
        wait_until(
            "every entry in the stream delivered, every job moved",
            DEADLINE,
            || async {
                let Ok(waiting) = self.producer.scheduled_len().await else {
                    return false;
                };
                let delivered = o.delivered_ids();
                waiting == 0
                    && stream_ids(&self.redis, &self.producer)
                        .await
                        .is_subset(&delivered)
            },
        )
        .await;
        for consumer in self.consumers {
            consumer.stop().await;
        }
        self.listener.abort();
        let in_stream = stream_ids(&self.redis, &self.producer).await;
        let sent = o.sent.lock().unwrap().clone();
        let deliveries = o.deliveries();
        let lost_entries = lost(what, "entry", event, &sent, |id| in_stream.contains(id));
        let jobs: BTreeSet<String> = deliveries.iter().filter_map(|d| d.job.clone()).collect();
        let scheduled = o.scheduled.lock().unwrap().clone();
        let lost_jobs = lost(what, "job", event, &scheduled, |id| jobs.contains(id));
        let overlaps = o.overlaps.load(Ordering::Relaxed);
        assert_eq!(overlaps, 0, "{what}: an entry was handled twice at once");
        let outcome = Outcome {
            window,
            sent: sent.len(),
            lost: lost_entries,
            scheduled: scheduled.len(),
            lost_jobs,
            redelivered: deliveries.len() - o.delivered_ids().len(),
            published: o.published.lock().unwrap().len(),
            heard: o.heard.lock().unwrap().len(),
            gaps: o.gaps.load(Ordering::Relaxed),
        };
        eprintln!(
            "{what}: {} entries sent, {} lost with the master; {} jobs scheduled, {} lost; {} \
             redelivered; {} published, {} received, {} gaps",
            outcome.sent,
            outcome.lost,
            outcome.scheduled,
            outcome.lost_jobs,
            outcome.redelivered,
            outcome.published,
            outcome.heard,
            outcome.gaps
        );
        outcome
    }
}

/// How many of `acked` (id -> when acknowledged) `kept` says are gone; each must have been
/// acknowledged at most [`LOSS_BOUND`] before `event`.
fn lost(
    what: &str,
    kind: &str,
    event: Instant,
    acked: &BTreeMap<String, Instant>,
    kept: impl Fn(&str) -> bool,
) -> usize {
    let mut lost = 0;
    for (id, &at) in acked {
        if kept(id) {
            continue;
        }
        lost += 1;
        let before = event.saturating_duration_since(at);
        assert!(
            at + LOSS_BOUND > event,
            "{what}: {kind} {id} acknowledged {before:?} before the event is gone"
        );
    }
    lost
}

/// The ids of every entry in the producer's stream.
async fn stream_ids(redis: &Redis, producer: &Producer) -> BTreeSet<String> {
    let reply: redis::Value = redis
        .query(
            redis::cmd("XRANGE")
                .arg(producer.stream())
                .arg("-")
                .arg("+"),
        )
        .await
        .unwrap();
    let redis::Value::Array(entries) = reply else {
        panic!("XRANGE: {reply:?}")
    };
    entries
        .into_iter()
        .map(|entry| match entry {
            redis::Value::Array(parts) => match &parts[0] {
                redis::Value::BulkString(id) => String::from_utf8(id.clone()).unwrap(),
                other => panic!("entry id {other:?}"),
            },
            other => panic!("entry {other:?}"),
        })
        .collect()
}

/// Makes sure the master on `port` has handed everything written so far to a replica: a write
/// of its own, then `WAIT 1` (a fresh connection's `WAIT` would not wait for anything).
pub async fn replicated(port: u16, key: &str) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (_, replicas): ((), i64) = redis::pipe()
        .cmd("SET")
        .arg(key)
        .arg(1)
        .arg("EX")
        .arg(60)
        .cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(replicas, 1, "the replica acknowledged the writes");
}
