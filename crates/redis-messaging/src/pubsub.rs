//! Typed pub/sub: a [`Publisher`] and a [`Subscriber`] whose [`Subscription`] reconnects by
//! itself, resubscribes everything and reports the outage as an [`Event::Gap`].
//!
//! Pub/sub is fire-and-forget: a message published while a subscriber is disconnected is gone.
//! The subscription cannot bring it back, but it can say that it may have happened, which is what
//! the gap event is for. Use [Streams](crate::Consumer) when every message matters.

use std::{
    fmt,
    marker::PhantomData,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{ProtocolVersion, PushInfo, PushKind, Value, aio::ConnectionLike};
use redis_core::{Codec, Endpoint, Redis, codec::Json};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{
    backoff::Backoff,
    error::{Error, Result},
};

/// Publishes typed messages on channels (`PUBLISH`) and sharded channels (`SPUBLISH`).
///
/// Cheap to clone; commands go over the shared connection of the [`Redis`] handle.
#[derive(Debug, Clone)]
pub struct Publisher<C: Codec = Json> {
    redis: Redis,
    codec: C,
}

impl Publisher<Json> {
    /// A publisher that encodes messages as JSON.
    pub fn new(redis: Redis) -> Self {
        Self { redis, codec: Json }
    }
}

impl<C: Codec> Publisher<C> {
    /// A publisher with a codec of one's choice (subscribers must use the same one).
    pub fn with_codec(redis: Redis, codec: C) -> Self {
        Self { redis, codec }
    }

    /// Publishes `message` on `channel` and returns how many subscribers received it (on a
    /// cluster: how many on the node that took the command).
    ///
    /// # Errors
    /// [`Error::Core`] when encoding or the command fails.
    pub async fn publish<T: Serialize + ?Sized>(&self, channel: &str, message: &T) -> Result<u64> {
        let payload = self.codec.encode(message)?;
        let receivers = self
            .redis
            .query(redis::cmd("PUBLISH").arg(channel).arg(payload))
            .await?;
        Ok(receivers)
    }

    /// Publishes `message` on the sharded channel `channel` (`SPUBLISH`, Redis 7+): on a cluster
    /// it only travels within the shard that owns the channel's slot.
    ///
    /// # Errors
    /// [`Error::Core`] when encoding or the command fails.
    pub async fn spublish<T: Serialize + ?Sized>(&self, channel: &str, message: &T) -> Result<u64> {
        let payload = self.codec.encode(message)?;
        let receivers = self
            .redis
            .query(redis::cmd("SPUBLISH").arg(channel).arg(payload))
            .await?;
        Ok(receivers)
    }
}

/// Builds a [`Subscription`]: what to listen to and how to come back after a disconnect.
///
/// ```
/// # async fn demo(redis: redis_core::Redis) -> redis_messaging::Result<()> {
/// use std::time::Duration;
/// use redis_messaging::{Event, Subscriber};
///
/// let mut subscription = Subscriber::builder(redis)
///     .channel("orders:created")
///     .pattern("orders:*:cancelled")
///     .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(2))
///     .subscribe::<serde_json::Value>()
///     .await?;
/// while let Some(event) = subscription.next().await {
///     match event {
///         Event::Message(m) => println!("{}: {:?}", m.channel, m.payload),
///         Event::Gap(gap) => println!("may have missed messages: {gap}"),
///         Event::Undecodable(bad) => println!("skipped a bad payload on {}", bad.channel),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct SubscriberBuilder<C: Codec = Json> {
    redis: Redis,
    codec: C,
    channels: Vec<String>,
    patterns: Vec<String>,
    sharded: Vec<String>,
    backoff: (Duration, Duration),
    health_check: Duration,
    max_backlog: usize,
}

/// Entry point for subscriptions; see [`Subscriber::builder`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Subscriber;

impl Subscriber {
    /// Starts building a subscription on `redis` (standalone, Sentinel or cluster).
    pub fn builder(redis: Redis) -> SubscriberBuilder<Json> {
        SubscriberBuilder {
            redis,
            codec: Json,
            channels: Vec::new(),
            patterns: Vec::new(),
            sharded: Vec::new(),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            health_check: Duration::from_secs(5),
            max_backlog: DEFAULT_MAX_BACKLOG,
        }
    }
}

