//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use redis_core::{Redis, redis};
use redis_session::SessionStore;
use redis_test_support::TestContext;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    pub items: Vec<String>,
    pub total_cents: u64,
    pub theme: Option<String>,
}

/// The session data most tests store.
pub fn cart() -> Cart {
    Cart {
        items: vec!["lamp".into(), "desk".into()],
        total_cents: 12_999,
        theme: Some("dark".into()),
    }
}

/// A store under the context's fresh prefix.
pub fn store(ctx: &TestContext, idle_ms: u64, absolute_ms: u64, touch_ms: u64) -> SessionStore {
    SessionStore::builder(ctx.redis().clone(), &ctx.keyspace())
        .idle_timeout(Duration::from_millis(idle_ms))
        .absolute_timeout(Duration::from_millis(absolute_ms))
        .touch_interval(Duration::from_millis(touch_ms))
        .build()
        .unwrap()
}

/// The last recorded access (ms, server clock) stored in the session at `key`: the second of the
/// value's fixed-width header times (`S1`, created, seen; see the crate's `docs/session.md`).
pub async fn stored_seen(redis: &Redis, key: &redis_core::Key) -> u64 {
    let value: Vec<u8> = redis.query(redis::cmd("GET").arg(key)).await.unwrap();
    assert_eq!(&value[..2], b"S1", "not a session value");
    std::str::from_utf8(&value[18..34])
        .unwrap()
        .parse()
        .unwrap()
}

/// Every byte string Redis holds for `keys`: key names, string values, hash fields and values,
/// zset members.
pub async fn dump(redis: &Redis, keys: &[String]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for key in keys {
        out.push(key.as_bytes().to_vec());
        let kind: String = redis.query(redis::cmd("TYPE").arg(key)).await.unwrap();
        match kind.as_str() {
            "string" => {
                let value: Vec<u8> = redis.query(redis::cmd("GET").arg(key)).await.unwrap();
                out.push(value);
            }
            "hash" => {
                let all: Vec<Vec<u8>> = redis.query(redis::cmd("HGETALL").arg(key)).await.unwrap();
                out.extend(all);
            }
            "zset" => {
                let all: Vec<Vec<u8>> = redis
                    .query(
                        redis::cmd("ZRANGE")
                            .arg(key)
                            .arg(0)
                            .arg(-1)
                            .arg("WITHSCORES"),
                    )
                    .await
                    .unwrap();
                out.extend(all);
            }
            "none" => {}
            other => panic!("unexpected key type {other} for {key}"),
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// ZCARD of the index of `user`, found by scanning for its name.
pub async fn index_members(ctx: &TestContext, _store: &SessionStore, user: &str) -> usize {
    let suffix = format!(":user:{user}");
    let index = ctx
        .keys()
        .await
        .into_iter()
        .find(|k| k.ends_with(&suffix))
        .unwrap_or_default();
    if index.is_empty() {
        return 0;
    }
    ctx.redis()
        .query(redis::cmd("ZCARD").arg(index))
        .await
        .unwrap()
}
