//! Session ids and how they become Redis keys.
//!
//! An id is 32 bytes from the thread-local CSPRNG (ChaCha12, seeded and periodically reseeded from
//! the operating system), URL-safe base64 without padding (43 characters), followed by two more
//! characters that carry a 12-bit *bucket*: the cluster routing tag of the session's key. Redis
//! only ever sees a digest of the whole id (SHA-256, or HMAC-SHA-256 with a secret), so a dump of
//! Redis does not contain one usable id.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

/// Length of a session id string: 43 characters of secret and 2 of routing bucket.
pub const ID_LEN: usize = SECRET_CHARS + 2;
const SECRET_BYTES: usize = 32;
const SECRET_CHARS: usize = 43;
/// Number of routing buckets (hash tags) that session keys are spread over.
pub(crate) const BUCKETS: u16 = 4096;
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// An opaque session id: 256 random bits plus a 12-bit routing bucket, 45 URL-safe characters.
///
/// Put it in a cookie as it is ([`as_str`](Self::as_str)); read it back with
/// [`SessionId::parse`], which never fails loudly: anything that is not a well-formed id is `None`.
/// `Debug` prints only the first four characters, so ids do not end up in logs by accident.
///
/// ```
/// use redis_session::SessionId;
///
/// assert!(SessionId::parse("not-an-id").is_none());
/// assert!(SessionId::parse(&"A".repeat(45)).is_some());
/// assert!(SessionId::parse(&"!".repeat(45)).is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Ascii<ID_LEN>);

impl SessionId {
    /// A fresh id in `bucket` (0..4096).
    pub(crate) fn generate(bucket: u16) -> Self {
        let mut secret = [0u8; SECRET_BYTES];
        rand::fill(&mut secret);
        let mut out = [0u8; ID_LEN];
        let written = URL_SAFE_NO_PAD.encode_slice(secret, &mut out[..SECRET_CHARS]);
        debug_assert_eq!(written.ok(), Some(SECRET_CHARS));
        let bucket = bucket % BUCKETS;
        out[SECRET_CHARS] = ALPHABET[usize::from(bucket >> 6)];
        out[SECRET_CHARS + 1] = ALPHABET[usize::from(bucket & 63)];
        Self(Ascii(out))
    }

    /// Parses an id from a cookie or header. Wrong length, characters outside the URL-safe
    /// alphabet and non-canonical encodings give `None`; this never panics.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes: &[u8; ID_LEN] = s.as_bytes().try_into().ok()?;
        if !bytes.iter().all(|&c| sextet(c).is_some()) {
            return None;
        }
        // 43 characters carry 258 bits for 256: the last one's two low bits are padding, zero
        // in the canonical encoding (what `generate` writes and a base64 decoder insists on).
        match bytes.get(SECRET_CHARS - 1).copied().and_then(sextet) {
            Some(last) if last & 0b11 == 0 => {}
            _ => return None,
        }
        // Kept inline: base64 characters, ASCII.
        Some(Self(Ascii(*bytes)))
    }

    /// The id as it goes into a cookie.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's characters.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0.0
    }

    /// The routing bucket carried by the id.
    pub(crate) fn bucket(&self) -> u16 {
        let bytes = self.as_bytes();
        match (
            bytes.get(SECRET_CHARS).copied().and_then(sextet),
            bytes.get(SECRET_CHARS + 1).copied().and_then(sextet),
        ) {
            (Some(hi), Some(lo)) => (u16::from(hi) << 6) | u16::from(lo),
            _ => 0,
        }
    }
}

/// The value of a URL-safe base64 character.
fn sextet(c: u8) -> Option<u8> {
    Some(SEXTETS[usize::from(c)]).filter(|&v| v != NOT_BASE64)
}

const NOT_BASE64: u8 = 0xff;

/// [`ALPHABET`] inverted: each byte's sextet, or [`NOT_BASE64`]. A look-up per character of an
/// id that `SessionId::parse` checks on every request.
const SEXTETS: [u8; 256] = {
    let mut table = [NOT_BASE64; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = self.as_str().get(..4).unwrap_or("");
        write!(f, "SessionId({head}…)")
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Turns ids (and user ids) into the digests that Redis stores.
#[derive(Clone)]
pub(crate) enum Hasher {
    Sha256,
    Hmac(Hmac<Sha256>),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sha256 => f.write_str("Sha256"),
            Self::Hmac(_) => f.write_str("HmacSha256(<secret>)"),
        }
    }
}