impl<C: Codec> SubscriberBuilder<C> {
    /// Listens to a channel (`SUBSCRIBE`). Call once per channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channels.push(channel.into());
        self
    }

    /// Listens to every channel matching a glob pattern (`PSUBSCRIBE`).
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Listens to a sharded channel (`SSUBSCRIBE`, Redis 7+). Needs a cluster endpoint: on a
    /// cluster a sharded message stays within the shard that owns the channel's slot instead of
    /// being broadcast to every node.
    pub fn sharded_channel(mut self, channel: impl Into<String>) -> Self {
        self.sharded.push(channel.into());
        self
    }

    /// Decodes payloads with `codec` (publishers must use the same). Defaults to JSON.
    pub fn codec<C2: Codec>(self, codec: C2) -> SubscriberBuilder<C2> {
        SubscriberBuilder {
            redis: self.redis,
            codec,
            channels: self.channels,
            patterns: self.patterns,
            sharded: self.sharded,
            backoff: self.backoff,
            health_check: self.health_check,
            max_backlog: self.max_backlog,
        }
    }

    /// Waits between reconnect attempts: from `min`, doubling up to `max`, jittered.
    /// Defaults to 100 ms up to 5 s.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max);
        self
    }

    /// Sends a `PING` on the subscription connection this often and reconnects when the answer
    /// does not come within the same time, which catches connections that died silently (a
    /// dropped network path sends no reset). Defaults to 5 s.
    pub fn health_check_interval(mut self, every: Duration) -> Self {
        self.health_check = every;
        self
    }

    /// The most events (messages and gaps) that may wait for [`Subscription::next`]. The
    /// background task keeps reading the connection whatever the reader does; once this many
    /// events wait, further messages are **dropped** until the reader catches up, and the next
    /// event after the waiting ones is an [`Event::Gap`] of kind [`GapKind::Overflow`] that says
    /// how many were dropped. So a subscriber slower than its publishers holds at most this many
    /// events in memory instead of growing without limit. Defaults to
    /// [`DEFAULT_MAX_BACKLOG`] (10 000); [`Subscription::backlog`] and
    /// [`Subscription::dropped`] show where a subscription stands.
    pub fn max_backlog(mut self, events: usize) -> Self {
        self.max_backlog = events;
        self
    }

    /// The former name of [`max_backlog`](Self::max_backlog), which it sets.
    pub fn buffer(self, events: usize) -> Self {
        self.max_backlog(events)
    }

    /// Connects, subscribes, and returns the subscription. Reconnects after this happen in the
    /// background.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty subscription, an empty name or bad timings;
    /// [`Error::Unsupported`] for sharded channels without a cluster; [`Error::Core`] when the
    /// first connection or subscription fails (so a wrong address fails loudly, not in a loop).
    pub async fn subscribe<T: DeserializeOwned>(self) -> Result<Subscription<T, C>> {
        if self.channels.is_empty() && self.patterns.is_empty() && self.sharded.is_empty() {
            return Err(Error::config("a subscription needs a channel or a pattern"));
        }
        if self
            .channels
            .iter()
            .chain(&self.patterns)
            .chain(&self.sharded)
            .any(String::is_empty)
        {
            return Err(Error::config("empty channel name or pattern"));
        }
        let backoff = Backoff::new(self.backoff.0, self.backoff.1)?;
        if self.health_check.is_zero() {
            return Err(Error::config("health check interval is zero"));
        }
        if self.max_backlog == 0 {
            return Err(Error::config("subscription max_backlog is zero"));
        }
        let plan = Plan {
            channels: self.channels,
            patterns: self.patterns,
            sharded: self.sharded,
        };
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let conn = connect(&self.redis, &plan, push_tx).await?;
        let (tx, rx) = mpsc::channel(self.max_backlog);
        let dropped = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let worker = Worker {
            redis: self.redis,
            plan,
            backoff,
            health_check: self.health_check,
            cancel: cancel.clone(),
        };
        let outbox = Outbox {
            tx,
            max_backlog: self.max_backlog,
            reconnect: None,
            overflow: None,
            dropped: Arc::clone(&dropped),
        };
        tokio::spawn(worker.run(conn, push_rx, outbox));
        Ok(Subscription {
            rx,
            dropped,
            codec: self.codec,
            _stop: cancel.drop_guard(),
            _payload: PhantomData,
        })
    }
}

