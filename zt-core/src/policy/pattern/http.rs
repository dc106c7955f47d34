//! The values a rule's `to` and `when` hold: HTTP methods, path patterns, host
//! patterns, gRPC service and method names, header names and header value
//! patterns, each parsed and validated from a string.

use std::str::FromStr;

use super::{MAX_NAME_LEN, MAX_VALUE_LEN, StrVisitor, quoted};
use crate::policy::canonical::{AmbiguousPath, Authority, canonical_segment};
use crate::policy::request::Upgrade;
use crate::segments::{Segments, SyntaxError};

// === UpgradeName ===

/// A protocol named in `to.upgrades`: `websocket`, the one upgrade zt governs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct UpgradeName(pub(crate) Upgrade);

impl FromStr for UpgradeName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match Upgrade::from_token(s) {
            Some(upgrade) if upgrade.as_str() == s => Ok(Self(upgrade)),
            Some(upgrade) => Err(format!(
                "upgrade names are lower case: write {upgrade}, not {}",
                quoted(s)
            )),
            None => Err(format!(
                "{} is not an upgrade zt governs: the only one is websocket",
                quoted(s)
            )),
        }
    }
}

deserialize_from_str!(UpgradeName, "an upgrade protocol: websocket");

// === Method ===

const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// An HTTP method token, compared case-sensitively as RFC 9110 says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Method(pub(crate) Box<str>);

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("method cannot be empty".to_owned());
        }
        if s == "*" {
            return Err(
                "methods take no wildcards: leave methods out to match any method".to_owned(),
            );
        }
        if s.len() > MAX_NAME_LEN || !s.bytes().all(is_tchar) {
            return Err(format!("{} is not an HTTP method", quoted(s)));
        }
        let upper = s.to_ascii_uppercase();
        if upper != s && STANDARD_METHODS.contains(&upper.as_str()) {
            return Err(format!(
                "methods are case-sensitive: write {upper}, not {}",
                quoted(s)
            ));
        }
        Ok(Self(s.into()))
    }
}

deserialize_from_str!(Method, "an HTTP method such as GET");

/// RFC 9110 `tchar`: the bytes of a method or header name.
const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

// === PathPattern ===

/// An HTTP path pattern: an exact path, `*` for one segment, a final `**`
/// for one or more segments.
#[derive(Clone, Debug)]
pub(crate) struct PathPattern {
    /// As written in the policy.
    pub(crate) raw: Box<str>,
    /// With every literal segment in canonical form (see `canonical_path`).
    pub(crate) canonical: Box<str>,
    pub(crate) segments: Segments,
}

impl FromStr for PathPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("invalid path {}: {why}", quoted(s)));
        if s.len() > MAX_VALUE_LEN {
            return bad("too long");
        }
        let Some(rest) = s.strip_prefix('/') else {
            return bad("a path starts with /");
        };
        if s.contains(['?', '#']) {
            return bad("paths match without the query string or fragment");
        }
        let segments = Segments::compile(Some(rest), |part, last| match part {
            // A trailing slash is part of the path: `/a/` is not `/a`.
            "" if last => Ok(Box::from("")),
            "" => Err("paths cannot contain empty segments (//)"),
            "." | ".." => Err("paths cannot contain . or .. segments"),
            _ => {
                let literal = canonical_literal(part)?;
                if matches!(&*literal, "." | "..") {
                    return Err("paths cannot contain . or .. segments");
                }
                Ok(literal.into())
            }
        });
        let segments = match segments {
            Ok(segments) => segments,
            Err(SyntaxError::RestNotLast) => return bad("** is only allowed as the last segment"),
            Err(SyntaxError::PartialWildcard) => {
                return bad("a wildcard is a whole segment, either * or **");
            }
            Err(SyntaxError::Literal(why)) => return bad(why),
        };
        Ok(Self {
            raw: s.into(),
            canonical: segments.to_string().into(),
            segments,
        })
    }
}

deserialize_from_str!(PathPattern, "an HTTP path such as /v1/items/*");

/// A literal segment of a path pattern in canonical form: RFC 3986 `pchar`s,
/// percent-encodings well formed, none that requests may not carry, and
/// encodings normalised as requests are (`%61` is `a`).
fn canonical_literal(segment: &str) -> Result<String, &'static str> {
    if !segment
        .bytes()
        .all(|b| b == b'%' || b.is_ascii_alphanumeric() || b"-._~!$&'()+,;=:@".contains(&b))
    {
        return Err("paths may only contain URI path characters (RFC 3986 pchar)");
    }
    match canonical_segment(segment) {
        Ok(literal) => Ok(literal.into_owned()),
        Err(AmbiguousPath::InvalidEscape) => Err("% must be followed by two hex digits"),
        Err(AmbiguousPath::EncodedSeparator | AmbiguousPath::DotSegment) => {
            Err("an encoded '.', '/' or '\\' never matches: requests carrying one are ambiguous")
        }
        Err(_) => {
            Err("an encoded control character never matches: requests carrying one are ambiguous")
        }
    }
}

