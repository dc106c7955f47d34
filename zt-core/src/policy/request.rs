//! What a policy sees of a request: method, canonical path, host and headers.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;

use super::canonical::{AmbiguousPath, Authority, canonical_path};
use crate::id::SpiffeId;

/// Read access to a request's headers, for `when` conditions.
///
/// `name` is always lowercase ASCII. Implementations over header maps that
/// compare names case-insensitively may pass it through unchanged.
///
/// # Repeated, list-valued and unreadable headers
///
/// A condition is evaluated against a single readable value unless it says it
/// matches list members (`members: true`). When [`count`](Headers::count)
/// reports a header more often than [`get`](Headers::get) can return it — the
/// header is repeated, or present but not valid UTF-8 — or the single value is
/// a comma-separated list, the condition is ambiguous and resolves the way that
/// fails closed: unmet for `allow` rules, met for `deny` and `audit` rules.
/// Implementations over maps that can hold a header more than once (such as
/// `http::HeaderMap`) should therefore implement `count` and
/// [`all`](Headers::all) as well as `get`; the defaults only know what `get`
/// returns.
pub trait Headers {
    /// The value of header `name`, or `None` when it is absent or not valid
    /// UTF-8. With repeated headers, any one of the values.
    fn get(&self, name: &str) -> Option<&str>;

    /// How many times header `name` appears, readable or not.
    fn count(&self, name: &str) -> usize {
        usize::from(self.get(name).is_some())
    }

    /// Every value of header `name`, in order; `None` for a value that is not
    /// valid UTF-8. Used only by conditions that match list members.
    fn all(&self, name: &str) -> Vec<Option<&str>> {
        self.get(name).map(Some).into_iter().collect()
    }
}

/// No headers at all.
impl Headers for () {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }

    fn count(&self, _name: &str) -> usize {
        0
    }
}

/// Name-value pairs; names compare case-insensitively.
impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v)
    }

    fn count(&self, name: &str) -> usize {
        self.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    fn all(&self, name: &str) -> Vec<Option<&str>> {
        self.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| Some(v))
            .collect()
    }
}

/// Name-value pairs; names compare case-insensitively.
impl<const N: usize> Headers for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), name)
    }

    fn count(&self, name: &str) -> usize {
        Headers::count(self.as_slice(), name)
    }

    fn all(&self, name: &str) -> Vec<Option<&str>> {
        Headers::all(self.as_slice(), name)
    }
}

/// Name-value pairs; names compare case-insensitively.
impl Headers for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    fn all(&self, name: &str) -> Vec<Option<&str>> {
        self.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| Some(v.as_str()))
            .collect()
    }
}

/// Name-value pairs; names compare case-insensitively.
impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), name)
    }

    fn count(&self, name: &str) -> usize {
        Headers::count(self.as_slice(), name)
    }

    fn all(&self, name: &str) -> Vec<Option<&str>> {
        Headers::all(self.as_slice(), name)
    }
}

/// One request, as the policy sees it: the canonical view that every
/// integration builds once per request and decides on.
///
/// - `method` is the request method, compared case-sensitively; a rule that
///   names `GET` also covers `HEAD`, which servers answer with the `GET`
///   handler.
/// - The path is brought into canonical form with [`canonical_path`] (query
///   string dropped, percent-encoding normalised). A path without one is
///   ambiguous, and `paths` and `grpc` conditions on it resolve the way that
///   fails closed: unmet for `allow` rules, met for `deny` and `audit` rules.
/// - A path with exactly two segments, `/service/method`, is also a gRPC call
///   for `grpc` conditions — whatever the method and content type, because gRPC
///   servers route by path alone.
/// - The host is the canonical host of the request's authority
///   ([`Authority`]); `hosts` conditions and `when` conditions on `host` match
///   it. A request without one is ambiguous for them.
/// - The upgrade ([`Upgrade`]) is the protocol the request asks to switch its
///   stream to: an HTTP/1.1 `GET` with `Upgrade: websocket` and an HTTP/2
///   `CONNECT` with `:protocol websocket` (RFC 8441) are both the method `GET`
///   with the upgrade [`Upgrade::WebSocket`], so the HTTP version a client picks
///   changes nothing. Only an `allow` rule whose `to.upgrades` names it admits an
///   upgrade; `deny` and `audit` rules without `upgrades` match upgrades too.
///
/// Nothing else of the request — in particular not its content type — changes
/// which rules can match it.
#[derive(Clone)]
pub struct Request<'a> {
    method: &'a str,
    path: Result<Cow<'a, str>, AmbiguousPath>,
    host: Host<'a>,
    upgrade: Option<Upgrade>,
    headers: &'a dyn Headers,
    jwt_subject: Option<&'a SpiffeId>,
}

