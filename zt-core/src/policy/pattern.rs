//! The values a policy document holds — rule names, ID patterns, HTTP methods,
//! path patterns, gRPC names, header names and header value patterns — each
//! parsed and validated from a string, and matched against requests.
//!
//! Each type deserializes from a string through its `FromStr`, so a bad value
//! is reported by the format's parser at the value's own location.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::Arc;

use serde::de;

use crate::id::split_trust_domain;
use crate::{IdMatcher, PatternError, SpiffeId, TrustDomain};

/// Longest rule name accepted, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 253;
/// Longest path pattern, header name or header value accepted, in bytes.
pub(crate) const MAX_VALUE_LEN: usize = 8192;

/// Deserializes any `FromStr<Err = String>` value from a string.
pub(crate) struct StrVisitor<T> {
    expecting: &'static str,
    target: PhantomData<fn() -> T>,
}

impl<T> StrVisitor<T> {
    pub(crate) fn new(expecting: &'static str) -> Self {
        Self {
            expecting,
            target: PhantomData,
        }
    }
}

impl<T: FromStr<Err = String>> de::Visitor<'_> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

macro_rules! deserialize_from_str {
    ($ty:ty, $expecting:literal) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(StrVisitor::new($expecting))
            }
        }
    };
}

/// Writes `s` quoted, with anything outside printable ASCII escaped, so values
/// from a file cannot forge log lines.
pub(crate) fn quoted(s: &str) -> impl fmt::Display + '_ {
    struct Quoted<'a>(&'a str);
    impl fmt::Display for Quoted<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "\"{}\"", self.0.escape_debug())
        }
    }
    Quoted(s)
}

// === RuleName ===

/// A rule name: 1 to [`MAX_NAME_LEN`] bytes of letters, digits, `.`, `_`,
/// `:`, `/` and `-`, so it is safe in logs, metric labels and headers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RuleName(pub(crate) Arc<str>);

impl FromStr for RuleName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("rule name cannot be empty".to_owned());
        }
        if s.len() > MAX_NAME_LEN {
            return Err(format!(
                "rule name cannot be longer than {MAX_NAME_LEN} bytes"
            ));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
        {
            return Err(format!(
                "rule name {} may only contain letters, digits, '.', '_', ':', '/' and '-'",
                quoted(s)
            ));
        }
        Ok(Self(Arc::from(s)))
    }
}

deserialize_from_str!(RuleName, "a rule name");

// === Id and Domain ===

/// A SPIFFE ID in a policy; its errors quote the value, which comes from the
/// operator's file rather than from a peer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Id(pub(crate) SpiffeId);

impl FromStr for Id {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        SpiffeId::new(s)
            .map(Self)
            .map_err(|err| format!("invalid SPIFFE ID {}: {err}", quoted(s)))
    }
}

deserialize_from_str!(Id, "a SPIFFE ID such as spiffe://example.org/frontend");

/// A trust domain name in a policy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Domain(pub(crate) TrustDomain);

impl FromStr for Domain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TrustDomain::new(s).map(Self).map_err(|err| {
            let hint = if s.starts_with("spiffe:") {
                " (write the bare name, such as example.org)"
            } else {
                ""
            };
            format!("invalid trust domain {}: {err}{hint}", quoted(s))
        })
    }
}

deserialize_from_str!(Domain, "a trust domain name such as example.org");

// === IdPattern ===

/// An ID pattern (`*` one segment, `**` the rest), with what the index needs:
/// its trust domain and its first path segment when that is literal.
///
/// Validated by [`IdMatcher::pattern`], so patterns mean exactly what they
/// mean everywhere else in zt; matched here on bytes, because it runs on the
/// hot path for every pattern rule a decision meets.
#[derive(Clone, Debug)]
pub(crate) struct IdPattern {
    pub(crate) raw: Box<str>,
    pub(crate) trust_domain: TrustDomain,
    /// The first path segment when it is literal; `None` when it is a
    /// wildcard or the pattern has no path.
    pub(crate) first_segment: Option<Box<str>>,
    segments: Box<[IdSegment]>,
}

#[derive(Clone, Debug)]
enum IdSegment {
    Literal(Box<str>),
    /// `*`: exactly one segment.
    One,
    /// `**`, always last: one or more segments.
    Rest,
}

