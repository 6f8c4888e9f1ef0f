//! The Lua scripts, one round trip each. Every script reads the server's clock through
//! [`SERVER_CLOCK`] (`now_us()`: the limiters work in microseconds); the rate limit scripts also
//! share `common.lua` (the limit's arguments, the reply to a cost above the capacity).
//!
//! Rate limit replies are `{code, remaining, retry_after_us, reset_after_us}` with code 1 allowed,
//! 0 denied, -1 cost above capacity. Contracts in full: `docs/ratelimit.md`.

use redis_core::{Script, script::SERVER_CLOCK};

use crate::limit::Algorithm;

/// Lua shared by the rate limit scripts: `limit_args()` and `CANNOT_PASS`.
const COMMON: &str = include_str!("common.lua");

/// The preludes of every rate limit script.
const LIMIT_PRELUDES: &[&str] = &[SERVER_CLOCK, COMMON];

/// Fixed window. KEYS: state hash; ARGV: limit, window µs, cost, rate; reply: the decision.
pub(crate) static FIXED_WINDOW: Script =
    Script::new("ratelimit_fixed_window", include_str!("fixed_window.lua"))
        .with_preludes(LIMIT_PRELUDES);

/// Sliding log. KEYS: member set, `seq` counter; ARGV: limit, window µs, cost, rate; reply: the decision.
pub(crate) static SLIDING_LOG: Script =
    Script::new("ratelimit_sliding_log", include_str!("sliding_log.lua"))
        .with_preludes(LIMIT_PRELUDES);

/// Sliding window counter. KEYS: state hash; ARGV: limit, window µs, cost, rate; reply: the decision.
pub(crate) static SLIDING_WINDOW: Script = Script::new(
    "ratelimit_sliding_window",
    include_str!("sliding_window.lua"),
)
.with_preludes(LIMIT_PRELUDES);

/// Token bucket. KEYS: state hash; ARGV: capacity, period µs, cost, refill per period; reply: the decision.
pub(crate) static TOKEN_BUCKET: Script =
    Script::new("ratelimit_token_bucket", include_str!("token_bucket.lua"))
        .with_preludes(LIMIT_PRELUDES);

/// GCRA. KEYS: TAT string; ARGV: burst, period µs, cost, rate per period; reply: the decision.
pub(crate) static GCRA: Script =
    Script::new("ratelimit_gcra", include_str!("gcra.lua")).with_preludes(LIMIT_PRELUDES);

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
