//! A per-test context: a [`Redis`] handle and a key prefix no other test uses.

use std::sync::atomic::{AtomicU64, Ordering};

use redis_core::{KeySpace, Redis};

use crate::server::TestServer;

/// Environment variable with the URL of a server to share between tests (set by `cargo xtask test`).
pub const REDIS_URL_ENV: &str = "REDIS_URL";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A handle and a unique key space for one test.
///
/// With `REDIS_URL` set, it uses that server and, on drop, deletes only the keys under its own
/// prefix (it never flushes a server it did not start). Without it, it starts a private server that
/// dies with the context.
#[derive(Debug)]
pub struct TestContext {
    server: Option<TestServer>,
    url: String,
    prefix: String,
    redis: Redis,
}

impl TestContext {
    /// The server from `REDIS_URL` if set, otherwise a private one.
    ///
    /// # Panics
    /// When the server cannot be reached or started.
    pub async fn new() -> Self {
        match std::env::var(REDIS_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::with_url(url, None).await,
            _ => Self::private().await,
        }
    }

    /// Always a private server: for tests that kill, restart, pause or reconfigure it.
    ///
    /// # Panics
    /// When the server cannot be started.
    pub async fn private() -> Self {
        let server = TestServer::spawn();
        let url = server.url();
        Self::with_url(url, Some(server)).await
    }

    async fn with_url(url: String, server: Option<TestServer>) -> Self {
        let redis = Redis::open(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        let prefix = format!(
            "t{}n{}r{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand_u32()
        );
        Self {
            server,
            url,
            prefix,
            redis,
        }
    }

    /// The handle under test.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This test's key prefix (a valid [`KeySpace`] segment).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key space under this test's prefix.
    ///
    /// # Panics
    /// Never: the prefix is a valid segment.
    pub fn keyspace(&self) -> KeySpace {
        KeySpace::new(&self.prefix).unwrap_or_else(|e| panic!("test prefix: {e}"))
    }

    /// The private server, when the context started one.
    pub fn server(&mut self) -> Option<&mut TestServer> {
        self.server.as_mut()
    }

    /// Every key under this test's prefix (via `SCAN`, never `KEYS`).
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn keys(&self) -> Vec<String> {
        let pattern = format!("{}*", self.prefix);
        let mut conn = self.redis.clone();
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("SCAN failed: {e}"));
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        if self.server.is_some() {
            return; // the private server dies with us
        }
        // Shared server: remove our keys only. Best effort; a failure here must not mask the test's own result.
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(std::time::Duration::from_secs(2))
        else {
            return;
        };
        let pattern = format!("{}*", self.prefix);
        let keys: Vec<String> = match redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(&mut conn)
        {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(chunk).query(&mut conn);
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}