/// A live subscription. Read it with [`next`](Self::next); drop it to unsubscribe and close the
/// connection.
pub struct Subscription<T, C: Codec = Json> {
    rx: mpsc::Receiver<Raw>,
    dropped: Arc<AtomicU64>,
    codec: C,
    _stop: DropGuard,
    _payload: PhantomData<fn() -> T>,
}

impl<T, C: Codec> fmt::Debug for Subscription<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned, C: Codec> Subscription<T, C> {
    /// How many events wait for [`next`](Self::next) right now; never more than
    /// [`max_backlog`](SubscriberBuilder::max_backlog).
    pub fn backlog(&self) -> usize {
        self.rx.len()
    }

    /// How many messages this subscription has dropped so far because its backlog was full (each
    /// drop is also reported by an [`Event::Gap`] of kind [`GapKind::Overflow`]).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The next event: a message, a gap, or a payload that did not decode. `None` only after the
    /// background task stopped (it does not give up on its own while the subscription lives).
    pub async fn next(&mut self) -> Option<Event<T>> {
        let raw = self.rx.recv().await?;
        Some(match raw {
            Raw::Gap(gap) => Event::Gap(gap),
            Raw::Message {
                channel,
                pattern,
                sharded,
                payload,
            } => match self.codec.decode::<T>(&payload) {
                Ok(payload) => Event::Message(Message {
                    channel,
                    pattern,
                    sharded,
                    payload,
                }),
                Err(error) => Event::Undecodable(Undecodable {
                    channel,
                    payload,
                    error,
                }),
            },
        })
    }
}

/// What a [`Subscription`] yields.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<T> {
    /// A message that decoded into `T`.
    Message(Message<T>),
    /// Messages were not received. Either ([`GapKind::Reconnect`]) the connection was lost and
    /// has been re-established, with every channel and pattern subscribed again: messages
    /// published in between were not received (on a cluster, where redis-rs reconnects node
    /// connections and resubscribes by itself, it comes when a node connection is lost,
    /// `duration` zero, before that resubscription is done). Or ([`GapKind::Overflow`]) the
    /// reader fell more than [`max_backlog`](SubscriberBuilder::max_backlog) events behind and
    /// [`Gap::dropped`] messages received after the ones before this event were dropped.
    Gap(Gap),
    /// A message whose payload is not a valid encoding of `T` (another producer, an old schema).
    Undecodable(Undecodable),
}

/// A received message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message<T> {
    /// The channel it was published on.
    pub channel: String,
    /// The pattern that matched, for pattern subscriptions.
    pub pattern: Option<String>,
    /// Whether it came through a sharded subscription (`SPUBLISH`).
    pub sharded: bool,
    /// The decoded payload.
    pub payload: T,
}

/// The default of [`SubscriberBuilder::max_backlog`].
pub const DEFAULT_MAX_BACKLOG: usize = 10_000;

/// What caused a [`Gap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GapKind {
    /// The connection was lost and re-established; how many messages were missed is unknown.
    Reconnect,
    /// The reader fell behind by [`max_backlog`](SubscriberBuilder::max_backlog) events and the
    /// subscription dropped [`Gap::dropped`] messages.
    Overflow,
}

