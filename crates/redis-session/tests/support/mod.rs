//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use redis_core::{Redis, redis};
use redis_session::SessionStore;
use redis_test_support::TestContext;

/// A store under the context's fresh prefix.
pub fn store(ctx: &TestContext, idle_ms: u64, absolute_ms: u64, touch_ms: u64) -> SessionStore {
    SessionStore::builder(ctx.redis().clone(), &ctx.keyspace())
        .idle_timeout(Duration::from_millis(idle_ms))
        .absolute_timeout(Duration::from_millis(absolute_ms))
        .touch_interval(Duration::from_millis(touch_ms))
        .build()
        .unwrap()
}

/// Every byte string Redis holds for `keys`: key names, hash fields and values, zset members.
pub async fn dump(redis: &Redis, keys: &[String]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for key in keys {
        out.push(key.as_bytes().to_vec());
        let kind: String = redis.query(redis::cmd("TYPE").arg(key)).await.unwrap();
        match kind.as_str() {
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
