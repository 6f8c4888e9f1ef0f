//! The last tag versions this process saw, so that a tagged write need not read them first.
//!
//! A tagged [`Cache::set`](crate::Cache::set) writes its entry with the versions remembered here
//! and, in the same round trip, reads each tag's current version (`SET NX GET`, creating a
//! missing tag). An entry written under a version that is no longer current is never served (a
//! read compares versions), so a stale memory costs a second write, never a stale value: the
//! write is repeated with the versions it just read. Only versions read from Redis or written
//! by this process are remembered, and a version is never written back from here (a tag whose
//! key expired is recreated with a fresh random version, so old entries stay misses).

use std::{collections::HashMap, sync::Mutex};

/// At most this many tags are remembered; past it the memory starts over (it is only a hint).
const CAPACITY: usize = 4096;

/// Tag key -> last version seen.
type Versions = HashMap<Box<[u8]>, Box<[u8]>>;

/// The last version seen of each tag. Bounded, shared by a cache's clones.
#[derive(Debug, Default)]
pub(crate) struct TagMemo {
    versions: Mutex<Versions>,
}

impl TagMemo {
    /// The last version seen of the tag whose key is `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions.get(key).map(|v| v.to_vec())
    }

    /// Remembers `version` as the current version of `key`.
    pub(crate) fn remember(&self, key: &[u8], version: &[u8]) {
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        match versions.get_mut(key) {
            Some(known) if **known == *version => {}
            Some(known) => *known = version.into(),
            None => {
                if versions.len() >= CAPACITY {
                    versions.clear();
                }
                versions.insert(key.into(), version.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_version_within_its_bound() {
        let memo = TagMemo::default();
        assert_eq!(memo.get(b"t"), None);
        memo.remember(b"t", b"v1");
        memo.remember(b"t", b"v2");
        assert_eq!(memo.get(b"t").as_deref(), Some(&b"v2"[..]));
        for i in 0..CAPACITY + 10 {
            memo.remember(format!("k{i}").as_bytes(), b"v");
        }
        assert!(memo.versions.lock().unwrap().len() <= CAPACITY);
    }
}