impl IdPattern {
    pub(crate) fn new(s: &str) -> Result<Self, PatternError> {
        IdMatcher::pattern(s)?;
        // The matcher accepted the pattern, so these cannot fail; they are
        // checked again rather than assumed.
        let (trust_domain, path) = split_trust_domain(s)?;
        let trust_domain = TrustDomain::new(trust_domain)?;
        let segments: Box<[IdSegment]> = path
            .strip_prefix('/')
            .map(|rest| {
                rest.split('/')
                    .map(|segment| match segment {
                        "*" => IdSegment::One,
                        "**" => IdSegment::Rest,
                        literal => IdSegment::Literal(literal.into()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let first_segment = match segments.first() {
            Some(IdSegment::Literal(literal)) => Some(literal.clone()),
            _ => None,
        };
        Ok(Self {
            raw: s.into(),
            trust_domain,
            first_segment,
            segments,
        })
    }

    /// Same as the [`IdMatcher`] of the pattern.
    pub(crate) fn matches(&self, id: &SpiffeId) -> bool {
        if id.trust_domain().as_str() != self.trust_domain.as_str() {
            return false;
        }
        // IDs have no empty segments, so `Some` means one more segment.
        let mut remaining = id.path().strip_prefix('/');
        for expected in &self.segments {
            let Some(current) = remaining else {
                return false;
            };
            let (segment, next) = split_segment(current);
            match expected {
                IdSegment::Rest => return true,
                IdSegment::One => {}
                IdSegment::Literal(literal) => {
                    if **literal != *segment {
                        return false;
                    }
                }
            }
            remaining = next;
        }
        remaining.is_none()
    }
}

impl FromStr for IdPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::new(s).map_err(|err| format!("invalid ID pattern {}: {err}", quoted(s)))
    }
}

deserialize_from_str!(
    IdPattern,
    "a SPIFFE ID pattern such as spiffe://example.org/ns/*/sa/**"
);

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
    pub(crate) raw: Box<str>,
    kind: PathKind,
}

#[derive(Clone, Debug)]
enum PathKind {
    Exact,
    Segments {
        /// The literal segments before the first wildcard, each with the `/`
        /// before and after it (`/v1/` for `/v1/*`; `/` when the pattern starts
        /// with a wildcard), compared in one go.
        prefix: Box<str>,
        /// The segments from the first wildcard on.
        segments: Box<[PathSegment]>,
        /// Ends with `**`: one or more further segments.
        rest: bool,
    },
}

#[derive(Clone, Debug)]
enum PathSegment {
    Literal(Box<str>),
    /// `*`: exactly one non-empty segment.
    One,
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
        let mut segments = Vec::new();
        let mut wildcard = false;
        let mut tail_rest = false;
        let mut parts = rest.split('/').peekable();
        while let Some(part) = parts.next() {
            let last = parts.peek().is_none();
            match part {
                "" if last => segments.push(PathSegment::Literal("".into())),
                "" => return bad("paths cannot contain empty segments (//)"),
                "." | ".." => return bad("paths cannot contain . or .. segments"),
                "**" if last => {
                    wildcard = true;
                    tail_rest = true;
                }
                "**" => return bad("** is only allowed as the last segment"),
                "*" => {
                    wildcard = true;
                    segments.push(PathSegment::One);
                }
                _ if part.contains('*') => {
                    return bad("a wildcard is a whole segment, either * or **");
                }
                _ => {
                    if let Err(why) = check_path_segment(part) {
                        return bad(why);
                    }
                    segments.push(PathSegment::Literal(part.into()));
                }
            }
        }
        let kind = if wildcard {
            // A wildcard follows the literal segments, so a matching path has a
            // `/` after the last of them.
            let literals = segments
                .iter()
                .take_while(|segment| matches!(segment, PathSegment::Literal(_)))
                .count();
            let mut prefix = String::from("/");
            for segment in segments.drain(..literals) {
                if let PathSegment::Literal(literal) = segment {
                    prefix.push_str(&literal);
                    prefix.push('/');
                }
            }
            PathKind::Segments {
                prefix: prefix.into(),
                segments: segments.into_boxed_slice(),
                rest: tail_rest,
            }
        } else {
            PathKind::Exact
        };
        Ok(Self {
            raw: s.into(),
            kind,
        })
    }
}

deserialize_from_str!(PathPattern, "an HTTP path such as /v1/items/*");

/// Checks a literal segment of a path pattern: RFC 3986 `pchar`s, with
/// percent-encodings well formed and none that requests may not carry.
fn check_path_segment(segment: &str) -> Result<(), &'static str> {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let encoded = bytes
                .get(i.saturating_add(1)..i.saturating_add(3))
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            match encoded {
                None => return Err("% must be followed by two hex digits"),
                Some(b'.' | b'/' | b'\\') => {
                    return Err(
                        "an encoded '.', '/' or '\\' never matches: requests carrying one are ambiguous",
                    );
                }
                Some(_) => i = i.saturating_add(3),
            }
            continue;
        }
        let pchar = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if !pchar {
            return Err("paths may only contain URI path characters (RFC 3986 pchar)");
        }
        i = i.saturating_add(1);
    }
    Ok(())
}

