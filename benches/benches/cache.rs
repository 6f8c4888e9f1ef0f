//! Benches for redis-cache (filled in with the crate).

fn main() {}
