//! The records a [`TowerSessionStore`](super::TowerSessionStore) created or loaded, by id.

use std::{collections::HashMap, sync::Mutex};

use tower_sessions_core::session::Id;

use super::RecordKey;

/// The records this store created or loaded, by id: their key, so that later calls on the same
/// record derive nothing, and their creation time, so that `save` of such a record can be one
/// plain `SET XX PXAT` (the absolute timeout counts from creation, which a record never
/// changes). A record this store has not seen is saved by the script. Bounded: a shard that
/// reaches its share of [`KnownRecords::CAPACITY`] starts over. The ids stay in this process's
/// memory, as in tower-sessions' own in-memory stores; Redis only ever sees their digests.
#[derive(Debug, Default)]
pub(super) struct KnownRecords {
    shards: [Mutex<HashMap<i128, Known, IdHash>>; 16],
}

/// What [`KnownRecords`] keeps of a record.
#[derive(Debug, Clone, Copy)]
pub(super) struct Known {
    pub(super) key: RecordKey,
    pub(super) created: u64,
}

/// Hashes an id by its low 64 bits: tower-sessions draws ids from a CSPRNG, so they are already
/// uniformly spread and SipHash would only cost time. Only records that exist are remembered,
/// so nobody picks where they land (a chosen id is only ever looked up).
type IdHash = std::hash::BuildHasherDefault<IdHasher>;

#[derive(Debug, Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Never called for an `i128`, which hashes through `write_i128`; kept correct anyway.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_i128(&mut self, id: i128) {
        self.0 ^= id as u64;
    }
}

impl KnownRecords {
    /// Most records remembered (about 100 bytes each).
    const CAPACITY: usize = 16_384;

    fn shard(&self, id: &Id) -> std::sync::MutexGuard<'_, HashMap<i128, Known, IdHash>> {
        // The id's top bits: the map hashes by its low ones.
        let shard = &self.shards[(id.0 >> 124) as usize & 15];
        // A panic while holding it cannot leave the map inconsistent: take it back.
        shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn remember(&self, id: &Id, key: RecordKey, created: u64) {
        let mut shard = self.shard(id);
        if shard.len() >= Self::CAPACITY / 16 {
            shard.clear();
        }
        shard.insert(id.0, Known { key, created });
    }

    pub(super) fn get(&self, id: &Id) -> Option<Known> {
        self.shard(id).get(&id.0).copied()
    }

    /// Forgets the record `id`, returning what was known of it.
    pub(super) fn forget(&self, id: &Id) -> Option<Known> {
        self.shard(id).remove(&id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{bucket_tag, digest_text};

    #[test]
    fn known_records_are_found_by_id() {
        let known = KnownRecords::default();
        let key = |c: u8| RecordKey {
            tag: bucket_tag(u16::from(c)),
            name: digest_text(&[c; 32]),
        };
        // The same low 64 bits (the one hash) in other shards (top bits), then in the same
        // shard: a colliding hash the map must still tell apart by the whole id.
        let ids = [Id(7), Id(7 | 1 << 125), Id(7 | 1 << 100)];
        for (n, id) in ids.iter().enumerate() {
            known.remember(id, key(n as u8), n as u64);
        }
        for (n, id) in ids.iter().enumerate() {
            let found = known.get(id).unwrap();
            assert_eq!(
                (found.key.name, found.created),
                (key(n as u8).name, n as u64)
            );
        }
        known.forget(&ids[0]);
        assert!(known.get(&ids[0]).is_none());
        assert_eq!(known.get(&ids[1]).map(|k| k.created), Some(1));
        assert!(known.get(&Id(8)).is_none());
    }
}
