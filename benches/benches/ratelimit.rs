//! Benches for redis-ratelimit (filled in with the crate).

fn main() {}