/// A window in which messages may have been missed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    /// What happened: a reconnect or a full backlog.
    pub kind: GapKind,
    /// Why, in words (server closed the connection, health check failed, backlog full, ...).
    pub reason: String,
    /// For a reconnect: from losing the old connection to being subscribed again on the new one.
    /// For an overflow: from the first dropped message to this event.
    pub duration: Duration,
    /// Connection attempts it took (1 when the first one worked; 0 for an overflow).
    pub attempts: u32,
    /// Messages known to be dropped (an overflow); 0 for a reconnect, where the server does not
    /// say how many were published meanwhile.
    pub dropped: u64,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            GapKind::Overflow => write!(
                f,
                "{} message(s) dropped over {:?} ({})",
                self.dropped, self.duration, self.reason
            ),
            _ => write!(
                f,
                "disconnected for {:?} ({}), resubscribed after {} attempt(s)",
                self.duration, self.reason, self.attempts
            ),
        }
    }
}

/// A message whose payload did not decode.
#[derive(Debug)]
#[non_exhaustive]
pub struct Undecodable {
    /// The channel it was published on.
    pub channel: String,
    /// The raw payload.
    pub payload: Vec<u8>,
    /// The codec's error.
    pub error: redis_core::Error,
}

enum Raw {
    Message {
        channel: String,
        pattern: Option<String>,
        sharded: bool,
        payload: Vec<u8>,
    },
    Gap(Gap),
}

struct Plan {
    channels: Vec<String>,
    patterns: Vec<String>,
    sharded: Vec<String>,
}

enum Conn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    async fn ping(&mut self) -> redis::RedisResult<()> {
        let cmd = redis::cmd("PING");
        let reply = match self {
            Self::Single(c) => c.req_packed_command(&cmd).await?,
            Self::Cluster(c) => c.req_packed_command(&cmd).await?,
        };
        reply.extract_error().map(drop)
    }
}

type PushTx = mpsc::UnboundedSender<PushInfo>;

/// Opens a RESP3 connection whose pushes go to `push_tx` and subscribes everything in `plan`.
async fn connect(redis: &Redis, plan: &Plan, push_tx: PushTx) -> Result<Conn> {
    match redis.endpoint().await? {
        Endpoint::Single(client) => {
            if !plan.sharded.is_empty() {
                return Err(Error::Unsupported(
                    "sharded channels need a Redis Cluster endpoint",
                ));
            }
            let mut conn = redis_core::connect_with_pushes(
                client.get_connection_info(),
                push_tx,
                Duration::from_secs(5),
            )
            .await?;
            if !plan.channels.is_empty() {
                conn.subscribe(&plan.channels).await?;
            }
            if !plan.patterns.is_empty() {
                conn.psubscribe(&plan.patterns).await?;
            }
            Ok(Conn::Single(conn))
        }
        Endpoint::Cluster { nodes, .. } => {
            let client = redis::cluster::ClusterClient::builder(nodes)
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(push_tx)
                .connection_timeout(Duration::from_secs(5))
                .response_timeout(Duration::from_secs(5))
                .build()?;
            let mut conn = client.get_async_connection().await?;
            for channel in &plan.channels {
                conn.subscribe(channel).await?;
            }
            for pattern in &plan.patterns {
                conn.psubscribe(pattern).await?;
            }
            for channel in &plan.sharded {
                conn.ssubscribe(channel).await?;
            }
            Ok(Conn::Cluster(conn))
        }
        _ => Err(Error::Unsupported("this endpoint kind has no pub/sub")),
    }
}

struct Worker {
    redis: Redis,
    plan: Plan,
    backoff: Backoff,
    health_check: Duration,
    cancel: CancellationToken,
}

/// The sending side of the subscription's bounded channel. It never waits for the reader: a
/// message that does not fit is dropped and counted, and the gaps (reconnects, drops) wait here
/// until there is room, ahead of any later message.
struct Outbox {
    tx: mpsc::Sender<Raw>,
    max_backlog: usize,
    /// A reconnect gap not yet delivered.
    reconnect: Option<Gap>,
    /// Messages dropped since the last delivered overflow gap: when the first was, and how many.
    overflow: Option<(tokio::time::Instant, u64)>,
    dropped: Arc<AtomicU64>,
}

/// The reader is gone.
struct Closed;

impl Outbox {
    fn has_pending(&self) -> bool {
        self.reconnect.is_some() || self.overflow.is_some()
    }

