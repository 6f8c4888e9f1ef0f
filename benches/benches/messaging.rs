//! Benches for redis-messaging (filled in with the crate).

fn main() {}
