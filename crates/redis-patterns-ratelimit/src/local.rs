//! The algorithms in Rust, mirroring the Lua scripts line for line: the in-process fallback
//! limiter, and unit tests of the window and refill math with an injected clock. (Not mirrored:
//! the scripts lengthen a key's TTL on a denial when the limit sent with the call changed; a
//! fallback limiter's limit never changes.)

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    decision::Decision,
    limit::{Algorithm, Limit},
};

/// Most keys the fallback limiter tracks; past it, keys whose state has run out are dropped,
/// and if none has, new keys are denied (fail closed) rather than growing without bound.
pub(crate) const MAX_LOCAL_KEYS: usize = 100_000;

/// Per-key state of one algorithm, as the script stores it in Redis.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    Fixed { start: u64, used: u64 },
    Log { times: VecDeque<u64> },
    Sliding { start: u64, cur: u64, prev: u64 },
    Bucket { tokens: f64, ts: u64 },
    Gcra { tat: f64 },
}

/// A script's reply: `{code, remaining, retry_after_us, reset_after_us}`, and how long the key
/// lives (the script's PEXPIRE), in microseconds; `None` when the state was left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) reply: [i64; 4],
    pub(crate) ttl_us: Option<u64>,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn allowed(remaining: u64, reset: u64, ttl: u64) -> Step {
    Step {
        reply: [1, i(remaining), 0, i(reset)],
        ttl_us: Some(ttl),
    }
}

fn denied(remaining: u64, retry: u64, reset: u64) -> Step {
    Step {
        reply: [0, i(remaining), i(retry), i(reset)],
        ttl_us: None,
    }
}

/// GCRA counts units as a time divided by the emission interval; a quotient a hair under a whole
/// number (float rounding) counts as that number.
const UNIT_SLACK: f64 = 1e-6;

/// One check at `now` (microseconds since any fixed origin) of `cost` units.
pub(crate) fn step(limit: &Limit, state: &mut Option<State>, now: u64, cost: u64) -> Step {
    let cap = limit.capacity();
    if cost > cap {
        return Step {
            reply: [-1, 0, 0, 0],
            ttl_us: None,
        };
    }
    let window = limit.period_us();
    match limit.algorithm() {
        Algorithm::FixedWindow => {
            let (mut start, mut used) = match state {
                Some(State::Fixed { start, used }) => (*start, *used),
                _ => (now, 0),
            };
            // The key's TTL is the window, in whole milliseconds (rounded up).
            let window = window.div_ceil(1000) * 1000;
            if now >= start.saturating_add(window) {
                start = now;
                used = 0;
            }
            let reset = (start + window).saturating_sub(now).clamp(1, window);
            if used + cost <= cap {
                used += cost;
                *state = Some(State::Fixed { start, used });
                return allowed(cap - used, reset, reset);
            }
            denied(cap.saturating_sub(used), reset, reset)
        }
        Algorithm::SlidingLog => {
            let mut times = match state.take() {
                Some(State::Log { times }) => times,
                _ => VecDeque::new(),
            };
            while times.front().is_some_and(|&t| t + window <= now) {
                times.pop_front();
            }
            let used = times.len() as u64;
            if used + cost <= cap {
                times.extend(std::iter::repeat_n(now, usize::try_from(cost).unwrap_or(0)));
                *state = Some(State::Log { times });
                return allowed(cap - used - cost, window, window);
            }
            let must_leave = usize::try_from(used + cost - cap).unwrap_or(usize::MAX);
            let nth = times.get(must_leave - 1).copied().unwrap_or(now);
            let newest = times.back().copied().unwrap_or(now);
            let step = denied(
                cap.saturating_sub(used),
                (nth + window).saturating_sub(now).max(1),
                (newest + window).saturating_sub(now).max(1),
            );
            *state = Some(State::Log { times });
            step
        }
        Algorithm::SlidingWindow => {
            let (mut start, mut cur, mut prev) = match state {
                Some(State::Sliding { start, cur, prev }) => (*start, *cur, *prev),
                _ => (now, 0, 0),
            };
            if now >= start + window {
                let passed = (now - start) / window;
                prev = if passed == 1 { cur } else { 0 };
                cur = 0;
                start += passed * window;
            }
            let elapsed = now.saturating_sub(start) as f64;
            let w = window as f64;
            let weight = (w - elapsed) / w;
            let wait = |cur: u64, target: f64| -> u64 {
                let (c, p) = (cur as f64, prev as f64);
                if p * weight + c <= target {
                    return 0;
                }
                let e = if c <= target {
                    w * (1.0 - (target - c) / p) - elapsed
                } else {
                    w - elapsed + w * (1.0 - target / c)
                };
                (e.ceil() as u64).max(1)
            };
            let estimate = prev as f64 * weight + cur as f64;
            if estimate + cost as f64 <= cap as f64 {
                cur += cost;
                *state = Some(State::Sliding { start, cur, prev });
                let after = prev as f64 * weight + cur as f64;
                let remaining = (cap as f64 - after).floor().max(0.0) as u64;
                return allowed(remaining, wait(cur, 0.0), start + 2 * window - now);
            }
            denied(
                (cap as f64 - estimate).floor().max(0.0) as u64,
                wait(cur, (cap - cost) as f64),
                wait(cur, 0.0),
            )
        }
        Algorithm::TokenBucket => {
            let (period, refill) = (window as f64, limit.rate() as f64);
            let (mut tokens, ts) = match state {
                Some(State::Bucket { tokens, ts }) if now > *ts => {
                    (*tokens + (now - *ts) as f64 * refill / period, now)
                }
                Some(State::Bucket { tokens, ts }) => (*tokens, *ts),
                _ => (cap as f64, now),
            };
            tokens = tokens.min(cap as f64);
            let time_for = |missing: f64| -> u64 {
                if missing <= 0.0 {
                    0
                } else {
                    ((missing * period / refill).ceil() as u64).max(1)
                }
            };
            if tokens >= cost as f64 {
                tokens -= cost as f64;
                *state = Some(State::Bucket { tokens, ts });
                let reset = time_for(cap as f64 - tokens);
                return allowed(tokens.floor() as u64, reset, reset.max(1));
            }
            denied(
                tokens.floor() as u64,
                time_for(cost as f64 - tokens),
                time_for(cap as f64 - tokens),
            )
        }
        Algorithm::Gcra => {
            let emission = window as f64 / limit.rate() as f64;
            let tolerance = emission * cap as f64;
            let now_f = now as f64;
            let ahead = match state {
                Some(State::Gcra { tat }) => (*tat - now_f).max(0.0),
                _ => 0.0,
            };
            let new_ahead = ahead + emission * cost as f64;
            let diff = tolerance - new_ahead;
            let units = |d: f64| (d / emission + UNIT_SLACK).floor().max(0.0) as u64;
            if diff < 0.0 {
                return denied(
                    units(tolerance - ahead),
                    ((-diff).ceil() as u64).max(1),
                    ahead.ceil() as u64,
                );
            }
            *state = Some(State::Gcra {
                tat: now_f + new_ahead,
            });
            let reset = new_ahead.ceil() as u64;
            allowed(units(diff), reset, reset.max(1))
        }
    }
}

