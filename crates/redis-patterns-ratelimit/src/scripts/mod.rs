//! The Lua scripts, one round trip each. Every script reads the server's clock through
//! [`SERVER_CLOCK`] (`now_us()`: the limiters work in microseconds), and only when its algorithm
//! needs the time (the fixed window lets its key's TTL be the window and reads no clock). Each
//! algorithm is one Lua function (`common.lua` states its signature); a single-limit script is
//! that function plus `single.lua`, and the batch script (coalesced checks, several limits per
//! identity) is every function plus `batch.lua`.
//!
//! Rate limit replies are `{code, remaining, retry_after_us, reset_after_us}` with code 1 allowed,
//! 0 denied, -1 cost above capacity. Contracts in full: `docs/ratelimit.md`.

use redis_core::{Script, script::SERVER_CLOCK};

use crate::limit::Algorithm;

/// Lua shared by the rate limit scripts: the `LIMIT` a single-limit script runs, `CANNOT_PASS`.
const COMMON: &str = include_str!("common.lua");
/// `fixed_window(...)`: a counter whose TTL is the window.
const FIXED_WINDOW_FN: &str = include_str!("fixed_window.lua");
/// `sliding_log(...)`: a sorted set of admitted units and its `seq` companion.
const SLIDING_LOG_FN: &str = include_str!("sliding_log.lua");
/// `sliding_window(...)`: `"<start> <current> <previous>"`.
const SLIDING_WINDOW_FN: &str = include_str!("sliding_window.lua");
/// `token_bucket(...)`: `"<tokens> <time>"`.
const TOKEN_BUCKET_FN: &str = include_str!("token_bucket.lua");
/// `gcra(...)`: the theoretical arrival time.
const GCRA_FN: &str = include_str!("gcra.lua");
/// The body of every single-limit script: runs `LIMIT` on `KEYS` and `ARGV`.
const SINGLE: &str = include_str!("single.lua");

/// Fixed window. KEYS: counter; ARGV: limit, window µs, cost, rate; reply: the decision.
pub(crate) static FIXED_WINDOW: Script = Script::new("ratelimit_fixed_window", SINGLE)
    .with_preludes(&[SERVER_CLOCK, COMMON, FIXED_WINDOW_FN]);

/// Sliding log. KEYS: member set, `seq` counter; ARGV: limit, window µs, cost, rate; reply: the decision.
pub(crate) static SLIDING_LOG: Script = Script::new("ratelimit_sliding_log", SINGLE)
    .with_preludes(&[SERVER_CLOCK, COMMON, SLIDING_LOG_FN]);

/// Sliding window counter. KEYS: state; ARGV: limit, window µs, cost, rate; reply: the decision.
pub(crate) static SLIDING_WINDOW: Script = Script::new("ratelimit_sliding_window", SINGLE)
    .with_preludes(&[SERVER_CLOCK, COMMON, SLIDING_WINDOW_FN]);

/// Token bucket. KEYS: state; ARGV: capacity, period µs, cost, refill per period; reply: the decision.
pub(crate) static TOKEN_BUCKET: Script = Script::new("ratelimit_token_bucket", SINGLE)
    .with_preludes(&[SERVER_CLOCK, COMMON, TOKEN_BUCKET_FN]);

/// GCRA. KEYS: TAT string; ARGV: burst, period µs, cost, rate per period; reply: the decision.
pub(crate) static GCRA: Script =
    Script::new("ratelimit_gcra", SINGLE).with_preludes(&[SERVER_CLOCK, COMMON, GCRA_FN]);

/// Many checks, each all or nothing over its limits. KEYS: per check, per limit, its key(s);
/// ARGV: checks; per check: limits, cost; per limit: algorithm code, capacity, period µs, rate;
/// reply: per check, per limit, the four numbers of a decision, flattened.
pub(crate) static BATCH: Script = Script::new("ratelimit_batch", include_str!("batch.lua"))
    .with_preludes(&[
        SERVER_CLOCK,
        COMMON,
        FIXED_WINDOW_FN,
        SLIDING_LOG_FN,
        SLIDING_WINDOW_FN,
        TOKEN_BUCKET_FN,
        GCRA_FN,
    ]);

