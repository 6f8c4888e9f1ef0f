//! The Streams consumer-group runner.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::FutureExt as _;
use redis::{
    Value,
    streams::{StreamReadOptions, StreamReadReply},
};
use redis_core::{Codec, DedicatedConnection, Key, Redis, Script, codec::Json};
use serde::de::DeserializeOwned;
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    backoff::Backoff,
    error::{Error, Result},
    producer::{PAYLOAD_FIELD, millis},
};

static CLAIM: Script = Script::new("messaging_claim", include_str!("scripts/claim.lua"));
static DEAD_LETTER: Script = Script::new(
    "messaging_dead_letter",
    include_str!("scripts/dead_letter.lua"),
);
static REMOVE_IDLE: Script = Script::new(
    "messaging_remove_idle_consumers",
    include_str!("scripts/remove_idle_consumers.lua"),
);

/// The suffix of the dead-letter stream: `<stream>:dead`, a companion on the stream's slot.
pub const DEAD_LETTER_SUFFIX: &str = "dead";

/// The dead-letter stream of `stream`.
pub fn dead_letter_key(stream: &Key) -> Key {
    stream.companion(DEAD_LETTER_SUFFIX)
}

/// One message handed to a handler.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery<T> {
    /// The stream entry id.
    pub id: String,
    /// The decoded payload.
    pub payload: T,
    /// How many times the entry has been delivered, this time included (1 on the first try).
    pub attempt: u64,
    /// The consumer that received it.
    pub consumer: Arc<str>,
}

/// Counters of one [`Consumer`], cumulative over its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Entries handed to the handler (new and reclaimed).
    pub delivered: u64,
    /// Entries acknowledged after the handler succeeded.
    pub acked: u64,
    /// Handler failures (errors and panics); the entry stays pending and is retried.
    pub failed: u64,
    /// Entries this consumer moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Entries this consumer reclaimed from stalled consumers.
    pub claimed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    claimed: AtomicU64,
}

/// Runs a handler over a stream as one consumer of a consumer group.
///
/// At-least-once: an entry is acknowledged (`XACK`) only after its handler returned `Ok`. An entry
/// whose consumer died is reclaimed by another consumer after [`min_idle`](ConsumerBuilder::min_idle);
/// after [`max_deliveries`](ConsumerBuilder::max_deliveries) it goes to the dead-letter stream
/// `<stream>:dead` with its id, the reason and the number of attempts.
///
/// ```
/// use std::time::Duration;
/// use redis_messaging::{Consumer, Delivery};
/// use tokio_util::sync::CancellationToken;
///
/// # async fn demo(redis: redis_core::Redis) -> redis_messaging::Result<()> {
/// let stream = redis_core::KeySpace::new("shop")?.pattern("stream")?.key("orders")?;
/// let consumer = Consumer::builder(redis, stream, "billing", "billing-1")
///     .batch_size(50)
///     .concurrency(8)
///     .min_idle(Duration::from_secs(60))
///     .max_deliveries(5)
///     .build()?;
/// let shutdown = CancellationToken::new();
/// consumer
///     .run(shutdown.clone(), |order: Delivery<serde_json::Value>| async move {
///         println!("billing order {} (attempt {})", order.payload, order.attempt);
///         Ok::<_, std::io::Error>(())
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Consumer<C: Codec = Json> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    redis: Redis,
    stream: Key,
    dead: Key,
    group: String,
    name: Arc<str>,
    codec: C,
    batch_size: usize,
    concurrency: usize,
    block: Duration,
    min_idle: Duration,
    claim_interval: Duration,
    max_deliveries: u64,
    dead_letter_max_len: u64,
    start_id: String,
    backoff: Backoff,
    counters: Counters,
}