impl Hasher {
    /// HMAC-SHA-256 keyed by `secret`.
    pub(crate) fn hmac(secret: &[u8]) -> Option<Self> {
        Hmac::<Sha256>::new_from_slice(secret).ok().map(Self::Hmac)
    }

    /// The 32-byte digest of `domain || 0 || input`.
    pub(crate) fn digest(&self, domain: &str, input: &[u8]) -> [u8; 32] {
        match self {
            Self::Sha256 => {
                let mut h = Sha256::new();
                h.update(domain.as_bytes());
                h.update([0u8]);
                h.update(input);
                h.finalize().into()
            }
            Self::Hmac(mac) => {
                let mut mac = mac.clone();
                mac.update(domain.as_bytes());
                mac.update(&[0u8]);
                mac.update(input);
                mac.finalize().into_bytes().into()
            }
        }
    }

    /// The key name of a session: the URL-safe base64 digest of its id.
    pub(crate) fn session_digest(&self, id: &SessionId) -> DigestText {
        digest_text(&self.digest("session", id.as_bytes()))
    }

    /// The bucket of a user's sessions and index: 12 bits of a digest of the user id, so the
    /// id's routing characters reveal almost nothing about the user.
    pub(crate) fn user_bucket(&self, user: &str) -> u16 {
        digest_bucket(&self.digest("user", user.as_bytes()))
    }
}

/// The bucket a digest falls in: its first 12 bits.
pub(crate) fn digest_bucket(digest: &[u8; 32]) -> u16 {
    (u16::from(digest[0]) << 4 | u16::from(digest[1]) >> 4) % BUCKETS
}

/// The hash tag of a bucket: three hex digits.
pub(crate) fn bucket_tag(bucket: u16) -> Ascii<3> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bucket = bucket % BUCKETS;
    Ascii([8, 4, 0].map(|shift| HEX[usize::from((bucket >> shift) & 15)]))
}

/// Length of a session key's name: the URL-safe base64 of a 32-byte digest.
pub(crate) const DIGEST_CHARS: usize = 43;

/// A digest as a key's name: its URL-safe base64.
pub(crate) fn digest_text(digest: &[u8; 32]) -> DigestText {
    let mut text = [0u8; DIGEST_CHARS];
    let written = URL_SAFE_NO_PAD.encode_slice(digest, &mut text);
    debug_assert_eq!(written.ok(), Some(DIGEST_CHARS));
    Ascii(text)
}

/// A session key's name (see [`Hasher::session_digest`]).
pub(crate) type DigestText = Ascii<DIGEST_CHARS>;

/// Short ASCII text kept inline (a digest, a hash tag): no allocation on the hot path.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Ascii<const N: usize>([u8; N]);

