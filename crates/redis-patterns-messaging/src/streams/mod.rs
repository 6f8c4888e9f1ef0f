//! Redis Streams: a typed [`Producer`], a consumer-group runner ([`Consumer`]) that acknowledges,
//! reclaims and dead-letters, group administration, and handler-side [`Idempotency`].
//!
//! Every key lives under `<app>:messaging`: a stream named `orders` is
//! `<app>:messaging:{orders}`, its dead-letter stream `<app>:messaging:{orders}:dead` and its
//! idempotency records `<app>:messaging:{orders}:done:<id>`, all on one cluster slot.

mod builder;
mod consumer;
mod dead_letter;
mod delayed;
mod group;
mod handle;
mod held;
mod idempotency;
mod producer;
mod reply;
mod run;
mod sample;
mod upkeep;

use redis_core::{Key, KeySpace};

pub use builder::ConsumerBuilder;
pub use consumer::{Consumer, ConsumerStats, Delivery};
pub use dead_letter::{DEAD_LETTER_SUFFIX, DeadLetter, dead_letter_key, read_dead_letters};
pub use delayed::{Schedule, Scheduled};
pub use group::remove_idle_consumers;
pub use idempotency::{Claim, Idempotency, Lease};
pub use producer::{Producer, ProducerBuilder};

use crate::error::Result;

/// The field every entry written by a [`Producer`] carries its encoded payload in.
pub const PAYLOAD_FIELD: &str = "p";

/// The pattern segment of every key this crate writes.
const PATTERN: &str = "messaging";

/// The key of the stream named `stream` in `keys`: `<prefix>:messaging:{<stream>}`. Producers,
/// consumers, dead letters and idempotency records of that stream all build on it.
///
/// ```
/// use redis_core::KeySpace;
///
/// let keys = KeySpace::new("shop")?;
/// let orders = redis_messaging::stream_key(&keys, "orders")?;
/// assert_eq!(orders.as_str(), "shop:messaging:{orders}");
/// # Ok::<(), redis_messaging::Error>(())
/// ```
///
/// # Errors
/// [`Error::Core`](crate::Error::Core) with [`redis_core::Error::InvalidKey`] for an empty or
/// overlong name.
pub fn stream_key(keys: &KeySpace, stream: &str) -> Result<Key> {
    Ok(keys.pattern(PATTERN)?.key(stream)?)
}