impl<C: Codec> fmt::Debug for Consumer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("stream", &self.inner.stream)
            .field("group", &self.inner.group)
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Consumer`].
#[must_use]
#[derive(Debug, Clone)]
pub struct ConsumerBuilder<C: Codec = Json> {
    redis: Redis,
    stream: Key,
    group: String,
    name: String,
    codec: C,
    batch_size: usize,
    concurrency: usize,
    block: Duration,
    min_idle: Duration,
    claim_interval: Option<Duration>,
    max_deliveries: u64,
    dead_letter_max_len: u64,
    start_id: String,
    backoff: (Duration, Duration),
}

impl Consumer<Json> {
    /// Starts building consumer `name` of `group` on `stream`. Names must be unique among the
    /// live consumers of the group (a host name plus a process id works).
    pub fn builder(
        redis: Redis,
        stream: Key,
        group: impl Into<String>,
        name: impl Into<String>,
    ) -> ConsumerBuilder<Json> {
        ConsumerBuilder {
            redis,
            stream,
            group: group.into(),
            name: name.into(),
            codec: Json,
            batch_size: 10,
            concurrency: 1,
            block: Duration::from_secs(1),
            min_idle: Duration::from_secs(30),
            claim_interval: None,
            max_deliveries: 5,
            dead_letter_max_len: 100_000,
            start_id: "0".into(),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
        }
    }
}

impl<C: Codec> ConsumerBuilder<C> {
    /// Entries fetched per `XREADGROUP` (and per claim). Defaults to 10.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Handlers running at once in this consumer. Defaults to 1 (in order).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// How long one `XREADGROUP` waits for new entries. It also bounds how long a shutdown waits
    /// for the read in flight (which is always finished, never abandoned). Defaults to 1 s.
    /// Keep it below the dedicated connections' reply time-out if one is configured in
    /// `redis-core` (none by default), or every blocking read fails as a time-out.
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// How long an entry must stay unacknowledged before another consumer may claim it. Must be
    /// longer than the slowest handler, or slow entries are processed twice. The clock starts
    /// when the entry is read, not when its handler starts: entries of a batch wait for one of
    /// `concurrency` permits, so what must fit is about `batch_size / concurrency` handler runs.
    /// Defaults to 30 s.
    pub fn min_idle(mut self, min_idle: Duration) -> Self {
        self.min_idle = min_idle;
        self
    }

    /// How often this consumer looks for stalled entries (`XAUTOCLAIM`). Defaults to half of
    /// `min_idle`.
    pub fn claim_interval(mut self, every: Duration) -> Self {
        self.claim_interval = Some(every);
        self
    }

    /// Deliveries after which an entry that still fails goes to the dead-letter stream.
    /// Defaults to 5.
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n;
        self
    }

    /// Approximate length cap of the dead-letter stream. Defaults to 100 000.
    pub fn dead_letter_max_len(mut self, n: u64) -> Self {
        self.dead_letter_max_len = n;
        self
    }

    /// Where a group created by this consumer starts: `"0"` (the whole stream) or `"$"` (only
    /// new entries). Ignored when the group exists. Defaults to `"0"`.
    pub fn start_id(mut self, id: impl Into<String>) -> Self {
        self.start_id = id.into();
        self
    }

    /// Wait between attempts after a connection error: from `min` doubling to `max`, jittered.
    /// Defaults to 100 ms up to 5 s.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max);
        self
    }

    /// Decodes payloads with `codec` (the producer must use the same). Defaults to JSON.
    pub fn codec<C2: Codec>(self, codec: C2) -> ConsumerBuilder<C2> {
        ConsumerBuilder {
            redis: self.redis,
            stream: self.stream,
            group: self.group,
            name: self.name,
            codec,
            batch_size: self.batch_size,
            concurrency: self.concurrency,
            block: self.block,
            min_idle: self.min_idle,
            claim_interval: self.claim_interval,
            max_deliveries: self.max_deliveries,
            dead_letter_max_len: self.dead_letter_max_len,
            start_id: self.start_id,
            backoff: self.backoff,
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for empty names, zero sizes or durations, or a claim interval
    /// longer than `min_idle`.
    pub fn build(self) -> Result<Consumer<C>> {
        if self.group.is_empty() || self.name.is_empty() {
            return Err(Error::config("empty group or consumer name"));
        }
        if self.batch_size == 0 || self.concurrency == 0 {
            return Err(Error::config(
                "batch size and concurrency must be at least 1",
            ));
        }
        if self.max_deliveries == 0 || self.dead_letter_max_len == 0 {
            return Err(Error::config(
                "max deliveries and dead-letter length must be at least 1",
            ));
        }
        if self.block.as_millis() == 0 {
            return Err(Error::config(
                "block below one millisecond (BLOCK 0 would wait forever)",
            ));
        }
        if self.min_idle.as_millis() == 0 {
            return Err(Error::config("min idle below one millisecond"));
        }
        let claim_interval = self.claim_interval.unwrap_or(self.min_idle / 2);
        if claim_interval.is_zero() || claim_interval > self.min_idle {
            return Err(Error::config(
                "claim interval must be above zero and at most min idle",
            ));
        }
        if self.start_id.is_empty() {
            return Err(Error::config("empty start id"));
        }
        let backoff = Backoff::new(self.backoff.0, self.backoff.1)?;
        Ok(Consumer {
            inner: Arc::new(Inner {
                redis: self.redis,
                dead: dead_letter_key(&self.stream),
                stream: self.stream,
                group: self.group,
                name: self.name.into(),
                codec: self.codec,
                batch_size: self.batch_size,
                concurrency: self.concurrency,
                block: self.block,
                min_idle: self.min_idle,
                claim_interval,
                max_deliveries: self.max_deliveries,
                dead_letter_max_len: self.dead_letter_max_len,
                start_id: self.start_id,
                backoff,
                counters: Counters::default(),
            }),
        })
    }
}

/// An entry fetched from Redis, before decoding.
struct Fetched {
    id: String,
    attempt: u64,
    payload: Option<Vec<u8>>,
}

impl<C: Codec> Consumer<C> {
    /// The stream consumed.
    pub fn stream(&self) -> &Key {
        &self.inner.stream
    }

    /// The dead-letter stream (`<stream>:dead`).
    pub fn dead_letter_stream(&self) -> &Key {
        &self.inner.dead
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// This consumer's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Counters so far.
    pub fn stats(&self) -> ConsumerStats {
        let c = &self.inner.counters;
        ConsumerStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            acked: c.acked.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            claimed: c.claimed.load(Ordering::Relaxed),
        }
    }

    /// Creates the group (and the stream) if missing: `XGROUP CREATE .. MKSTREAM`, where an
    /// existing group (`BUSYGROUP`) is success. [`run`](Self::run) calls it.
    ///
    /// # Errors
    /// [`Error::Core`] when the command fails.
    pub async fn ensure_group(&self) -> Result<()> {
        ensure_group(
            &self.inner.redis,
            &self.inner.stream,
            &self.inner.group,
            &self.inner.start_id,
        )
        .await
    }

    /// Runs until `shutdown` is cancelled: creates the group, reads batches, runs `handler` on
    /// each entry (up to `concurrency` at once), acknowledges successes, reclaims stalled entries
    /// and dead-letters entries out of attempts.
    ///
    /// Shutdown is graceful: no new batch is read, every entry already fetched is handled and
    /// acknowledged (or left pending when its handler fails), then `run` returns. Connection
    /// errors are retried with backoff and do not end the run.
    ///
    /// A handler error or panic leaves the entry pending: it is delivered again after `min_idle`,
    /// until `max_deliveries`. Entries whose payload does not decode go straight to the dead-letter
    /// stream.
    ///
    /// # Errors
    /// Only for failures that retrying cannot fix: the group cannot be created on a reachable
    /// server (wrong type at the key, no permission).
    pub async fn run<T, F, Fut, E>(
        &self,
        shutdown: CancellationToken,
        handler: F,
    ) -> Result<ConsumerStats>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let handler = Arc::new(handler);
        let permits = Arc::new(Semaphore::new(self.inner.concurrency));
        let mut tasks = JoinSet::new();
        // Successes are acknowledged in batches by one task: one XACK per burst, not per entry.
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let mut acker = JoinSet::new();
        acker.spawn(self.clone().acknowledge(ack_rx));
        let mut conn: Option<DedicatedConnection> = None;
        let mut failures = 0u32;
        let mut claim_cursor = String::from("0-0");
        let mut next_claim = Instant::now();
        let mut group_ready = false;

        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            if !group_ready {
                match self.ensure_group().await {
                    Ok(()) => group_ready = true,
                    Err(e) if e.is_retryable() => {
                        self.pause(&shutdown, &mut failures, &e).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            if Instant::now() >= next_claim {
                match self.claim(&mut claim_cursor).await {
                    Ok(entries) => {
                        for entry in entries {
                            self.dispatch(entry, &handler, &permits, &mut tasks, &ack_tx)
                                .await;
                        }
                        next_claim = later(self.inner.claim_interval);
                    }
                    Err(e) => {
                        if is_no_group(&e) {
                            group_ready = false;
                        }
                        // Try again at the next interval: a claim that keeps failing must not
                        // stop the consumer from reading new entries.
                        next_claim = later(self.inner.claim_interval);
                        self.pause(&shutdown, &mut failures, &e).await;
                        continue;
                    }
                }
            }
            if conn.is_none() {
                match self.inner.redis.dedicated().await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        self.pause(&shutdown, &mut failures, &e.into()).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            // The read is never abandoned half-way: an entry the server handed out must reach a
            // handler. `block` bounds how long a shutdown waits for it.
            let read = tokio::time::timeout(
                self.inner.block.saturating_add(Duration::from_secs(10)),
                self.read(c),
            )
            .await;
            match read {
                Ok(Ok(entries)) => {
                    failures = 0;
                    for entry in entries {
                        self.dispatch(entry, &handler, &permits, &mut tasks, &ack_tx)
                            .await;
                    }
                }
                Ok(Err(e)) => {
                    conn = None;
                    if is_no_group(&e) {
                        group_ready = false;
                    }
                    self.pause(&shutdown, &mut failures, &e).await;
                }
                Err(_) => {
                    conn = None;
                    let e = Error::Core(redis_core::Error::Timeout(self.inner.block));
                    self.pause(&shutdown, &mut failures, &e).await;
                }
            }
        }
        // Graceful: everything fetched finishes (and is acknowledged) before returning.
        while tasks.join_next().await.is_some() {}
        drop(ack_tx);
        while acker.join_next().await.is_some() {}
        Ok(self.stats())
    }

    async fn pause(&self, shutdown: &CancellationToken, failures: &mut u32, error: &Error) {
        let delay = self.inner.backoff.delay(*failures);
        *failures = failures.saturating_add(1);
        tracing::warn!(consumer = %self.inner.name, %error, ?delay, "stream consumer retrying");
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }

    async fn read(&self, conn: &mut DedicatedConnection) -> Result<Vec<Fetched>> {
        let options = StreamReadOptions::default()
            .group(&self.inner.group, &*self.inner.name)
            .count(self.inner.batch_size)
            .block(usize::try_from(millis(self.inner.block)).unwrap_or(usize::MAX));
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg(&options)
            .arg("STREAMS")
            .arg(&self.inner.stream)
            .arg(">");
        let reply: Option<StreamReadReply> = cmd
            .query_async(conn)
            .await
            .map_err(|e| Error::Core(e.into()))?;
        let Some(reply) = reply else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for key in reply.keys {
            for entry in key.ids {
                let mut map = entry.map;
                out.push(Fetched {
                    id: entry.id,
                    attempt: 1,
                    payload: map.remove(PAYLOAD_FIELD).and_then(value_bytes),
                });
            }
        }
        Ok(out)
    }

    /// One pass of the claim script from `cursor` (continuing where the last pass stopped).
    async fn claim(&self, cursor: &mut String) -> Result<Vec<Fetched>> {
        let mut out = Vec::new();
        // A bounded number of steps per pass keeps reads flowing while a large backlog is claimed.
        for _ in 0..10 {
            let reply: Value = CLAIM
                .call()
                .key(&self.inner.stream)
                .key(&self.inner.dead)
                .arg(&self.inner.group)
                .arg(&*self.inner.name)
                .arg(millis(self.inner.min_idle))
                .arg(cursor.as_str())
                .arg(self.inner.batch_size)
                .arg(self.inner.max_deliveries)
                .arg(self.inner.dead_letter_max_len)
                .invoke(&self.inner.redis)
                .await?;
            let (next, entries, dead) = parse_claim(reply)?;
            let counters = &self.inner.counters;
            counters.dead_lettered.fetch_add(dead, Ordering::Relaxed);
            counters
                .claimed
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            out.extend(entries);
            *cursor = next;
            // A step that claimed nothing may only have scanned entries still in their min-idle
            // (XAUTOCLAIM looks at up to 10 × COUNT pending ids per step): go on scanning, or a
            // stalled entry behind many fresh ones would wait one claim interval per step.
            if cursor == "0-0" {
                break;
            }
        }
        Ok(out)
    }

    async fn dispatch<T, F, Fut, E>(
        &self,
        entry: Fetched,
        handler: &Arc<F>,
        permits: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        acks: &mpsc::UnboundedSender<String>,
    ) where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let this = self.clone();
        let handler = handler.clone();
        let acks = acks.clone();
        tasks.spawn(async move {
            this.process(entry, &*handler, &acks).await;
            drop(permit);
        });
    }

    async fn process<T, F, Fut, E>(
        &self,
        entry: Fetched,
        handler: &F,
        acks: &mpsc::UnboundedSender<String>,
    ) where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let inner = &self.inner;
        let payload = match &entry.payload {
            Some(bytes) => inner.codec.decode::<T>(bytes),
            None => Err(redis_core::Error::Decode(
                format!("entry has no `{PAYLOAD_FIELD}` field").into(),
            )),
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("payload does not decode: {}", error_chain(&e));
                self.dead_letter(&entry.id, &reason, entry.attempt).await;
                return;
            }
        };
        inner.counters.delivered.fetch_add(1, Ordering::Relaxed);
        let delivery = Delivery {
            id: entry.id.clone(),
            payload,
            attempt: entry.attempt,
            consumer: inner.name.clone(),
        };
        let outcome = AssertUnwindSafe(handler(delivery)).catch_unwind().await;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("handler panicked".to_owned()),
        };
        match failure {
            None => {
                // The acknowledger outlives every handler task of the run.
                let _ = acks.send(entry.id);
            }
            Some(reason) => {
                inner.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(id = %entry.id, attempt = entry.attempt, %reason, "handler failed");
                if entry.attempt >= inner.max_deliveries {
                    self.dead_letter(&entry.id, &reason, entry.attempt).await;
                }
            }
        }
    }

    /// Acknowledges handled entries in batches until every sender is gone.
    async fn acknowledge(self, mut ids: mpsc::UnboundedReceiver<String>) {
        let inner = &self.inner;
        let mut batch = Vec::new();
        while ids.recv_many(&mut batch, 1000).await > 0 {
            let mut attempt = 0;
            // The work is done: try hard to record it, or it is redone after min_idle.
            loop {
                let acked: redis_core::Result<i64> = inner
                    .redis
                    .query(
                        redis::cmd("XACK")
                            .arg(&inner.stream)
                            .arg(&inner.group)
                            .arg(&batch),
                    )
                    .await;
                match acked {
                    Ok(_) => {
                        inner
                            .counters
                            .acked
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if e.is_retryable() && attempt < 8 => {
                        tokio::time::sleep(inner.backoff.delay(attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => {
                        tracing::warn!(count = batch.len(), error = %e, "XACK failed; these entries will be delivered again");
                        break;
                    }
                }
            }
            batch.clear();
        }
    }

    async fn dead_letter(&self, id: &str, reason: &str, attempts: u64) {
        let inner = &self.inner;
        let moved: redis_core::Result<i64> = DEAD_LETTER
            .call()
            .key(&inner.stream)
            .key(&inner.dead)
            .arg(&inner.group)
            .arg(&*inner.name)
            .arg(id)
            .arg(reason)
            .arg(attempts)
            .arg(inner.dead_letter_max_len)
            .invoke(&inner.redis)
            .await;
        match moved {
            Ok(1) => {
                inner.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%id, attempts, %reason, "entry moved to the dead-letter stream");
            }
            Ok(_) => {
                tracing::debug!(%id, "entry was claimed by another consumer; not dead-lettered here")
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "dead-lettering failed; the entry stays pending")
            }
        }
    }
}

/// `now + d`, or about a century from now when `d` is too large for an `Instant` (a `min_idle` of
/// `Duration::MAX` means "never claim", not a panic).
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// Creates `group` on `stream` (and the stream) when missing; `BUSYGROUP` is success.
async fn ensure_group(redis: &Redis, stream: &Key, group: &str, start_id: &str) -> Result<()> {
    let created: redis_core::Result<Value> = redis
        .query(
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(group)
                .arg(start_id)
                .arg("MKSTREAM"),
        )
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.redis_error().and_then(|r| r.code()) == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn is_no_group(e: &Error) -> bool {
    e.core()
        .and_then(redis_core::Error::redis_error)
        .and_then(redis::RedisError::code)
        == Some("NOGROUP")
}

/// Removes the consumers of `group` that have no pending entries and were idle for at least
/// `min_idle`, atomically (a consumer cannot be handed an entry between the check and the
/// removal). Returns their names.
///
/// A consumer with pending entries is never removed: removing it would drop its entries from the
/// pending list, and nobody would ever reclaim them.
///
/// # Errors
/// [`Error::Core`] when the stream or group does not exist or the command fails.
pub async fn remove_idle_consumers(
    redis: &Redis,
    stream: &Key,
    group: &str,
    min_idle: Duration,
) -> Result<Vec<String>> {
    Ok(REMOVE_IDLE
        .call()
        .key(stream)
        .arg(group)
        .arg(millis(min_idle))
        .invoke(redis)
        .await?)
}

/// An entry of a dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub dead_id: String,
    /// Its id in the original stream.
    pub original_id: String,
    /// Why it was moved (the handler's last error, a decode error, or missing acknowledgements).
    pub reason: String,
    /// Deliveries it had.
    pub attempts: u64,
    /// The group that gave up on it.
    pub group: String,
    /// The consumer that moved it.
    pub consumer: String,
    /// The original payload bytes.
    pub payload: Option<Vec<u8>>,
}

/// Reads up to `count` entries of the dead-letter stream of `stream`, oldest first, starting at
/// `start` (`"-"` for the beginning).
///
/// # Errors
/// [`Error::Core`] when the command fails.
pub async fn read_dead_letters(
    redis: &Redis,
    stream: &Key,
    start: &str,
    count: usize,
) -> Result<Vec<DeadLetter>> {
    let reply: redis::streams::StreamRangeReply = redis
        .query(
            redis::cmd("XRANGE")
                .arg(dead_letter_key(stream))
                .arg(start)
                .arg("+")
                .arg("COUNT")
                .arg(count),
        )
        .await?;
    Ok(reply
        .ids
        .into_iter()
        .map(|e| {
            let mut map = e.map;
            let mut text = |k: &str| {
                map.remove(k)
                    .and_then(value_bytes)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            };
            let original_id = text("id");
            let reason = text("reason");
            let attempts = text("attempts").parse().unwrap_or(0);
            let group = text("group");
            let consumer = text("consumer");
            DeadLetter {
                dead_id: e.id,
                original_id,
                reason,
                attempts,
                group,
                consumer,
                payload: map.remove(PAYLOAD_FIELD).and_then(value_bytes),
            }
        })
        .collect())
}

fn value_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

fn unexpected(what: &str) -> Error {
    Error::Core(redis_core::Error::UnexpectedReply(format!(
        "claim script: {what}"
    )))
}

fn parse_claim(reply: Value) -> Result<(String, Vec<Fetched>, u64)> {
    let Value::Array(parts) = reply else {
        return Err(unexpected("not an array"));
    };
    let mut parts = parts.into_iter();
    let cursor = parts
        .next()
        .and_then(value_bytes)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .ok_or_else(|| unexpected("no cursor"))?;
    let Some(Value::Array(entries)) = parts.next() else {
        return Err(unexpected("no entries"));
    };
    let dead = match parts.next() {
        Some(Value::Int(n)) => u64::try_from(n).unwrap_or(0),
        _ => 0,
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(fields) = entry else {
            return Err(unexpected("entry is not an array"));
        };
        let mut fields = fields.into_iter();
        let id = fields
            .next()
            .and_then(value_bytes)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or_else(|| unexpected("entry without id"))?;
        let attempt = match fields.next() {
            Some(Value::Int(n)) => u64::try_from(n).unwrap_or(1),
            _ => 1,
        };
        let mut payload = None;
        if let Some(Value::Array(kv)) = fields.next() {
            let mut map: HashMap<String, Value> = HashMap::new();
            let mut kv = kv.into_iter();
            while let (Some(k), Some(v)) = (kv.next(), kv.next()) {
                if let Some(k) = value_bytes(k) {
                    map.insert(String::from_utf8_lossy(&k).into_owned(), v);
                }
            }
            payload = map.remove(PAYLOAD_FIELD).and_then(value_bytes);
        }
        out.push(Fetched {
            id,
            attempt,
            payload,
        });
    }
    Ok((cursor, out, dead))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_stream_is_a_companion_on_the_same_slot() {
        let ks = redis_core::KeySpace::new("t").unwrap();
        let key = ks.key("s").unwrap();
        assert_eq!(dead_letter_key(&key).as_str(), "t:{s}:dead");
        assert_eq!(dead_letter_key(&key).slot(), key.slot());
    }

    #[test]
    fn claim_replies_parse() {
        let reply = Value::Array(vec![
            Value::BulkString(b"0-0".to_vec()),
            Value::Array(vec![Value::Array(vec![
                Value::BulkString(b"1-1".to_vec()),
                Value::Int(3),
                Value::Array(vec![
                    Value::BulkString(b"p".to_vec()),
                    Value::BulkString(b"42".to_vec()),
                ]),
            ])]),
            Value::Int(2),
            Value::Int(0),
        ]);
        let (cursor, entries, dead) = parse_claim(reply).unwrap();
        assert_eq!(cursor, "0-0");
        assert_eq!(dead, 2);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, "1-1");
        assert_eq!(entries[0].attempt, 3);
        assert_eq!(entries[0].payload.as_deref(), Some(&b"42"[..]));
        assert!(parse_claim(Value::Nil).is_err());
    }
}