/// A protocol a request asks to switch its stream to, in the one form the policy
/// decides on whatever the HTTP version carried it (see [`Request`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Upgrade {
    /// WebSocket: HTTP/1.1 `Upgrade: websocket` (RFC 6455) or HTTP/2 extended
    /// `CONNECT` with `:protocol websocket` (RFC 8441).
    WebSocket,
}

// === impl Upgrade ===

impl Upgrade {
    /// Every upgrade zt governs.
    pub(crate) const ALL: [Self; 1] = [Self::WebSocket];

    /// The upgrade a protocol token names (`Upgrade` header, HTTP/2
    /// `:protocol`), compared case-insensitively; `None` for any protocol zt
    /// does not govern.
    #[must_use]
    pub fn from_token(token: &str) -> Option<Self> {
        token
            .eq_ignore_ascii_case("websocket")
            .then_some(Self::WebSocket)
    }

    /// The name policies use for it: `websocket`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
        }
    }
}

impl fmt::Display for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug)]
enum Host<'a> {
    Absent,
    Known(Cow<'a, str>),
    Malformed,
}

// === impl Request ===

impl<'a> Request<'a> {
    /// A request for `method` and `path` (a request target's path, with or
    /// without its query string), without headers or host.
    #[must_use]
    pub fn new(method: &'a str, path: &'a str) -> Self {
        Self::from_canonical(method, canonical_path(path))
    }

    /// A request whose path was already brought into canonical form with
    /// [`canonical_path`], so integrations that forward the canonical path do
    /// the work once.
    #[must_use]
    pub fn from_canonical(method: &'a str, path: Result<Cow<'a, str>, AmbiguousPath>) -> Self {
        Self {
            method,
            path,
            host: Host::Absent,
            upgrade: None,
            headers: &(),
            jwt_subject: None,
        }
    }

    /// A gRPC call to `path` (`"/pkg.Service/Method"`): a `POST` without
    /// metadata.
    #[must_use]
    pub fn grpc(path: &'a str) -> Self {
        Self::new("POST", path)
    }

    /// The same request with `headers`.
    #[must_use]
    pub fn with_headers(self, headers: &'a dyn Headers) -> Self {
        Self { headers, ..self }
    }

    /// The same request with the authority `raw` (`:authority` or `Host`); a
    /// malformed one makes host conditions fail closed.
    #[must_use]
    pub fn with_host(self, raw: &'a str) -> Self {
        let host = match Authority::parse(raw) {
            Ok(authority) => Host::Known(authority.into_host()),
            Err(_) => Host::Malformed,
        };
        Self { host, ..self }
    }

    /// The same request carrying a JWT-SVID whose subject is `subject`: the
    /// token must have been validated (signature, audience, expiry) for this
    /// request; `from.jwt` rules trust the subject they are given.
    #[must_use]
    pub fn with_jwt_subject(self, subject: &'a SpiffeId) -> Self {
        Self {
            jwt_subject: Some(subject),
            ..self
        }
    }

    /// The subject of the request's validated JWT-SVID, when it carries one.
    pub fn jwt_subject(&self) -> Option<&'a SpiffeId> {
        self.jwt_subject
    }

    /// The same request with an authority already parsed.
    #[must_use]
    pub fn with_authority(self, authority: Authority<'a>) -> Self {
        Self {
            host: Host::Known(authority.into_host()),
            ..self
        }
    }

    /// The same request asking to switch its stream to `upgrade`.
    #[must_use]
    pub fn with_upgrade(self, upgrade: Upgrade) -> Self {
        Self {
            upgrade: Some(upgrade),
            ..self
        }
    }

    /// The protocol the request asks to switch to, if any.
    #[must_use]
    pub fn upgrade(&self) -> Option<Upgrade> {
        self.upgrade
    }

    /// The request method.
    #[must_use]
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The canonical path, or why the path has none.
    ///
    /// # Errors
    ///
    /// Why the path is ambiguous.
    pub fn path(&self) -> Result<&str, AmbiguousPath> {
        self.path.as_deref().map_err(|why| *why)
    }

    /// The canonical host, when the request has a well-formed authority.
    #[must_use]
    pub fn host(&self) -> Option<&str> {
        match &self.host {
            Host::Known(host) => Some(host),
            Host::Absent | Host::Malformed => None,
        }
    }

    /// The gRPC service and method the path names, when it has the shape
    /// `/service/method`.
    #[must_use]
    pub fn grpc_call(&self) -> Option<(&str, &str)> {
        grpc_call(self.path().ok()?)
    }

    /// The request headers.
    #[must_use]
    pub fn headers(&self) -> &'a dyn Headers {
        self.headers
    }
}

