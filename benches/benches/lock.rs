//! Benches for redis-lock (filled in with the crate).

fn main() {}
