//! Key-space audit and purge: `SCAN` (never `KEYS`) on every master for the keys under a
//! [`KeySpace`].
//!
//! [`audit`] counts keys per pattern, lists keys without a TTL (other than the exceptions a
//! pattern documents in its [`Requirements`]), finds the largest keys (`MEMORY USAGE`), draws the
//! TTL distribution and names our scripts in `SLOWLOG`. [`purge`] removes a key space with
//! `UNLINK` in pipelined batches, or only counts in a dry run.
//!
//! ```no_run
//! use redis_core::{KeySpace, audit};
//!
//! # async fn demo(redis: redis_core::Redis) -> redis_core::Result<()> {
//! let keys = KeySpace::new("myapp")?;
//! let report = audit::audit(&redis, &keys, &[], &audit::AuditOptions::default()).await?;
//! println!("{} keys, {} without TTL", report.keys, report.without_ttl_count);
//! let counted = audit::purge(&redis, &keys, audit::PurgeMode::DryRun).await?;
//! assert_eq!(counted.removed, 0);
//! # Ok(()) }
//! ```

use std::{collections::BTreeMap, time::Duration};

use redis::{Value, aio::ConnectionLike};
use serde::Serialize;

use crate::{
    KeySpace, Redis, Result,
    doctor::{self, Requirements, Target},
};

/// Settings of an [`audit`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuditOptions {
    /// How many largest keys to keep. Defaults to 10.
    pub top: usize,
    /// `MEMORY USAGE` is asked of every `measure_every`-th key (1: all). Defaults to 1.
    pub measure_every: usize,
    /// A key at least this large (bytes) is listed as big. Defaults to 100 KiB.
    pub big_key_bytes: u64,
    /// `SCAN`'s `COUNT` hint, also the size of each pipelined batch. Defaults to 500.
    pub batch: usize,
    /// How many keys without a TTL to name (all are counted). Defaults to 100.
    pub list_limit: usize,
    /// Bounds connecting to each node and each reply. Defaults to 5 s.
    pub timeout: Duration,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            top: 10,
            measure_every: 1,
            big_key_bytes: 100 * 1024,
            batch: 500,
            list_limit: 100,
            timeout: Duration::from_secs(5),
        }
    }
}

/// One key and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeySize {
    /// The key.
    pub key: String,
    /// The node holding it.
    pub node: String,
    /// `MEMORY USAGE` in bytes.
    pub bytes: u64,
}

/// One bucket of the TTL distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TtlBucket {
    /// `none`, `< 1m`, `< 10m`, `< 1h`, `< 1d`, `< 7d` or `>= 7d`.
    pub label: &'static str,
    /// Keys in it.
    pub keys: u64,
}

/// A `SLOWLOG` entry of one of our scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SlowScript {
    /// The node.
    pub node: String,
    /// The script's name (`lock_acquire`, ...).
    pub script: String,
    /// How long it ran, in microseconds.
    pub micros: u64,
    /// When (Unix seconds, server clock).
    pub at: u64,
}

/// What [`audit`] found.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Audit {
    /// The key space's prefix.
    pub prefix: String,
    /// The nodes scanned.
    pub nodes: Vec<String>,
    /// Keys under the prefix.
    pub keys: u64,
    /// Keys per pattern (the segment after the prefix; `-` for keys without one).
    pub per_pattern: BTreeMap<String, u64>,
    /// Keys without a TTL that no pattern documents as such.
    pub without_ttl_count: u64,
    /// The first of them (up to [`AuditOptions::list_limit`]).
    pub without_ttl: Vec<String>,
    /// Keys without a TTL that a pattern documents (fencing counters, streams).
    pub documented_without_ttl: u64,
    /// The largest keys measured, largest first.
    pub largest: Vec<KeySize>,
    /// The keys measured at or above [`AuditOptions::big_key_bytes`].
    pub big_keys: u64,
    /// Keys measured with `MEMORY USAGE`.
    pub measured: u64,
    /// The TTL distribution.
    pub ttl: Vec<TtlBucket>,
    /// `SLOWLOG` entries of the scripts of the given patterns.
    pub slow_scripts: Vec<SlowScript>,
}

/// Upper bounds (ms) and labels of the TTL buckets after `none`.
const TTL_BUCKETS: &[(i64, &str)] = &[
    (60_000, "< 1m"),
    (600_000, "< 10m"),
    (3_600_000, "< 1h"),
    (86_400_000, "< 1d"),
    (604_800_000, "< 7d"),
    (i64::MAX, ">= 7d"),
];