    /// Delivers the pending gaps that fit; `Ok(true)` when none is left.
    fn flush(&mut self) -> Result<bool, Closed> {
        if let Some(gap) = self.reconnect.take() {
            match self.tx.try_send(Raw::Gap(gap)) {
                Ok(()) => {}
                Err(TrySendError::Full(Raw::Gap(gap))) => {
                    self.reconnect = Some(gap);
                    return Ok(false);
                }
                Err(TrySendError::Full(_)) => return Ok(false),
                Err(TrySendError::Closed(_)) => return Err(Closed),
            }
        }
        if let Some((since, dropped)) = self.overflow {
            let gap = Gap {
                kind: GapKind::Overflow,
                reason: format!(
                    "the reader fell {} events behind; later messages were dropped",
                    self.max_backlog
                ),
                duration: since.elapsed(),
                attempts: 0,
                dropped,
            };
            match self.tx.try_send(Raw::Gap(gap)) {
                Ok(()) => self.overflow = None,
                Err(TrySendError::Full(_)) => return Ok(false),
                Err(TrySendError::Closed(_)) => return Err(Closed),
            }
        }
        Ok(true)
    }

    /// Queues a reconnect gap (merged with one still waiting) and delivers what fits.
    fn gap(&mut self, gap: Gap) -> Result<(), Closed> {
        let gap = match self.reconnect.take() {
            Some(earlier) => Gap {
                duration: earlier.duration + gap.duration,
                attempts: earlier.attempts.saturating_add(gap.attempts),
                ..gap
            },
            None => gap,
        };
        self.reconnect = Some(gap);
        self.flush().map(drop)
    }