/// The in-process fallback limiter: the same algorithm and numbers, state in this process only.
///
/// Public only for the crate's own tests (`__private`); users reach it through
/// [`FailurePolicy::Local`](crate::FailurePolicy::Local).
#[derive(Debug)]
pub struct LocalLimiter {
    limit: Limit,
    origin: Instant,
    keys: Mutex<Keys>,
}

#[derive(Debug, Default)]
struct Keys {
    /// Each key's state and when it runs out (µs since `origin`).
    map: HashMap<String, (State, u64)>,
    /// At or before the earliest run-out in `map`: sweeping a full map earlier frees nothing, so
    /// a full map of live keys is not scanned on every new key.
    next_sweep: u64,
}

impl LocalLimiter {
    /// A limiter for `limit` with no keys yet.
    pub fn new(limit: Limit) -> Self {
        Self {
            limit,
            origin: Instant::now(),
            keys: Mutex::new(Keys::default()),
        }
    }

    pub(crate) fn check(&self, key: &str, cost: u64) -> Decision {
        let now = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.check_at(key, cost, now)
    }

    /// Decides a check of `cost` units for `key` at `now` (µs on the limiter's own clock).
    pub fn check_at(&self, key: &str, cost: u64, now: u64) -> Decision {
        self.check_in(key, cost, now, MAX_LOCAL_KEYS)
    }