/// The service and method of a canonical path `/service/method`, or `None`
/// when the path has another shape.
pub(crate) fn grpc_call(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// The request, with the parts only some rules need worked out on first use.
pub(crate) struct RequestView<'a> {
    request: &'a Request<'a>,
    /// The request's upgrade, read once for every rule.
    pub(crate) upgrade: Option<Upgrade>,
    call: OnceCell<Option<(&'a str, &'a str)>>,
}

impl<'a> RequestView<'a> {
    pub(crate) fn new(request: &'a Request<'a>) -> Self {
        Self {
            request,
            upgrade: request.upgrade,
            call: OnceCell::new(),
        }
    }

    /// The request itself.
    pub(crate) fn request(&self) -> &'a Request<'a> {
        self.request
    }

    /// The canonical path, `None` when ambiguous.
    pub(crate) fn path(&self) -> Option<&'a str> {
        self.request.path().ok()
    }

    /// The gRPC service and method, `None` when the path has another shape.
    pub(crate) fn call(&self) -> Option<(&'a str, &'a str)> {
        *self
            .call
            .get_or_init(|| self.request.path().ok().and_then(grpc_call))
    }
}

/// The outcome of one condition: `Unknown` when the request is ambiguous for
/// it (see `Request` and `Headers`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    Yes,
    No,
    Unknown,
}

impl Tri {
    pub(crate) fn from_bool(b: bool) -> Self {
        if b { Self::Yes } else { Self::No }
    }

    /// Both conditions: any `No` decides, then any `Unknown`.
    pub(crate) fn and(self, other: impl FnOnce() -> Self) -> Self {
        match self {
            Self::No => Self::No,
            Self::Yes => other(),
            Self::Unknown => match other() {
                Self::No => Self::No,
                Self::Yes | Self::Unknown => Self::Unknown,
            },
        }
    }
}

impl fmt::Debug for Request<'_> {
    /// Leaves the headers out: they may carry credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("host", &self.host)
            .field("upgrade", &self.upgrade)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_calls_are_paths_with_two_segments() {
        assert_eq!(grpc_call("/pkg.Svc/Get"), Some(("pkg.Svc", "Get")));
        assert_eq!(grpc_call("/pkg.Svc/Get/x"), None);
        assert_eq!(grpc_call("pkg.Svc/Get"), None);
        assert_eq!(grpc_call("/pkg.Svc/"), None);
    }

    #[test]
    fn requests_decide_on_the_canonical_path_and_host() {
        let request = Request::new("GET", "/pkg.Svc/%47et?x").with_host("API.example.org.:443");
        assert_eq!(request.path(), Ok("/pkg.Svc/Get"));
        assert_eq!(request.grpc_call(), Some(("pkg.Svc", "Get")));
        assert_eq!(request.host(), Some("api.example.org"));
        assert_eq!(Request::new("GET", "/a").with_host("a@b").host(), None);
    }

    #[test]
    fn only_the_websocket_token_names_an_upgrade() {
        assert_eq!(Upgrade::from_token("websocket"), Some(Upgrade::WebSocket));
        assert_eq!(Upgrade::from_token("WebSocket"), Some(Upgrade::WebSocket));
        for other in ["h2c", "websocket/13", " websocket", "", "connect-udp"] {
            assert_eq!(Upgrade::from_token(other), None, "{other:?}");
        }
        let request = Request::new("GET", "/ws").with_upgrade(Upgrade::WebSocket);
        assert_eq!(request.upgrade(), Some(Upgrade::WebSocket));
        assert_eq!(Request::new("GET", "/ws").upgrade(), None);
    }
}
