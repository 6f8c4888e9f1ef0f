//! Benches for redis-session (filled in with the crate).

fn main() {}