    fn check_in(&self, key: &str, cost: u64, now: u64, max_keys: usize) -> Decision {
        let cap = self.limit.capacity();
        let full = Decision::denied(cap, 0, Duration::from_secs(1), Duration::from_secs(1));
        let Ok(mut keys) = self.keys.lock() else {
            return full;
        };
        let keys = &mut *keys;
        if keys.map.len() >= max_keys && !keys.map.contains_key(key) {
            if now < keys.next_sweep {
                return full;
            }
            keys.map.retain(|_, (_, expires)| *expires > now);
            keys.next_sweep = keys
                .map
                .values()
                .map(|(_, expires)| *expires)
                .min()
                .unwrap_or(0);
            if keys.map.len() >= max_keys {
                return full;
            }
        }
        let mut state = keys
            .map
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(state, _)| state.clone());
        let step = step(&self.limit, &mut state, now, cost);
        if let (Some(state), Some(ttl)) = (state, step.ttl_us) {
            let expires = now.saturating_add(ttl);
            keys.next_sweep = if keys.map.is_empty() {
                expires
            } else {
                keys.next_sweep.min(expires)
            };
            keys.map.insert(key.to_owned(), (state, expires));
        }
        Decision::from_reply(cap, &step.reply).unwrap_or_else(|| Decision::exceeds_capacity(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    fn run(limit: Limit, checks: &[(u64, u64)]) -> Vec<[i64; 4]> {
        let mut state = None;
        checks
            .iter()
            .map(|&(now, cost)| step(&limit, &mut state, now, cost).reply)
            .collect()
    }

    fn codes(replies: &[[i64; 4]]) -> Vec<i64> {
        replies.iter().map(|r| r[0]).collect()
    }

    #[test]
    fn fixed_window_resets_at_the_window_end() {
        let limit = Limit::fixed_window(3, Duration::from_secs(10));
        let r = run(
            limit,
            &[(0, 1), (SEC, 1), (2 * SEC, 1), (3 * SEC, 1), (10 * SEC, 1)],
        );
        assert_eq!(codes(&r), [1, 1, 1, 0, 1]);
        assert_eq!(r[2], [1, 0, 0, 8 * SEC as i64]);
        assert_eq!(r[3], [0, 0, 7 * SEC as i64, 7 * SEC as i64]);
        assert_eq!(r[4][1], 2, "a fresh window");
    }

    #[test]
    fn fixed_window_admits_twice_the_limit_across_a_boundary_but_sliding_does_not() {
        // 5 per 10 s: 5 at 9.9 s into the window, 5 more just after it ends.
        let checks: Vec<(u64, u64)> = [(0, 1)]
            .into_iter()
            .chain((0..4).map(|_| (9_900_000, 1)))
            .chain((0..5).map(|_| (10_000_000, 1)))
            .collect();
        let fixed = run(Limit::fixed_window(5, Duration::from_secs(10)), &checks);
        assert_eq!(fixed.iter().filter(|r| r[0] == 1).count(), 10);
        let log = run(Limit::sliding_log(5, Duration::from_secs(10)), &checks);
        assert_eq!(
            log.iter().filter(|r| r[0] == 1).count(),
            6,
            "only the first unit left"
        );
        let sliding = run(Limit::sliding_window(5, Duration::from_secs(10)), &checks);
        assert_eq!(sliding.iter().filter(|r| r[0] == 1).count(), 5);
    }

    #[test]
    fn sliding_log_retry_after_is_when_the_oldest_unit_leaves() {
        let limit = Limit::sliding_log(2, Duration::from_secs(10));
        let r = run(limit, &[(0, 1), (4 * SEC, 1), (5 * SEC, 1), (10 * SEC, 1)]);
        assert_eq!(codes(&r), [1, 1, 0, 1]);
        assert_eq!(r[2], [0, 0, 5 * SEC as i64, 9 * SEC as i64]);
        // Cost 2 needs both to leave.
        let r = run(limit, &[(0, 1), (4 * SEC, 1), (5 * SEC, 2)]);
        assert_eq!(r[2][2], 9 * SEC as i64);
    }

    #[test]
    fn sliding_window_weights_the_previous_window() {
        let limit = Limit::sliding_window(10, Duration::from_secs(10));
        let mut state = None;
        for _ in 0..10 {
            assert_eq!(step(&limit, &mut state, 0, 1).reply[0], 1);
        }
        // Half-way through the next window, half of the previous 10 still count.
        let r = step(&limit, &mut state, 15 * SEC, 5).reply;
        assert_eq!(r[0], 1);
        let r = step(&limit, &mut state, 15 * SEC, 1).reply;
        assert_eq!(r[0], 0);
        // 5 + 10 * (1 - e) <= 9 -> e >= 0.6 -> 1 s from now.
        assert_eq!(r[2], SEC as i64);
        // Two windows later nothing counts.
        assert_eq!(step(&limit, &mut state, 30 * SEC, 10).reply[0], 1);
    }

    #[test]
    fn token_bucket_refills_continuously() {
        // 4 tokens, 1 per second.
        let limit = Limit::token_bucket(4, 1, Duration::from_secs(1));
        let r = run(
            limit,
            &[
                (0, 4),
                (0, 1),
                (SEC / 2, 1),
                (SEC, 1),
                (SEC, 1),
                (100 * SEC, 4),
            ],
        );
        assert_eq!(codes(&r), [1, 0, 0, 1, 0, 1]);
        assert_eq!(r[0], [1, 0, 0, 4 * SEC as i64]);
        assert_eq!(r[1][2], SEC as i64);
        assert_eq!(r[2][2], (SEC / 2) as i64);
        // Refill never exceeds the capacity.
        assert_eq!(r[5][1], 0);
    }

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        // 10 per second (one per 100 ms), bursts of 3.
        let limit = Limit::gcra(10, Duration::from_secs(1), 3);
        let ms = 1_000;
        let r = run(
            limit,
            &[(0, 1), (0, 1), (0, 1), (0, 1), (100 * ms, 1), (100 * ms, 1)],
        );
        assert_eq!(codes(&r), [1, 1, 1, 0, 1, 0]);
        assert_eq!(r[0][1], 2);
        assert_eq!(r[2], [1, 0, 0, 300 * ms as i64]);
        assert_eq!(r[3][2], 100 * ms as i64);
        assert_eq!(r[5][2], 100 * ms as i64);
    }

    #[test]
    fn gcra_counts_whole_units_when_the_interval_is_not_whole_microseconds() {
        // 7 per second is one unit every 142857.142... us; absolute timestamps round to a
        // quarter microsecond, which used to make a fresh key report one unit fewer than remain.
        for (rate, burst) in [(7u64, 5u64), (3, 3), (11, 13), (997, 50)] {
            let limit = Limit::gcra(rate, Duration::from_secs(1), burst);
            let now = 1_764_000_000_123_456;
            let mut state = None;
            // One microsecond apart, as consecutive scripts on a server are at least.
            for k in 0..burst {
                let r = step(&limit, &mut state, now + k, 1).reply;
                assert_eq!(r[..2], [1, (burst - k - 1) as i64], "{limit:?} #{k}");
            }
            let r = step(&limit, &mut state, now + burst, 1).reply;
            assert_eq!(r[..2], [0, 0], "{limit:?}");
            let mut fresh = None;
            assert_eq!(step(&limit, &mut fresh, now, burst).reply[..2], [1, 0]);
        }
    }

    #[test]
    fn a_cost_above_the_capacity_can_never_pass() {
        for limit in [
            Limit::fixed_window(3, Duration::from_secs(1)),
            Limit::sliding_log(3, Duration::from_secs(1)),
            Limit::sliding_window(3, Duration::from_secs(1)),
            Limit::token_bucket(3, 1, Duration::from_secs(1)),
            Limit::gcra(1, Duration::from_secs(1), 3),
        ] {
            let mut state = None;
            assert_eq!(step(&limit, &mut state, 0, 4).reply, [-1, 0, 0, 0]);
            assert_eq!(state, None, "{limit:?}");
            assert_eq!(step(&limit, &mut state, 0, 3).reply[0], 1, "{limit:?}");
        }
    }

    #[test]
    fn a_changed_limit_keeps_the_state() {
        let mut state = None;
        let five = Limit::fixed_window(5, Duration::from_secs(10));
        let ten = Limit::fixed_window(10, Duration::from_secs(10));
        for _ in 0..5 {
            step(&five, &mut state, 0, 1);
        }
        assert_eq!(step(&five, &mut state, SEC, 1).reply[0], 0);
        assert_eq!(step(&ten, &mut state, SEC, 1).reply[..2], [1, 4]);
    }

    #[test]
    fn the_local_limiter_forgets_keys_when_their_state_runs_out() {
        let local = LocalLimiter::new(Limit::fixed_window(1, Duration::from_secs(1)));
        assert!(local.check_at("a", 1, 0).is_allowed());
        assert!(!local.check_at("a", 1, SEC / 2).is_allowed());
        assert!(local.check_at("b", 1, SEC / 2).is_allowed());
        assert!(local.check_at("a", 1, SEC).is_allowed());
    }

    #[test]
    fn a_full_local_limiter_denies_new_keys_until_one_runs_out() {
        let local = LocalLimiter::new(Limit::fixed_window(1, Duration::from_secs(1)));
        assert!(local.check_in("a", 1, 0, 2).is_allowed());
        assert!(local.check_in("b", 1, SEC / 2, 2).is_allowed());
        // Full of live keys: a new one is denied without a sweep until `a` runs out at 1 s.
        assert!(!local.check_in("c", 1, SEC / 2, 2).is_allowed());
        assert_eq!(local.keys.lock().unwrap().next_sweep, SEC);
        assert!(!local.check_in("c", 1, SEC - 1, 2).is_allowed());
        assert_eq!(local.keys.lock().unwrap().map.len(), 2);
        // Known keys are still decided.
        assert!(!local.check_in("b", 1, SEC - 1, 2).is_allowed());
        assert!(local.check_in("c", 1, SEC, 2).is_allowed());
        assert_eq!(local.keys.lock().unwrap().next_sweep, SEC + SEC / 2);
    }
}