/// Audits the keys under `keys` on every master behind `redis`. `requirements` name the
/// documented keys without TTL and the scripts to look for in `SLOWLOG`.
///
/// # Errors
/// Connection failures and error replies (a user without `SCAN`, `MEMORY` or `SLOWLOG`).
pub async fn audit(
    redis: &Redis,
    keys: &KeySpace,
    requirements: &[&Requirements],
    options: &AuditOptions,
) -> Result<Audit> {
    let mut audit = Audit {
        prefix: keys.prefix().to_owned(),
        ttl: std::iter::once("none")
            .chain(TTL_BUCKETS.iter().map(|(_, label)| *label))
            .map(|label| TtlBucket { label, keys: 0 })
            .collect(),
        ..Audit::default()
    };
    let scripts: Vec<(String, &'static str)> = requirements
        .iter()
        .flat_map(|r| r.script_list())
        .map(|s| (s.sha1().to_owned(), s.name()))
        .collect();
    for target in doctor::nodes(redis, options.timeout).await? {
        match target {
            Target::Node(node, info) => {
                let mut conn = doctor::connect(&info, options.timeout).await?;
                audit_node(&mut conn, &node, keys, requirements, options, &mut audit).await?;
                slowlog(&mut conn, &node, &scripts, &mut audit).await?;
                audit.nodes.push(node);
            }
            Target::Backend => {
                let (host, port) = redis.server_address();
                let node = format!("{host}:{port}");
                let mut conn = redis.clone();
                audit_node(&mut conn, &node, keys, requirements, options, &mut audit).await?;
                slowlog(&mut conn, &node, &scripts, &mut audit).await?;
                audit.nodes.push(node);
            }
        }
    }
    audit
        .largest
        .sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.key.cmp(&b.key)));
    audit.largest.truncate(options.top);
    Ok(audit)
}

/// `<prefix>:*` with the glob characters of the prefix escaped.
fn match_pattern(keys: &KeySpace) -> String {
    let mut pattern = String::new();
    for c in keys.prefix().chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str(":*");
    pattern
}

/// One `SCAN` step: the next cursor and the keys.
async fn scan<C: ConnectionLike + Send>(
    conn: &mut C,
    cursor: u64,
    pattern: &str,
    count: usize,
) -> Result<(u64, Vec<String>)> {
    Ok(redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(count.max(1))
        .query_async(conn)
        .await?)
}

