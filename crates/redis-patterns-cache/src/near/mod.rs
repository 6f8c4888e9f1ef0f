//! The optional near cache: a bounded in-process copy of recently read entries, invalidated
//! per key by Redis server-assisted client tracking (`CLIENT TRACKING ON BCAST`).
//!
//! # Design
//!
//! Entries are kept as the raw bytes read from Redis (envelope and payload) and decoded on every
//! hit, so one near cache serves every value type and a hit never outlives the entry's logical
//! expiry. A dedicated RESP3 connection asks Redis for invalidation pushes on every key under
//! the cache's prefix (entries, their companions and tag versions); each push evicts that key,
//! a tag-version push evicts every entry carrying the tag, and a null push flushes everything.
//!
//! Filling races with invalidation: a reader may read the old value from Redis, a writer then
//! changes it, and the push may reach this process before the reader stores what it read. Each
//! reader therefore takes a [`Ticket`](store::Ticket) (the global epoch and the epoch of the key's
//! stripe) *before* sending its `GET`; every invalidation bumps the key's stripe (tags, flushes and
//! tracking (re)connections bump the global epoch), and a fill whose ticket no longer matches is
//! dropped. Either the push arrives before the fill (refused) or after it (evicted).
//!
//! While the tracking connection is down, nothing is served or stored: a gap in the push stream
//! means anything may have changed. The entries are flushed when the loss is noticed and the
//! cache starts filling again once tracking is re-established on a new connection. A topology
//! change (a failover, moved slots) flushes too and re-tracks at once on the master(s) of now:
//! entries read from an old master would get no invalidation from the new one.
//!
//! [`store`] holds the bounded store (pure, tested without a server); [`tracking`] runs the
//! task that keeps it honest.

mod store;
mod tracking;

pub(crate) use store::Near;
pub use store::NearCacheStats;
pub(crate) use tracking::spawn;
