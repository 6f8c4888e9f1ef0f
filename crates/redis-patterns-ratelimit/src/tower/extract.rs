//! Ready-made [`KeyExtractor`]s: the peer's address, the client's address behind trusted
//! proxies, a header (an API key), and a constant (one limit for everybody).

use std::net::{IpAddr, SocketAddr};

use http::{HeaderName, Request};

use super::KeyExtractor;

/// The address of the peer that opened the connection: axum's `ConnectInfo<SocketAddr>`
/// (feature `axum`; serve with `into_make_service_with_connect_info::<SocketAddr>()`), or a
/// `SocketAddr` or `IpAddr` request extension put there by another server. `None` (unlimited)
/// when there is none.
///
/// Behind a reverse proxy or load balancer every request comes from the proxy: use
/// [`ForwardedIp`] there.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerIp;

/// The peer's address of `request`, from whichever extension the server put it in.
fn peer_ip<B>(request: &Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip());
    }
    extensions
        .get::<SocketAddr>()
        .map(SocketAddr::ip)
        .or_else(|| extensions.get::<IpAddr>().copied())
}

impl<B> KeyExtractor<B> for PeerIp {
    fn extract(&self, request: &Request<B>) -> Option<String> {
        peer_ip(request).map(|ip| ip.to_string())
    }
}

/// Which header the trusted proxies append the client's address to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// The client's address behind `n` trusted reverse proxies, read from the header those
/// proxies append to (`X-Forwarded-For` or RFC 7239 `Forwarded`): the `n`-th address from the
/// right.
///
/// **Why not the left-most address:** a client can send the header itself, with any addresses
/// in it; each proxy only *appends* the address it saw the connection come from. Everything
/// left of what your own proxies appended was written by the client, so the left-most entry is
/// whatever the client wants it to be, and a limit keyed by it is a limit the client picks a
/// fresh key for on every request. Only the entries your proxies appended can be trusted: with
/// `n` proxies, the `n` right-most ones, of which the left-most (the `n`-th from the right) is
/// the address the outermost proxy saw: the client.
///
/// Read only the header your proxies write: a proxy that writes `X-Forwarded-For` passes a
/// client's own `Forwarded` header through untouched, and the other way round.
///
/// A request with fewer than `n` entries did not come through all the proxies (or they are
/// configured differently): it is keyed by its peer address as [`PeerIp`] reads it. `None`
/// (unlimited) when neither is known, or when the trusted entry is not an IP address (`unknown`,
/// an obfuscated identifier). Addresses are keyed in their canonical form, without a port.
///
/// ```
/// use http::Request;
/// use redis_ratelimit::tower::{ForwardedIp, KeyExtractor};
///
/// // One load balancer in front: it appended 203.0.113.9; the client sent the rest.
/// let request = Request::get("/")
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
///     .body(())
///     .unwrap();
/// let client = ForwardedIp::x_forwarded_for(1);
/// assert_eq!(client.extract(&request).as_deref(), Some("203.0.113.9"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ForwardedIp {
    scheme: Scheme,
    trusted_proxies: usize,
}

impl ForwardedIp {
    /// The client behind `trusted_proxies` proxies that append to `X-Forwarded-For`. A count of
    /// 0 trusts no header: the peer's address.
    pub fn x_forwarded_for(trusted_proxies: usize) -> Self {
        Self {
            scheme: Scheme::XForwardedFor,
            trusted_proxies,
        }
    }

    /// The client behind `trusted_proxies` proxies that append `for=` elements to RFC 7239's
    /// `Forwarded`. A count of 0 trusts no header: the peer's address.
    pub fn forwarded(trusted_proxies: usize) -> Self {
        Self {
            scheme: Scheme::Forwarded,
            trusted_proxies,
        }
    }

    /// The trusted entry, or `Err(())` when the header holds fewer than `n` entries.
    fn trusted_entry<B>(&self, request: &Request<B>) -> Result<Option<IpAddr>, ()> {
        let n = self.trusted_proxies;
        if n == 0 {
            return Err(());
        }
        let name = match self.scheme {
            Scheme::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            Scheme::Forwarded => HeaderName::from_static("forwarded"),
        };
        // Several header lines are one list, in order.
        let mut entries: Vec<&str> = Vec::new();
        for value in request.headers().get_all(name) {
            let Ok(value) = value.to_str() else {
                // Bytes no proxy writes: the header cannot be trusted as a whole.
                return Ok(None);
            };
            entries.extend(value.split(',').map(str::trim));
        }
        let Some(entry) = entries.len().checked_sub(n).map(|i| entries[i]) else {
            return Err(());
        };
        Ok(match self.scheme {
            Scheme::XForwardedFor => parse_node(entry),
            Scheme::Forwarded => entry
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, value)| parse_node(value.trim().trim_matches('"'))),
        })
    }
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|inner| inner.parse::<IpAddr>().ok())
}

impl<B> KeyExtractor<B> for ForwardedIp {
    fn extract(&self, request: &Request<B>) -> Option<String> {
        match self.trusted_entry(request) {
            Ok(ip) => ip.map(|ip| ip.to_string()),
            Err(()) => peer_ip(request).map(|ip| ip.to_string()),
        }
    }
}

/// The value of a request header, for instance an API key. `None` (unlimited) when the header
/// is missing, empty or not visible ASCII; pair it with a [`ConstantKey`] limit on the same
/// routes if anonymous requests must be limited too.
///
/// The value becomes part of a Redis key name: hash secrets first (a closure extractor) if key
/// names must not reveal them.
#[derive(Debug, Clone)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys requests by the header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self { name }
    }
}

impl<B> KeyExtractor<B> for HeaderKey {
    fn extract(&self, request: &Request<B>) -> Option<String> {
        let value = request.headers().get(&self.name)?.to_str().ok()?.trim();
        (!value.is_empty()).then(|| value.to_owned())
    }
}

