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
    hex32(rand::random::<u128>())
}

/// `bits` as 32 lowercase hex digits, written into a buffer: a fraction of what
/// `format!("{:032x}")` costs, paid on every acquire.
fn hex32(bits: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    for (at, digit) in digits.iter_mut().rev().enumerate() {
        *digit = HEX[(bits >> (at * 4)) as usize & 0xF];
    }
    // Hex digits are ASCII: the conversion borrows, and `into_owned` makes the one allocation.
    String::from_utf8_lossy(&digits).into_owned()
}

#[cfg(test)]
mod tests {
    use super::hex32;

    #[test]
    fn tokens_are_the_bits_in_lowercase_hex_like_format() {
        let samples = [
            0,
            1,
            0xF,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ];
        for bits in samples.into_iter().chain((0..64).map(|_| rand::random())) {
            assert_eq!(hex32(bits), format!("{bits:032x}"));
        }
    }
}