impl PathPattern {
    /// Whether the pattern is a single path, without wildcards.
    pub(crate) fn is_exact(&self) -> bool {
        self.segments.is_literal()
    }

    /// Whether some path of exactly two non-empty segments, the shape of a gRPC
    /// call, matches.
    pub(crate) fn can_match_two_segments(&self) -> bool {
        if self.is_exact() {
            return crate::policy::request::grpc_call(&self.canonical).is_some();
        }
        match self.segments.arity() {
            (least, true) => least <= 2,
            (exactly, false) => exactly == 2,
        }
    }

    /// Whether `path`, a canonical request path, matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        path.strip_prefix('/')
            .is_some_and(|path| self.segments.matches(Some(path)))
    }
}

// === HostPattern ===

/// A host pattern: an exact host, `*.suffix` for any host under a domain (one or
/// more labels before the suffix) or `*` for any host. Matched against the
/// canonical host of a request (see `Authority`): lower case, without a
/// trailing dot and without the port.
#[derive(Clone, Debug)]
pub(crate) struct HostPattern {
    pub(crate) raw: Box<str>,
    kind: HostKind,
}

#[derive(Clone, Debug)]
enum HostKind {
    Any,
    Exact(Box<str>),
    /// The suffix with its leading dot: `.example.org` for `*.example.org`.
    Suffix(Box<str>),
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("invalid host {}: {why}", quoted(s)));
        if s.len() > MAX_VALUE_LEN {
            return bad("too long");
        }
        let (wild, name) = match s {
            "*" => {
                return Ok(Self {
                    raw: s.into(),
                    kind: HostKind::Any,
                });
            }
            _ => match s.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, s),
            },
        };
        if name.contains('*') {
            return bad("a wildcard is * alone or a leading *. label");
        }
        let authority = match Authority::parse(name) {
            Ok(authority) => authority,
            Err(err) => return bad(&err.to_string()),
        };
        if authority.port().is_some() {
            return bad("hosts compare without the port: leave it out");
        }
        let host = authority.into_host();
        let kind = if wild {
            HostKind::Suffix(format!(".{host}").into())
        } else {
            HostKind::Exact(host.into())
        };
        Ok(Self {
            raw: s.into(),
            kind,
        })
    }
}

deserialize_from_str!(
    HostPattern,
    "a host name such as api.example.org or *.example.org"
);

impl HostPattern {
    /// Whether `host`, a canonical host, matches.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match &self.kind {
            HostKind::Any => true,
            HostKind::Exact(exact) => **exact == *host,
            HostKind::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(&**suffix),
        }
    }
}

// === GrpcPattern ===

/// A gRPC method `pkg.Service/Method`, or every method of a service
/// `pkg.Service/*`. A leading `/` is accepted and dropped.
#[derive(Clone, Debug)]
pub(crate) struct GrpcPattern {
    /// Without the leading `/`.
    pub(crate) raw: Box<str>,
    service: Box<str>,
    /// `None` for `*`.
    method: Option<Box<str>>,
}

impl FromStr for GrpcPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("invalid gRPC name {}: {why}", quoted(s)));
        let name = s.strip_prefix('/').unwrap_or(s);
        let Some((service, method)) = name.split_once('/') else {
            return bad("write pkg.Service/Method or pkg.Service/*");
        };
        if service.is_empty() || !service.split('.').all(is_proto_ident) {
            return bad(
                "the service is a fully qualified protobuf name such as pkg.Service, spelled out in full",
            );
        }
        let method = match method {
            "*" => None,
            _ if is_proto_ident(method) => Some(method.into()),
            _ => return bad("the method is a protobuf identifier or *"),
        };
        Ok(Self {
            raw: name.into(),
            service: service.into(),
            method,
        })
    }
}

deserialize_from_str!(GrpcPattern, "a gRPC name such as pkg.Service/Method");

fn is_proto_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.len() <= MAX_NAME_LEN
}

impl GrpcPattern {
    /// Whether the call to `service`/`method` matches.
    pub(crate) fn matches(&self, (service, method): (&str, &str)) -> bool {
        *self.service == *service && self.method.as_deref().is_none_or(|m| m == method)
    }

    /// The service and method this exact pattern names.
    pub(crate) fn as_call(&self) -> Option<(&str, &str)> {
        Some((&self.service, self.method.as_deref()?))
    }
}

// === HeaderName ===

/// A header name, stored lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct HeaderName(pub(crate) Box<str>);

impl FromStr for HeaderName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("header name cannot be empty".to_owned());
        }
        if s.len() > MAX_VALUE_LEN || !s.bytes().all(is_tchar) {
            return Err(format!(
                "{} is not an HTTP header name (pseudo-headers such as :authority are not headers; use host)",
                quoted(s)
            ));
        }
        Ok(Self(s.to_ascii_lowercase().into()))
    }
}

deserialize_from_str!(HeaderName, "an HTTP header name");

// === ValuePattern ===