/// The same key for every request: one limit shared by all callers (a global budget for an
/// expensive route, or a backend's capacity).
#[derive(Debug, Clone)]
pub struct ConstantKey {
    key: String,
}

impl ConstantKey {
    /// Keys every request by `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Self { key: key.into() }
    }
}

impl<B> KeyExtractor<B> for ConstantKey {
    fn extract(&self, _: &Request<B>) -> Option<String> {
        Some(self.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], peer: Option<&str>) -> Request<()> {
        let mut builder = Request::get("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).unwrap();
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(peer.parse::<SocketAddr>().unwrap());
        }
        request
    }

    fn key(extractor: &impl KeyExtractor<()>, request: &Request<()>) -> Option<String> {
        extractor.extract(request)
    }

    #[test]
    fn a_spoofed_x_forwarded_for_does_not_move_the_key() {
        let lb = "10.0.0.1:443";
        // The client sends a forged list; the one trusted proxy appends the real address.
        let spoofed = request(
            &[("x-forwarded-for", "1.2.3.4, 5.6.7.8, 198.51.100.7")],
            Some(lb),
        );
        let honest = request(&[("x-forwarded-for", "198.51.100.7")], Some(lb));
        let one = ForwardedIp::x_forwarded_for(1);
        assert_eq!(key(&one, &spoofed).as_deref(), Some("198.51.100.7"));
        assert_eq!(key(&one, &spoofed), key(&one, &honest));
        // Two proxies: the right-most entry is the first proxy's address, the one before it the
        // client's; anything further left is the client's own writing.
        let two = ForwardedIp::x_forwarded_for(2);
        let chain = request(
            &[
                ("x-forwarded-for", "1.2.3.4, 198.51.100.7"),
                ("x-forwarded-for", "10.0.0.2"),
            ],
            Some(lb),
        );
        assert_eq!(key(&two, &chain).as_deref(), Some("198.51.100.7"));
        // Too few entries: the request bypassed the proxies; its peer is the client.
        let direct = request(&[("x-forwarded-for", "1.2.3.4")], Some("203.0.113.5:5000"));
        assert_eq!(key(&two, &direct).as_deref(), Some("203.0.113.5"));
        assert_eq!(
            key(&one, &request(&[], Some(lb))).as_deref(),
            Some("10.0.0.1")
        );
        // Trusting no proxy is the peer's address, whatever the header says.
        let none = ForwardedIp::x_forwarded_for(0);
        assert_eq!(key(&none, &spoofed).as_deref(), Some("10.0.0.1"));
        // A trusted entry that is no address keys nothing.
        let garbage = request(&[("x-forwarded-for", "1.2.3.4, unknown")], Some(lb));
        assert_eq!(key(&one, &garbage), None);
        // Ports and brackets are dropped; IPv6 in canonical form.
        let v6 = request(&[("x-forwarded-for", "[2001:DB8:0::1]:4711")], None);
        assert_eq!(key(&one, &v6).as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn the_forwarded_header_is_read_by_its_for_parameter() {
        let one = ForwardedIp::forwarded(1);
        let spoofed = request(
            &[(
                "forwarded",
                "for=6.6.6.6;proto=https, For=\"[2001:db8:cafe::17]:4711\";by=203.0.113.43",
            )],
            Some("10.0.0.1:443"),
        );
        assert_eq!(key(&one, &spoofed).as_deref(), Some("2001:db8:cafe::17"));
        let two = ForwardedIp::forwarded(2);
        assert_eq!(key(&two, &spoofed).as_deref(), Some("6.6.6.6"));
        let v4 = request(&[("forwarded", "for=\"192.0.2.60:8080\"")], None);
        assert_eq!(key(&one, &v4).as_deref(), Some("192.0.2.60"));
        // The other scheme's header is not read.
        let xff = request(&[("x-forwarded-for", "192.0.2.1")], Some("10.0.0.1:1"));
        assert_eq!(key(&one, &xff).as_deref(), Some("10.0.0.1"));
        let obfuscated = request(&[("forwarded", "for=_hidden")], None);
        assert_eq!(key(&one, &obfuscated), None);
    }

    #[test]
    fn peer_header_and_constant_keys() {
        let peer = request(&[], Some("[::1]:8080"));
        assert_eq!(key(&PeerIp, &peer).as_deref(), Some("::1"));
        assert_eq!(key(&PeerIp, &request(&[], None)), None);
        let mut ip = request(&[], None);
        ip.extensions_mut()
            .insert("192.0.2.9".parse::<IpAddr>().unwrap());
        assert_eq!(key(&PeerIp, &ip).as_deref(), Some("192.0.2.9"));

        let api = HeaderKey::new(HeaderName::from_static("x-api-key"));
        let with = request(&[("x-api-key", " k-123 ")], None);
        assert_eq!(key(&api, &with).as_deref(), Some("k-123"));
        assert_eq!(key(&api, &request(&[("x-api-key", "")], None)), None);
        assert_eq!(key(&api, &request(&[], None)), None);

        #[cfg(feature = "axum")]
        {
            let mut axum = request(&[], None);
            let addr: SocketAddr = "198.51.100.3:1234".parse().unwrap();
            axum.extensions_mut()
                .insert(axum::extract::ConnectInfo(addr));
            assert_eq!(key(&PeerIp, &axum).as_deref(), Some("198.51.100.3"));
            assert_eq!(
                key(&ForwardedIp::x_forwarded_for(1), &axum).as_deref(),
                Some("198.51.100.3")
            );
        }

        let global = ConstantKey::new("all");
        assert_eq!(key(&global, &request(&[], None)).as_deref(), Some("all"));
    }
}
