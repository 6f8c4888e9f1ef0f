//! Delayed and scheduled entries: [`Producer::send_after`], [`Producer::send_at`],
//! [`Producer::schedule`] and [`Producer::cancel`]. An entry waits in a sorted set beside its
//! stream until a consumer's upkeep step (`tick.lua`) moves it into the stream when due.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis_core::{Codec, Key, duration_millis, redis::Value};
use serde::Serialize;
use tracing::Instrument as _;

use super::producer::Producer;
use crate::{
    config::Retention,
    error::{Error, Result},
    scripts::{CANCEL_SCHEDULED, SCHEDULE},
    value::text,
};

/// How long delayed keys outlive the latest due time among them, unless the producer says.
pub(super) const DEFAULT_DELAYED_HORIZON: Duration = Duration::from_secs(7 * 86_400);

/// The longest delay (and horizon) accepted: ten years.
pub(super) const MAX_DELAY: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The longest job id accepted, in bytes.
const MAX_JOB_ID: usize = 512;

/// The sorted set of delayed entries of `stream` (job id by due time): `<stream>:delayed`.
pub(super) fn delayed_key(stream: &Key) -> Key {
    stream.companion("delayed")
}

/// The hash of delayed entries' stored values of `stream`: `<stream>:delayed:jobs`.
pub(super) fn delayed_jobs_key(stream: &Key) -> Key {
    stream.companion("delayed:jobs")
}

/// When a delayed entry is due, and optionally its job id; for [`Producer::schedule`].
///
/// ```
/// use std::time::Duration;
/// use redis_messaging::Schedule;
///
/// let in_a_minute = Schedule::after(Duration::from_secs(60)).job_id("invoice-42");
/// # let _ = in_a_minute;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Schedule {
    due: Due,
    job_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    After(Duration),
    At(SystemTime),
}

impl Schedule {
    /// Due `delay` after the server receives the request (by the server's clock).
    pub fn after(delay: Duration) -> Self {
        Self {
            due: Due::After(delay),
            job_id: None,
        }
    }

    /// Due at `time`, compared with the server's clock. A time in the past is due at once.
    pub fn at(time: SystemTime) -> Self {
        Self {
            due: Due::At(time),
            job_id: None,
        }
    }

    /// The job id: while an entry with this id waits, scheduling the id again keeps the waiting
    /// one (and reports it, see [`Scheduled::created`]); [`Producer::cancel`] takes it. Without
    /// one, a random id is made. 1 to 512 bytes.
    pub fn job_id(mut self, id: impl Into<String>) -> Self {
        self.job_id = Some(id.into());
        self
    }
}

/// What [`Producer::schedule`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scheduled {
    /// The job id (the one given, or the random one made).
    pub job_id: String,
    /// When the entry is due, by the server's clock.
    pub due: SystemTime,
    /// False when an entry with this job id was already waiting: nothing was written, and `due`
    /// is that entry's.
    pub created: bool,
}

impl<C: Codec> Producer<C> {
    /// Appends `message` to the stream `delay` from now (server clock), under a random job id.
    /// Same as [`schedule`](Self::schedule) with [`Schedule::after`].
    ///
    /// ```no_run
    /// # async fn demo(producer: redis_messaging::Producer) -> redis_messaging::Result<()> {
    /// use std::time::Duration;
    /// let reminder = producer
    ///     .send_after(&serde_json::json!({"remind": 7}), Duration::from_secs(3600))
    ///     .await?;
    /// println!("due at {:?} as job {}", reminder.due, reminder.job_id);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`schedule`](Self::schedule).
    pub async fn send_after<T: Serialize + ?Sized>(
        &self,
        message: &T,
        delay: Duration,
    ) -> Result<Scheduled> {
        self.schedule(message, Schedule::after(delay)).await
    }

    /// Appends `message` to the stream at `time` (compared with the server's clock), under a
    /// random job id. Same as [`schedule`](Self::schedule) with [`Schedule::at`].
    ///
    /// # Errors
    /// As [`schedule`](Self::schedule).
    pub async fn send_at<T: Serialize + ?Sized>(
        &self,
        message: &T,
        time: SystemTime,
    ) -> Result<Scheduled> {
        self.schedule(message, Schedule::at(time)).await
    }