impl<const N: usize> std::ops::Deref for Ascii<N> {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ever built from ASCII (base64 or hex digits); an empty text otherwise.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Debug for Ascii<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A random bucket for a session without a user.
pub(crate) fn random_bucket() -> u16 {
    let mut b = [0u8; 2];
    rand::fill(&mut b);
    u16::from_le_bytes(b) % BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_with_their_bucket() {
        for bucket in [0, 1, 63, 64, 2048, 4095] {
            let id = SessionId::generate(bucket);
            assert_eq!(id.as_str().len(), ID_LEN);
            let parsed = SessionId::parse(id.as_str()).unwrap();
            assert_eq!(parsed, id);
            assert_eq!(parsed.bucket(), bucket);
        }
    }

    #[test]
    fn ids_are_unique_and_carry_256_random_bits() {
        let a = SessionId::generate(7);
        let b = SessionId::generate(7);
        assert_ne!(a, b);
        let mut buf = [0u8; 40];
        let n = URL_SAFE_NO_PAD
            .decode_slice(&a.as_str()[..SECRET_CHARS], &mut buf)
            .unwrap();
        assert_eq!(n, 32);
    }

    #[test]
    fn garbage_does_not_parse_and_never_panics() {
        let good = SessionId::generate(5);
        let s = good.as_str();
        assert!(SessionId::parse("").is_none());
        assert!(SessionId::parse(&s[..44]).is_none());
        assert!(SessionId::parse(&format!("{s}A")).is_none());
        assert!(SessionId::parse(&format!("{}=A", &s[..43])).is_none());
        assert!(SessionId::parse(&format!("{}é", &s[..43])).is_none());
        assert!(SessionId::parse(&"é".repeat(22)).is_none());
        // Non-canonical last character of the secret (trailing bits set).
        let mut chars: Vec<char> = s.chars().collect();
        let last = chars[42];
        let canonical = "AEIMQUYcgkosw048";
        if let Some(pos) = canonical.find(last) {
            chars[42] = canonical.as_bytes()[(pos + 1) % 16] as char;
            assert!(SessionId::parse(&chars.iter().collect::<String>()).is_some());
        }
        chars[42] = 'B';
        assert!(SessionId::parse(&chars.iter().collect::<String>()).is_none());
        for bytes in [[0xffu8; 45], [b' '; 45], [0u8; 45]] {
            if let Ok(text) = std::str::from_utf8(&bytes) {
                assert!(SessionId::parse(text).is_none());
            }
        }
    }

    #[test]
    fn random_input_never_panics_and_only_canonical_ids_parse() {
        const PICK: &[&str] = &[
            "A", "z", "0", "-", "_", "=", "+", "/", "é", "\0", " ", "{", "€",
        ];
        let mut parsed = 0;
        for round in 0..20_000u32 {
            let mut b = [0u8; 2];
            rand::fill(&mut b);
            let s = if round % 2 == 0 {
                // A real id with one character replaced (or kept, when the pick is the same).
                let id = SessionId::generate(u16::from(b[0]));
                let at = usize::from(b[1]) % ID_LEN;
                let pick = PICK[usize::from(b[0]) % PICK.len()];
                format!("{}{pick}{}", &id.as_str()[..at], &id.as_str()[at + 1..])
            } else {
                let len = (round as usize) % 60;
                let mut s = String::new();
                while s.len() < len {
                    rand::fill(&mut b);
                    s.push_str(PICK[usize::from(b[0]) % PICK.len()]);
                }
                s
            };
            if let Some(id) = SessionId::parse(&s) {
                assert_eq!(id.as_str(), s);
                assert_eq!(id.as_str().len(), ID_LEN);
                assert!(id.bucket() < BUCKETS);
                let mut buf = [0u8; 40];
                let n = URL_SAFE_NO_PAD
                    .decode_slice(&s[..SECRET_CHARS], &mut buf)
                    .unwrap();
                assert_eq!(n, 32);
                assert_eq!(URL_SAFE_NO_PAD.encode(&buf[..32]), s[..SECRET_CHARS]);
                parsed += 1;
            }
        }
        assert!(parsed > 1_000, "the well-formed path ran {parsed} times");
    }

    #[test]
    fn debug_does_not_print_the_id() {
        let id = SessionId::generate(1);
        let shown = format!("{id:?}");
        assert!(!shown.contains(id.as_str()));
        assert!(shown.len() < 20);
    }

    #[test]
    fn digests_depend_on_the_secret_and_hide_the_id() {
        let plain = Hasher::Sha256;
        let keyed = Hasher::hmac(&[7u8; 32]).unwrap();
        let other = Hasher::hmac(&[8u8; 32]).unwrap();
        let id = SessionId::generate(3);
        let a = plain.session_digest(&id);
        let b = keyed.session_digest(&id);
        let c = other.session_digest(&id);
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert_eq!(b, keyed.session_digest(&id));
        assert_eq!(a.len(), 43);
        assert!(!a.contains(&id.as_str()[..10]));
        // Same user, same bucket; buckets stay in range.
        assert_eq!(keyed.user_bucket("alice"), keyed.user_bucket("alice"));
        assert!((0..1000).all(|i| plain.user_bucket(&format!("u{i}")) < BUCKETS));
        assert_eq!(&*bucket_tag(10), "00a");
        assert_eq!(&*bucket_tag(4095), "fff");
        assert_eq!(&*bucket_tag(0x123), "123");
        assert_eq!(&*bucket_tag(4096), "000");
    }
}