impl PathPattern {
    /// Whether the pattern is a single path, without wildcards.
    pub(crate) fn is_exact(&self) -> bool {
        matches!(self.kind, PathKind::Exact)
    }

    /// Whether `path` matches; `path` must have passed [`request_path`].
    pub(crate) fn matches(&self, path: &str) -> bool {
        match &self.kind {
            PathKind::Exact => *self.raw == *path,
            PathKind::Segments {
                prefix,
                segments,
                rest,
            } => {
                let mut remaining = path.strip_prefix(&**prefix);
                for expected in segments {
                    let Some(current) = remaining else {
                        return false;
                    };
                    let (segment, next) = split_segment(current);
                    match expected {
                        PathSegment::Literal(literal) if **literal == *segment => {}
                        PathSegment::One if !segment.is_empty() => {}
                        _ => return false,
                    }
                    remaining = next;
                }
                remaining.is_some() == *rest
            }
        }
    }
}

/// Splits `s` at its first `/` into the segment before it and the rest after
/// it, or `None` for the rest when there is no `/`.
pub(crate) fn split_segment(s: &str) -> (&str, Option<&str>) {
    match s.as_bytes().iter().position(|&b| b == b'/') {
        Some(slash) => (
            s.get(..slash).unwrap_or_default(),
            s.get(slash.saturating_add(1)..),
        ),
        None => (s, None),
    }
}

/// The path of an HTTP request as policies compare it: without its query
/// string, or `None` when it is ambiguous (see [`Request`](super::Request)):
/// it does not start with `/`, or it has `//`, a `.` or `..` segment, a
/// backslash, `#`, a byte outside printable ASCII, or an encoded `.`, `/` or
/// `\`, which some servers decode before routing and others do not.
///
/// One pass over the bytes: this runs on every request that meets a rule
/// with path conditions.
pub(crate) fn request_path(path: &str) -> Option<&str> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let mut end = bytes.len();
    let mut segment_start = 1;
    let mut i = 1;
    // Most bytes are plain: skip them in a tight loop.
    while let Some(plain) = bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| path_byte(b) != PathByte::Plain))
    {
        i = i.saturating_add(plain);
        let Some(&b) = bytes.get(i) else {
            break;
        };
        match path_byte(b) {
            PathByte::Plain => {}
            PathByte::Slash => {
                // A `/` follows, so an empty segment here is `//`.
                let segment = bytes.get(segment_start..i)?;
                if matches!(segment, [] | [b'.'] | [b'.', b'.']) {
                    return None;
                }
                segment_start = i.saturating_add(1);
            }
            PathByte::Percent => {
                let encoded = bytes.get(i.saturating_add(1)..i.saturating_add(3));
                if let Some([hi, lo]) = encoded
                    && matches!(
                        (hi, lo.to_ascii_lowercase()),
                        (b'2', b'e' | b'f') | (b'5', b'c')
                    )
                {
                    return None;
                }
            }
            PathByte::Query => {
                end = i;
                break;
            }
            PathByte::Refused => return None,
        }
        i = i.saturating_add(1);
    }
    // The last segment may be empty (a trailing slash), but not a dot segment.
    if matches!(bytes.get(segment_start..end)?, [b'.'] | [b'.', b'.']) {
        return None;
    }
    path.get(..end)
}