async fn audit_node<C: ConnectionLike + Send>(
    conn: &mut C,
    node: &str,
    keys: &KeySpace,
    requirements: &[&Requirements],
    options: &AuditOptions,
    audit: &mut Audit,
) -> Result<()> {
    let pattern = match_pattern(keys);
    let prefix = format!("{}:", keys.prefix());
    let mut cursor = 0;
    loop {
        let (next, batch) = scan(conn, cursor, &pattern, options.batch).await?;
        if !batch.is_empty() {
            let mut pipe = redis::pipe();
            let mut measured = Vec::new();
            for key in &batch {
                pipe.cmd("PTTL").arg(key);
                audit.keys += 1;
                if (audit.keys - 1).is_multiple_of(options.measure_every.max(1) as u64) {
                    measured.push(key);
                }
            }
            for key in &measured {
                pipe.cmd("MEMORY")
                    .arg("USAGE")
                    .arg(*key)
                    .arg("SAMPLES")
                    .arg(5);
            }
            let replies: Vec<Value> = pipe.query_async(conn).await?;
            let (ttls, sizes) = replies.split_at(batch.len().min(replies.len()));
            for (key, ttl) in batch.iter().zip(ttls) {
                let ttl: i64 = redis::from_redis_value_ref(ttl).unwrap_or(-2);
                if ttl == -2 {
                    continue; // gone since the scan
                }
                let rest = key.strip_prefix(&prefix).unwrap_or(key);
                let segment = rest
                    .split(':')
                    .next()
                    .filter(|s| !s.starts_with('{') && !s.is_empty())
                    .unwrap_or("-");
                *audit.per_pattern.entry(segment.to_owned()).or_default() += 1;
                if ttl == -1 {
                    audit.ttl[0].keys += 1;
                    if documented(keys, requirements, segment, rest) {
                        audit.documented_without_ttl += 1;
                    } else {
                        audit.without_ttl_count += 1;
                        if audit.without_ttl.len() < options.list_limit {
                            audit.without_ttl.push(key.clone());
                        }
                    }
                } else if let Some(i) = TTL_BUCKETS.iter().position(|(upper, _)| ttl < *upper) {
                    audit.ttl[i + 1].keys += 1;
                }
            }
            for (key, size) in measured.iter().zip(sizes) {
                let Ok(bytes) = redis::from_redis_value_ref::<u64>(size) else {
                    continue;
                };
                audit.measured += 1;
                if bytes >= options.big_key_bytes {
                    audit.big_keys += 1;
                }
                audit.largest.push(KeySize {
                    key: (*key).clone(),
                    node: node.to_owned(),
                    bytes,
                });
            }
            audit
                .largest
                .sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.key.cmp(&b.key)));
            audit.largest.truncate(options.top);
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// True when a pattern documents `rest` (the key after `<prefix>:`) as a key without TTL.
/// `segment` is the pattern's segment; a prefix that already ends with the pattern's name
/// (`shop:lock`) works too.
fn documented(keys: &KeySpace, requirements: &[&Requirements], segment: &str, rest: &str) -> bool {
    requirements.iter().any(|r| {
        let after_pattern = if r.pattern() == segment {
            rest.strip_prefix(segment).and_then(|r| r.strip_prefix(':'))
        } else if keys.prefix().rsplit(':').next() == Some(r.pattern()) {
            Some(rest)
        } else {
            None
        };
        after_pattern.is_some_and(|after| r.allows_no_ttl(after))
    })
}

/// Adds the `SLOWLOG` entries of our scripts (`EVALSHA <sha>` of a known script).
async fn slowlog<C: ConnectionLike + Send>(
    conn: &mut C,
    node: &str,
    scripts: &[(String, &'static str)],
    audit: &mut Audit,
) -> Result<()> {
    if scripts.is_empty() {
        return Ok(());
    }
    let entries: Vec<Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(128)
        .query_async(conn)
        .await?;
    for entry in entries {
        let Value::Array(fields) = entry else {
            continue;
        };
        let (Some(at), Some(micros), Some(Value::Array(args))) =
            (fields.get(1), fields.get(2), fields.get(3))
        else {
            continue;
        };
        let args: Vec<String> = args
            .iter()
            .filter_map(|a| redis::from_redis_value_ref(a).ok())
            .collect();
        let is_evalsha = args
            .first()
            .is_some_and(|c| c.eq_ignore_ascii_case("evalsha"));
        let Some(name) = args
            .get(1)
            .filter(|_| is_evalsha)
            .and_then(|sha| scripts.iter().find(|(s, _)| s.eq_ignore_ascii_case(sha)))
            .map(|(_, name)| *name)
        else {
            continue;
        };
        audit.slow_scripts.push(SlowScript {
            node: node.to_owned(),
            script: name.to_owned(),
            micros: redis::from_redis_value_ref(micros).unwrap_or(0),
            at: redis::from_redis_value_ref(at).unwrap_or(0),
        });
    }
    Ok(())
}

/// Whether [`purge`] removes keys or only counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PurgeMode {
    /// Count the keys; remove nothing.
    DryRun,
    /// `UNLINK` them.
    Remove,
}

/// What [`purge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Purge {
    /// The key space's prefix.
    pub prefix: String,
    /// The nodes scanned.
    pub nodes: Vec<String>,
    /// Keys found under the prefix.
    pub matched: u64,
    /// Keys removed (0 in a dry run).
    pub removed: u64,
}

/// Removes every key under `keys` (`<prefix>:*`) on every master behind `redis`: `SCAN`, then
/// one pipeline of single-key `UNLINK`s per batch (single-key, so keys of different slots of a
/// cluster node never meet in one command). [`PurgeMode::DryRun`] only counts.
///
/// Keys written while it runs may survive; run it when nothing writes under the prefix.
///
/// # Errors
/// Connection failures and error replies.
pub async fn purge(redis: &Redis, keys: &KeySpace, mode: PurgeMode) -> Result<Purge> {
    let options = AuditOptions::default();
    let mut purge = Purge {
        prefix: keys.prefix().to_owned(),
        ..Purge::default()
    };
    for target in doctor::nodes(redis, options.timeout).await? {
        match target {
            Target::Node(node, info) => {
                let mut conn = doctor::connect(&info, options.timeout).await?;
                purge_node(&mut conn, keys, mode, options.batch, &mut purge).await?;
                purge.nodes.push(node);
            }
            Target::Backend => {
                let (host, port) = redis.server_address();
                purge_node(&mut redis.clone(), keys, mode, options.batch, &mut purge).await?;
                purge.nodes.push(format!("{host}:{port}"));
            }
        }
    }
    Ok(purge)
}

async fn purge_node<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &KeySpace,
    mode: PurgeMode,
    batch: usize,
    purge: &mut Purge,
) -> Result<()> {
    let pattern = match_pattern(keys);
    let mut cursor = 0;
    loop {
        let (next, found) = scan(conn, cursor, &pattern, batch).await?;
        purge.matched += found.len() as u64;
        if mode == PurgeMode::Remove && !found.is_empty() {
            let mut pipe = redis::pipe();
            for key in &found {
                pipe.cmd("UNLINK").arg(key);
            }
            let removed: Vec<u64> = pipe.query_async(conn).await?;
            purge.removed += removed.iter().sum::<u64>();
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_match_pattern_escapes_glob_characters() {
        let keys = KeySpace::new("app").unwrap().pattern("a*b?").unwrap();
        assert_eq!(match_pattern(&keys), "app:a\\*b\\?:*");
    }

    #[test]
    fn documented_keys_without_ttl_follow_the_pattern_globs() {
        static LOCK: Requirements = Requirements::new("lock").no_ttl_keys(&["{*}:fence"]);
        let keys = KeySpace::new("app").unwrap();
        assert!(documented(&keys, &[&LOCK], "lock", "lock:{r}:fence"));
        assert!(!documented(&keys, &[&LOCK], "lock", "lock:{r}"));
        assert!(!documented(&keys, &[&LOCK], "cache", "cache:{r}:fence"));
        let narrow = keys.pattern("lock").unwrap();
        assert!(documented(&narrow, &[&LOCK], "{r}", "{r}:fence"));
    }
}