    /// Delivers a message after the pending gaps, or drops it when the backlog is full.
    fn message(&mut self, raw: Raw) -> Result<(), Closed> {
        if self.flush()? {
            match self.tx.try_send(raw) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Closed(_)) => return Err(Closed),
            }
        }
        let overflow = self
            .overflow
            .get_or_insert_with(|| (tokio::time::Instant::now(), 0));
        overflow.1 = overflow.1.saturating_add(1);
        if overflow.1 == 1 {
            tracing::warn!(
                max_backlog = self.max_backlog,
                "pub/sub reader is behind; dropping messages"
            );
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

enum Lost {
    Reason(String),
    Stop,
}

impl Worker {
    async fn run(
        self,
        mut conn: Conn,
        mut push_rx: mpsc::UnboundedReceiver<PushInfo>,
        mut outbox: Outbox,
    ) {
        // Connections in a row that were lost before they had been up for `backoff.max()`.
        let mut short_lived = 0u32;
        let mut connected_at = tokio::time::Instant::now();
        loop {
            let reason = match self.listen(&mut conn, &mut push_rx, &mut outbox).await {
                Lost::Stop => return,
                Lost::Reason(reason) => reason,
            };
            tracing::warn!(%reason, "pub/sub connection lost; reconnecting");
            let lost_at = tokio::time::Instant::now();
            // A server that accepts and subscribes but then drops the connection at once (killed
            // again and again, output buffer limit hit on every attempt) must not get a reconnect
            // storm: the backoff carries over until a connection stays up long enough.
            if lost_at.duration_since(connected_at) < self.backoff.max() {
                let delay = self.backoff.delay(short_lived);
                short_lived = short_lived.saturating_add(1);
                tracing::debug!(?delay, short_lived, "pub/sub connection was short-lived");
                tokio::select! {
                    () = self.cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            } else {
                short_lived = 0;
            }
            // A fresh push channel so nothing from the dead connection is mixed in.
            let mut attempts = 0u32;
            conn = loop {
                attempts += 1;
                let (push_tx, rx) = mpsc::unbounded_channel();
                push_rx = rx;
                match connect(&self.redis, &self.plan, push_tx).await {
                    Ok(conn) => break conn,
                    Err(e) => {
                        let delay = self.backoff.delay(short_lived.saturating_add(attempts - 1));
                        tracing::debug!(error = %e, ?delay, attempts, "pub/sub reconnect failed");
                        tokio::select! {
                            () = self.cancel.cancelled() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            };
            connected_at = tokio::time::Instant::now();
            let gap = Gap {
                kind: GapKind::Reconnect,
                reason,
                duration: lost_at.elapsed(),
                attempts,
                dropped: 0,
            };
            tracing::info!(%gap, "pub/sub resubscribed");
            if outbox.gap(gap).is_err() {
                return;
            }
        }
    }

    /// Forwards messages until the connection is lost or the subscription is dropped. It never
    /// waits for the reader, so the connection's push queue is drained as fast as it fills.
    async fn listen(
        &self,
        conn: &mut Conn,
        push_rx: &mut mpsc::UnboundedReceiver<PushInfo>,
        outbox: &mut Outbox,
    ) -> Lost {
        let mut ticker = tokio::time::interval(self.health_check);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            let pending = outbox.has_pending();
            tokio::select! {
                () = self.cancel.cancelled() => return Lost::Stop,
                // Room for a gap that is waiting: deliver it even when no message comes.
                room = async { outbox.tx.reserve().await.map(drop) }, if pending => {
                    if room.is_err() || outbox.flush().is_err() {
                        return Lost::Stop;
                    }
                }
                push = push_rx.recv() => {
                    let Some(push) = push else {
                        return Lost::Reason("push channel closed".into());
                    };
                    match push.kind {
                        PushKind::Disconnection => {
                            if let Conn::Cluster(_) = conn {
                                // The cluster client reconnects and resubscribes by itself; say
                                // that messages may have been lost on the way.
                                let gap = Gap {
                                    kind: GapKind::Reconnect,
                                    reason: "a cluster node connection was lost".into(),
                                    duration: Duration::ZERO,
                                    attempts: 1,
                                    dropped: 0,
                                };
                                if outbox.gap(gap).is_err() {
                                    return Lost::Stop;
                                }
                                continue;
                            }
                            return Lost::Reason("the server closed the connection".into());
                        }
                        kind => {
                            if let Some(raw) = to_raw(&kind, push.data)
                                && outbox.message(raw).is_err()
                            {
                                return Lost::Stop;
                            }
                        }
                    }
                }
                _ = ticker.tick() => {
                    match tokio::time::timeout(self.health_check, conn.ping()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Lost::Reason(format!("health check failed: {e}")),
                        Err(_) => return Lost::Reason(format!("no answer to a health check within {:?}", self.health_check)),
                    }
                }
            }
        }
    }
}

fn to_raw(kind: &PushKind, data: Vec<Value>) -> Option<Raw> {
    let mut data = data.into_iter();
    let (pattern, sharded) = match kind {
        PushKind::Message => (None, false),
        PushKind::SMessage => (None, true),
        PushKind::PMessage => (Some(text(data.next()?)?), false),
        _ => return None,
    };
    let channel = text(data.next()?)?;
    let payload = bytes(data.next()?)?;
    Some(Raw::Message {
        channel,
        pattern,
        sharded,
        payload,
    })
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

fn text(value: Value) -> Option<String> {
    bytes(value).map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_become_messages() {
        let raw = to_raw(
            &PushKind::PMessage,
            vec![
                Value::BulkString(b"a.*".to_vec()),
                Value::BulkString(b"a.b".to_vec()),
                Value::BulkString(b"1".to_vec()),
            ],
        );
        match raw {
            Some(Raw::Message {
                channel,
                pattern,
                sharded,
                payload,
            }) => {
                assert_eq!(channel, "a.b");
                assert_eq!(pattern.as_deref(), Some("a.*"));
                assert!(!sharded);
                assert_eq!(payload, b"1");
            }
            _ => panic!("not a message"),
        }
        assert!(to_raw(&PushKind::Subscribe, vec![]).is_none());
        // A truncated push is ignored, not a panic.
        assert!(to_raw(&PushKind::Message, vec![Value::Nil]).is_none());
        assert!(matches!(
            to_raw(
                &PushKind::SMessage,
                vec![
                    Value::BulkString(b"c".to_vec()),
                    Value::BulkString(b"2".to_vec())
                ]
            ),
            Some(Raw::Message { sharded: true, .. })
        ));
    }
}