/// What [`request_path`] does with a byte of the path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PathByte {
    /// Printable ASCII with no meaning of its own here.
    Plain,
    Slash,
    Percent,
    /// `?`: the query string starts.
    Query,
    /// A backslash, `#`, or a byte outside printable ASCII.
    Refused,
}

/// The class of every byte, looked up once per byte: this loop runs over every
/// request path that meets a rule with path conditions.
static PATH_BYTES: [PathByte; 256] = path_byte_table();

#[allow(clippy::indexing_slicing, reason = "every index is below 256")]
const fn path_byte_table() -> [PathByte; 256] {
    let mut table = [PathByte::Refused; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = PathByte::Plain;
        b += 1;
    }
    table[b'/' as usize] = PathByte::Slash;
    table[b'%' as usize] = PathByte::Percent;
    table[b'?' as usize] = PathByte::Query;
    table[b'\\' as usize] = PathByte::Refused;
    table[b'#' as usize] = PathByte::Refused;
    table
}

fn path_byte(b: u8) -> PathByte {
    PATH_BYTES
        .get(usize::from(b))
        .copied()
        .unwrap_or(PathByte::Refused)
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

/// The service and method of a gRPC request path `/pkg.Service/Method`, or
/// `None` when the path has another shape.
pub(crate) fn grpc_call(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
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
    fn id_patterns_agree_with_id_matcher() {
        let patterns = [
            "spiffe://td",
            "spiffe://td/a",
            "spiffe://td/*",
            "spiffe://td/**",
            "spiffe://td/a/*",
            "spiffe://td/a/**",
            "spiffe://td/*/b",
            "spiffe://td/*/b/**",
            "spiffe://td/a/*/c",
        ];
        let ids = [
            "spiffe://td",
            "spiffe://td/a",
            "spiffe://td/b",
            "spiffe://td/a/b",
            "spiffe://td/x/b",
            "spiffe://td/a/b/c",
            "spiffe://td/x/b/c/d",
            "spiffe://td/ab",
            "spiffe://tdx/a",
            "spiffe://other/a/b",
        ];
        for pattern in patterns {
            let ours = IdPattern::new(pattern).unwrap();
            let reference = IdMatcher::pattern(pattern).unwrap();
            for id in ids {
                let id = SpiffeId::new(id).unwrap();
                assert_eq!(
                    ours.matches(&id),
                    reference.matches(&id),
                    "{pattern} vs {id}"
                );
            }
        }
    }

    #[test]
    fn ambiguous_request_paths_are_refused() {
        for path in [
            "",
            "v1",
            "//",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/..",
            "/a/%2e%2E/b",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a b",
            "/caf\u{e9}",
        ] {
            assert_eq!(request_path(path), None, "{path:?}");
        }
        for (path, expected) in [
            ("/", "/"),
            ("/a/", "/a/"),
            ("/a/b?x=../..", "/a/b"),
            ("/a/%20b", "/a/%20b"),
            ("/a/...", "/a/..."),
        ] {
            assert_eq!(request_path(path), Some(expected), "{path:?}");
        }
    }

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
    fn query_string_ends_the_path_after_a_run_of_plain_bytes() {
        assert_eq!(request_path("/abcdefgh/ijk?q=/../"), Some("/abcdefgh/ijk"));
        assert_eq!(request_path("/abcdefgh/ijk/..?q"), None);
        assert_eq!(request_path("/abcdefgh\\x"), None);
        assert_eq!(request_path("/abc%2Fdef"), None);
        assert_eq!(request_path("/abc%"), Some("/abc%"));
    }

    #[test]
    fn grpc_request_paths_split_into_service_and_method() {
        assert_eq!(grpc_call("/pkg.Svc/Get"), Some(("pkg.Svc", "Get")));
        assert_eq!(grpc_call("/pkg.Svc/Get/x"), None);
        assert_eq!(grpc_call("pkg.Svc/Get"), None);
        assert_eq!(grpc_call("/pkg.Svc/"), None);
    }
}
