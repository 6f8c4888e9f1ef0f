//! Random owner tokens: lock and semaphore holders, concurrency slots, leases.

/// A fresh owner token: 128 random bits from the thread-local CSPRNG, as 32 lowercase hex digits.
///
/// ```
/// let token = redis_core::random_token();
/// assert_eq!(token.len(), 32);
/// assert!(token.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
/// assert_ne!(token, redis_core::random_token());
/// ```
pub fn random_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}