/// The algorithm's number in the batch script's `ARGV`.
pub(crate) fn batch_code(algorithm: Algorithm) -> u8 {
    match algorithm {
        Algorithm::FixedWindow => 1,
        Algorithm::SlidingLog => 2,
        Algorithm::SlidingWindow => 3,
        Algorithm::TokenBucket => 4,
        Algorithm::Gcra => 5,
    }
}

/// Concurrency acquire. KEYS: lease set; ARGV: max, lease µs, lease id; reply: the decision (cost 1).
pub(crate) static CONCURRENCY_ACQUIRE: Script = Script::new(
    "ratelimit_concurrency_acquire",
    include_str!("concurrency_acquire.lua"),
)
.with_preludes(&[SERVER_CLOCK]);

/// Concurrency release or extend. KEYS: lease set; ARGV: 0 (release) or lease µs (extend), lease
/// id; reply: 1 when the lease was alive, 0 otherwise.
pub(crate) static CONCURRENCY_RELEASE: Script = Script::new(
    "ratelimit_concurrency_release",
    include_str!("concurrency_release.lua"),
)
.with_preludes(&[SERVER_CLOCK]);

/// Live leases by the key's node's clock. KEYS: lease set; ARGV: none; reply: the count.
pub(crate) static CONCURRENCY_IN_FLIGHT: Script = Script::new(
    "ratelimit_concurrency_in_flight",
    include_str!("concurrency_in_flight.lua"),
)
.with_preludes(&[SERVER_CLOCK]);

/// The script that implements `algorithm`: one `EVALSHA` per check.
///
/// Its contract: `KEYS[1]` is the identity's key (`KEYS[2]` its `seq` companion for the sliding
/// log); `ARGV` is capacity, period in microseconds, cost, rate; the reply is
/// `{code, remaining, retry_after_us, reset_after_us}` with code 1 allowed, 0 denied, -1 cost
/// above capacity. Exposed for callers that drive the scripts themselves.
pub fn script(algorithm: Algorithm) -> &'static Script {
    match algorithm {
        Algorithm::FixedWindow => &FIXED_WINDOW,
        Algorithm::SlidingLog => &SLIDING_LOG,
        Algorithm::SlidingWindow => &SLIDING_WINDOW,
        Algorithm::TokenBucket => &TOKEN_BUCKET,
        Algorithm::Gcra => &GCRA,
    }
}

/// The script of coalesced and multi-limit checks: many checks in one call, each all or nothing
/// over its limits. Exposed for callers that drive it themselves; its contract (`KEYS`, `ARGV`,
/// the flattened reply) is in `docs/ratelimit.md`.
pub fn batch_script() -> &'static Script {
    &BATCH
}

/// The scripts a [`ConcurrencyLimiter`](crate::ConcurrencyLimiter) acquires and releases (or
/// extends) with, for callers that drive them directly. Contracts: `docs/ratelimit.md`.
pub fn concurrency_scripts() -> (&'static Script, &'static Script) {
    (&CONCURRENCY_ACQUIRE, &CONCURRENCY_RELEASE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_script_reads_the_clock_itself() {
        let all = [
            &FIXED_WINDOW,
            &SLIDING_LOG,
            &SLIDING_WINDOW,
            &TOKEN_BUCKET,
            &GCRA,
            &BATCH,
            &CONCURRENCY_ACQUIRE,
            &CONCURRENCY_RELEASE,
            &CONCURRENCY_IN_FLIGHT,
        ];
        for script in all {
            assert!(!script.body().contains("'TIME'"), "{}", script.name());
            assert!(
                script.source().starts_with(SERVER_CLOCK),
                "{}",
                script.name()
            );
        }
    }
}