    /// Schedules `message`: it waits in `<stream>:delayed` (a sorted set on the stream's slot,
    /// values in `<stream>:delayed:jobs`) until it is due, then a running [`Consumer`](crate::Consumer)
    /// of any group moves it into the stream as an ordinary entry (with the job id in field `j`),
    /// within about its `delayed_poll` (default 250 ms) of the due time. One script, one round
    /// trip; the delayed keys expire the producer's
    /// [`delayed_horizon`](crate::ProducerBuilder::delayed_horizon) after the latest due time.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a delay above ten years, a time before 1970 or more than
    /// ten years ahead, or a job id that is empty or longer than 512 bytes (nothing is sent);
    /// [`Error::Core`] when encoding or the script fails.
    pub async fn schedule<T: Serialize + ?Sized>(
        &self,
        message: &T,
        schedule: Schedule,
    ) -> Result<Scheduled> {
        let (mode, ms) = match schedule.due {
            Due::After(delay) if delay <= MAX_DELAY => ("after", duration_millis(delay)),
            Due::After(_) => {
                return Err(Error::invalid_argument("delay above ten years"));
            }
            Due::At(time) => {
                let since = time
                    .duration_since(UNIX_EPOCH)
                    .map_err(|_| Error::invalid_argument("due time before 1970"))?;
                let horizon = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .saturating_add(MAX_DELAY);
                if since > horizon {
                    return Err(Error::invalid_argument(
                        "due time more than ten years ahead",
                    ));
                }
                ("at", duration_millis(since))
            }
        };
        let job_id = match schedule.job_id {
            Some(id) if id.is_empty() || id.len() > MAX_JOB_ID => {
                return Err(Error::invalid_argument(
                    "job id must be 1 to 512 bytes long",
                ));
            }
            Some(id) => id,
            None => redis_core::random_token(),
        };
        let mut stored = match self.retention {
            Retention::MaxLen(n) => format!("L{n}\n"),
            Retention::MaxAge(age) => format!("A{}\n", duration_millis(age)),
            _ => "U\n".to_owned(),
        }
        .into_bytes();
        stored.extend(self.codec.encode(message)?);
        let span = redis_core::operation_span!(
            self.redis,
            "messaging.schedule",
            name = %self.name,
        );
        let reply: Value = SCHEDULE
            .call()
            .key(delayed_key(&self.stream))
            .key(delayed_jobs_key(&self.stream))
            .arg(mode)
            .arg(ms)
            .arg(&job_id)
            .arg(stored)
            .arg(duration_millis(self.horizon))
            .invoke(&self.redis)
            .instrument(span)
            .await?;
        let (created, due_ms) = parse_scheduled(reply)?;
        Ok(Scheduled {
            job_id,
            due: UNIX_EPOCH + Duration::from_millis(due_ms),
            created,
        })
    }

    /// Cancels the scheduled entry `job_id` if it still waits; true when it did. An entry
    /// already moved into the stream is not touched (the move and the cancel are both atomic
    /// scripts, so exactly one of them wins).
    ///
    /// # Errors
    /// [`Error::Core`] when the script fails.
    pub async fn cancel(&self, job_id: &str) -> Result<bool> {
        let removed: i64 = CANCEL_SCHEDULED
            .call()
            .key(delayed_key(&self.stream))
            .key(delayed_jobs_key(&self.stream))
            .arg(job_id)
            .invoke(&self.redis)
            .await?;
        Ok(removed == 1)
    }

    /// How many scheduled entries wait (not yet moved into the stream): `ZCARD`.
    ///
    /// # Errors
    /// [`Error::Core`] when the command fails.
    pub async fn scheduled_len(&self) -> Result<u64> {
        Ok(self
            .redis
            .query(redis_core::redis::cmd("ZCARD").arg(delayed_key(&self.stream)))
            .await?)
    }
}

/// `{1|0, due ms}` from `schedule.lua` (the due time as a string: a score).
fn parse_scheduled(reply: Value) -> Result<(bool, u64)> {
    let unexpected = || Error::unexpected_reply("schedule script: expected {flag, due}");
    let Value::Array(parts) = reply else {
        return Err(unexpected());
    };
    let mut parts = parts.into_iter();
    let created = matches!(parts.next(), Some(Value::Int(1)));
    let due = parts
        .next()
        .and_then(text)
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0)
        .ok_or_else(unexpected)?;
    // Whole milliseconds below 2^53: exact in an f64.
    Ok((created, due as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delayed_keys_are_companions_on_the_stream_slot() {
        let ks = redis_core::KeySpace::new("t").unwrap();
        let stream = super::super::stream_key(&ks, "s").unwrap();
        assert_eq!(delayed_key(&stream).as_str(), "t:messaging:{s}:delayed");
        assert_eq!(delayed_jobs_key(&stream).slot(), stream.slot());
    }

    #[test]
    fn schedule_replies_parse() {
        let reply = Value::Array(vec![
            Value::Int(1),
            Value::BulkString(b"1700000000123".to_vec()),
        ]);
        assert_eq!(parse_scheduled(reply).unwrap(), (true, 1_700_000_000_123));
        let reply = Value::Array(vec![Value::Int(0), Value::BulkString(b"5".to_vec())]);
        assert_eq!(parse_scheduled(reply).unwrap(), (false, 5));
        assert!(parse_scheduled(Value::Nil).is_err());
    }
}