/// A header value pattern: exact, `*` (any value), `prefix*` or `*suffix`.
#[derive(Clone, Debug)]
pub(crate) struct ValuePattern {
    pub(crate) raw: Box<str>,
    kind: ValueKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ValueKind {
    Any,
    Exact,
    Prefix,
    Suffix,
}

impl FromStr for ValuePattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() > MAX_VALUE_LEN
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
        {
            return Err(format!(
                "invalid header value {}: only visible ASCII, space and tab",
                quoted(s)
            ));
        }
        let kind = match s.matches('*').count() {
            0 => ValueKind::Exact,
            1 if s == "*" => ValueKind::Any,
            1 if s.ends_with('*') => ValueKind::Prefix,
            1 if s.starts_with('*') => ValueKind::Suffix,
            _ => {
                return Err(format!(
                    "invalid header value {}: one * goes at the start or the end",
                    quoted(s)
                ));
            }
        };
        Ok(Self {
            raw: s.into(),
            kind,
        })
    }
}

deserialize_from_str!(ValuePattern, "a header value pattern");

impl ValuePattern {
    /// The same pattern for a `host` condition: lower case, without a trailing
    /// dot, and refused with a port, which hosts compare without.
    pub(crate) fn host_form(&self) -> Result<Self, String> {
        let lower = self.raw.to_ascii_lowercase();
        let (prefix, rest) = match lower.strip_prefix('*') {
            Some(rest) => ("*", rest),
            None => ("", lower.as_str()),
        };
        let rest = if self.kind == ValueKind::Suffix || self.kind == ValueKind::Exact {
            rest.strip_suffix('.').unwrap_or(rest)
        } else {
            rest
        };
        if rest.contains(':') && !rest.starts_with('[') {
            return Err(format!(
                "host value {} has a port: hosts compare without the port",
                quoted(&self.raw)
            ));
        }
        format!("{prefix}{rest}").parse()
    }

    pub(crate) fn is_exact(&self) -> bool {
        self.kind == ValueKind::Exact
    }

    pub(crate) fn matches(&self, value: &str) -> bool {
        match self.kind {
            ValueKind::Any => true,
            ValueKind::Exact => *self.raw == *value,
            ValueKind::Prefix => self
                .raw
                .strip_suffix('*')
                .is_some_and(|prefix| value.starts_with(prefix)),
            ValueKind::Suffix => self
                .raw
                .strip_prefix('*')
                .is_some_and(|suffix| value.ends_with(suffix)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_star_needs_at_least_one_more_segment() {
        let p: PathPattern = "/v1/**".parse().unwrap();
        assert!(!p.matches("/v1"));
        assert!(p.matches("/v1/"));
        assert!(p.matches("/v1/a/b"));
        let all: PathPattern = "/**".parse().unwrap();
        assert!(all.matches("/"));
        assert!(all.matches("/a"));
    }

    #[test]
    fn single_star_never_matches_an_empty_segment() {
        let p: PathPattern = "/v1/*".parse().unwrap();
        assert!(p.matches("/v1/a"));
        assert!(!p.matches("/v1/"));
        assert!(!p.matches("/v1/a/b"));
    }

    #[test]
    fn literal_prefix_then_wildcards_match_segment_by_segment() {
        let p: PathPattern = "/v1/items/*/parts/**".parse().unwrap();
        assert!(p.matches("/v1/items/42/parts/a"));
        assert!(p.matches("/v1/items/42/parts/a/b"));
        assert!(!p.matches("/v1/items/42/parts"));
        assert!(!p.matches("/v1/itemsx/42/parts/a"));
        assert!(!p.matches("/v1/items"));
        assert!(!p.matches("/v1/items/"));
        assert!(!p.matches("/v2/items/42/parts/a"));
        let trailing: PathPattern = "/v1/*/".parse().unwrap();
        assert!(trailing.matches("/v1/a/"));
        assert!(!trailing.matches("/v1/a"));
        assert!(!trailing.matches("/v1//"));
    }

    #[test]
    fn path_patterns_compare_in_canonical_form() {
        let p: PathPattern = "/users/%61dmin".parse().unwrap();
        assert!(p.matches("/users/admin"));
        let p: PathPattern = "/files/caf%c3%a9/*".parse().unwrap();
        assert!(p.matches("/files/caf%C3%A9/x"));
        assert!("/files/%2e%2e".parse::<PathPattern>().is_err());
        assert!("/files/a%2fb".parse::<PathPattern>().is_err());
    }

    #[test]
    fn host_patterns_match_canonical_hosts() {
        let exact: HostPattern = "Admin.Internal.".parse().unwrap();
        assert!(exact.matches("admin.internal"));
        assert!(!exact.matches("x.admin.internal"));
        let wild: HostPattern = "*.internal".parse().unwrap();
        assert!(wild.matches("admin.internal"));
        assert!(wild.matches("a.b.internal"));
        assert!(!wild.matches("internal"));
        assert!(!wild.matches("xinternal"));
        assert!("admin.internal:443".parse::<HostPattern>().is_err());
        assert!("a*.internal".parse::<HostPattern>().is_err());
    }
}
