//! In-process single flight: concurrent misses on one key share one load.
//!
//! The first caller for a key becomes the leader and runs the load inline (so loaders need not
//! be `'static`); the others wait on a `watch` channel for its outcome. If the leader is dropped
//! (its caller cancelled), its guard removes the flight and the channel closes: followers then
//! start over and one of them leads.
//!
//! A write to a key [`forget`](Flights::forget)s its flight: the load in progress may have read
//! the source before the write, so callers arriving after the write start a new one.

use std::{
    any::Any,
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::watch;

use crate::error::Error;

/// What the leader shares: the value (type-erased, `None` for "not found") or its error.
pub(crate) type Outcome = Result<Option<Arc<dyn Any + Send + Sync>>, Arc<Error>>;

type Slot = watch::Receiver<Option<Outcome>>;

#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<Map>,
}

#[derive(Debug, Default)]
struct Map {
    /// Key -> (flight id, receiver).
    flights: HashMap<String, (u64, Slot)>,
    next_id: u64,
}

pub(crate) enum Role<'a> {
    Leader(Lead<'a>),
    Follower(Slot),
}

/// The leader's guard: publishes the outcome, and removes the flight when dropped.
pub(crate) struct Lead<'a> {
    flights: &'a Flights,
    key: String,
    id: u64,
    tx: watch::Sender<Option<Outcome>>,
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, Map> {
        // A poisoned map still holds valid receivers; keep going.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the flight for `key`, or starts one.
    pub(crate) fn join(&self, key: &str) -> Role<'_> {
        let mut map = self.lock();
        if let Some((_, rx)) = map.flights.get(key) {
            return Role::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        let id = map.next_id;
        map.next_id = map.next_id.wrapping_add(1);
        map.flights.insert(key.to_owned(), (id, rx));
        Role::Leader(Lead {
            flights: self,
            key: key.to_owned(),
            id,
            tx,
        })
    }

    /// Detaches the flight for `key`, if any: its leader and current followers carry on, later
    /// callers start a new flight.
    pub(crate) fn forget(&self, key: &str) {
        let mut map = self.lock();
        // Most writes find no flight at all: skip hashing the key.
        if !map.flights.is_empty() {
            map.flights.remove(key);
        }
    }

    /// Number of loads in flight that new callers would join (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.lock().flights.len()
    }
}

impl Lead<'_> {
    /// Publishes the outcome to every follower; the flight ends when `self` drops.
    pub(crate) fn finish(self, outcome: Outcome) {
        self.tx.send_replace(Some(outcome));
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.lock();
        // Only our own flight: after `forget`, the key may belong to a newer one.
        if map
            .flights
            .get(&self.key)
            .is_some_and(|(id, _)| *id == self.id)
        {
            map.flights.remove(&self.key);
        }
    }
}

/// Waits for the leader. `None` when it was dropped without an outcome.
pub(crate) async fn wait(mut rx: Slot) -> Option<Outcome> {
    match rx.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_outcome_and_the_flight_ends() {
        let flights = Flights::default();
        let Role::Leader(lead) = flights.join("k") else {
            panic!("first caller leads")
        };
        let Role::Follower(rx) = flights.join("k") else {
            panic!("second caller follows")
        };
        assert!(matches!(flights.join("other"), Role::Leader(_)));
        let waiter = tokio::spawn(wait(rx));
        lead.finish(Ok(Some(Arc::new(7u32))));
        let outcome = waiter.await.unwrap().unwrap().unwrap().unwrap();
        assert_eq!(outcome.downcast_ref::<u32>(), Some(&7));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_followers() {
        let flights = Flights::default();
        let lead = flights.join("k");
        let Role::Follower(rx) = flights.join("k") else {
            panic!("second caller follows")
        };
        drop(lead);
        assert!(wait(rx).await.is_none());
        assert!(matches!(flights.join("k"), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_forgotten_flight_ends_without_touching_its_successor() {
        let flights = Flights::default();
        let Role::Leader(old) = flights.join("k") else {
            panic!("first caller leads")
        };
        let Role::Follower(old_rx) = flights.join("k") else {
            panic!("second caller follows")
        };
        flights.forget("k");
        let Role::Leader(new) = flights.join("k") else {
            panic!("after forget, a new flight starts")
        };
        // The old leader still serves its followers, and its end leaves the new flight alone.
        old.finish(Ok(None));
        assert!(matches!(wait(old_rx).await, Some(Ok(None))));
        assert!(matches!(flights.join("k"), Role::Follower(_)));
        assert_eq!(flights.len(), 1);
        drop(new);
        assert_eq!(flights.len(), 0);
    }
}
