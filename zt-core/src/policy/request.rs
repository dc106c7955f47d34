//! What a policy sees of a request: protocol, method, path and headers.

use std::fmt;

/// The protocol a request arrived with, which decides the `to` fields that can
/// match it: `methods` and `paths` for HTTP, `grpc` for gRPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A plain HTTP request (HTTP/1.1 or HTTP/2).
    Http,
    /// A gRPC call: an HTTP/2 `POST` to `/pkg.Service/Method`.
    Grpc,
}

impl Protocol {
    /// `"http"` or `"grpc"`, for logs and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Read access to a request's headers, for `when` conditions.
///
/// `name` is always lowercase ASCII. Implementations over header maps that
/// compare names case-insensitively may pass it through unchanged.
///
/// # Repeated and unreadable headers
///
/// A condition is only ever evaluated against a single readable value. When
/// [`count`](Headers::count) reports a header more often than
/// [`get`](Headers::get) can return it — the header is repeated, or present
/// but not valid UTF-8 — the condition is ambiguous and resolves the way that
/// fails closed: unmet for `allow` rules, met for `deny` and `audit` rules.
/// Implementations over maps that can hold a header more than once (such as
/// `http::HeaderMap`) should therefore implement `count` as well as `get`;
/// the default `count` only knows what `get` returns.
pub trait Headers {
    /// The value of header `name`, or `None` when it is absent or not valid
    /// UTF-8. With repeated headers, any one of the values.
    fn get(&self, name: &str) -> Option<&str>;

    /// How many times header `name` appears, readable or not.
    fn count(&self, name: &str) -> usize {
        usize::from(self.get(name).is_some())
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
}

/// Name-value pairs; names compare case-insensitively.
impl<const N: usize> Headers for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), name)
    }

    fn count(&self, name: &str) -> usize {
        Headers::count(self.as_slice(), name)
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
}

/// Name-value pairs; names compare case-insensitively.
impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), name)
    }

    fn count(&self, name: &str) -> usize {
        Headers::count(self.as_slice(), name)
    }
}

/// One request, as the policy sees it.
///
/// - HTTP: `method` is the request method (`"GET"`), `path` the URI path
///   (`"/v1/items/42"`). A query string, if passed, is ignored.
/// - gRPC: `method` is `"POST"`, `path` is `"/pkg.Service/Method"`.
///
/// Paths are compared as they arrive, without percent-decoding. A path that
/// routers may read differently than the policy does — with `//`, a `.` or
/// `..` segment, a backslash, an encoded `.`, `/` or `\`, or bytes outside
/// printable ASCII — is ambiguous: `paths` conditions on it resolve the way
/// that fails closed (unmet for `allow` rules, met for `deny` and `audit`
/// rules). The same holds for a gRPC path that is not `/service/method`.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// Which `to` fields can match.
    pub protocol: Protocol,
    /// The HTTP method, case-sensitive (`"GET"`); `"POST"` for gRPC.
    pub method: &'a str,
    /// The URI path, e.g. `"/v1/items/42"` or `"/pkg.Service/Method"`.
    pub path: &'a str,
    /// The request headers, for `when` conditions.
    pub headers: &'a dyn Headers,
}

// === impl Request ===

impl<'a> Request<'a> {
    /// An HTTP request without headers.
    #[must_use]
    pub fn http(method: &'a str, path: &'a str) -> Self {
        Self {
            protocol: Protocol::Http,
            method,
            path,
            headers: &(),
        }
    }

    /// A gRPC call to `path` (`"/pkg.Service/Method"`) without metadata.
    #[must_use]
    pub fn grpc(path: &'a str) -> Self {
        Self {
            protocol: Protocol::Grpc,
            method: "POST",
            path,
            headers: &(),
        }
    }

    /// The same request with `headers`.
    #[must_use]
    pub fn with_headers(self, headers: &'a dyn Headers) -> Self {
        Self { headers, ..self }
    }
}

impl fmt::Debug for Request<'_> {
    /// Leaves the headers out: they may carry credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("protocol", &self.protocol)
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
