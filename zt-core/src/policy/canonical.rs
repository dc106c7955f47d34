//! The canonical form of a request's path and authority: the one spelling that
//! policies match and that integrations forward to the application, so the two
//! can never read a request differently. See [`canonical_path`] and
//! [`Authority::parse`].

use std::borrow::Cow;
use std::fmt;

/// Why a request path has no canonical form. Policies treat such a path as
/// failing closed: `paths` and `grpc` conditions are unmet for `allow` rules and
/// met for `deny` and `audit` rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum AmbiguousPath {
    /// The path does not start with `/` (`*`, an authority-form target, or none).
    #[error("path does not start with /")]
    NotAbsolute,
    /// The path has an empty segment (`//`), which some servers merge.
    #[error("path has an empty segment (//)")]
    EmptySegment,
    /// The path has a `.` or `..` segment, raw or percent-encoded, which some
    /// servers resolve.
    #[error("path has a . or .. segment")]
    DotSegment,
    /// The path has `%2F` or `%5C`, which some servers decode into a separator.
    #[error("path has an encoded / or \\")]
    EncodedSeparator,
    /// The path has a raw `\`, which some servers read as `/`.
    #[error("path has a backslash")]
    Backslash,
    /// The path has a NUL, another control character, a space or a `#`, raw or
    /// encoded (`#` only raw).
    #[error("path has a control character, space or #")]
    ForbiddenByte,
    /// A `%` is not followed by two hex digits.
    #[error("path has an invalid percent-encoding")]
    InvalidEscape,
}

/// What a byte of a path becomes in the canonical form.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A character allowed unencoded in a segment: kept as it is.
    Keep,
    Slash,
    Percent,
    /// `?`: the query string starts.
    Query,
    /// Printable, but not allowed unencoded: percent-encoded.
    Encode,
    Backslash,
    /// Control characters, space, DEL and `#`.
    Forbidden,
}

static CLASSES: [Class; 256] = class_table();

#[allow(clippy::indexing_slicing, reason = "every index is below 256")]
const fn class_table() -> [Class; 256] {
    let mut table = [Class::Encode; 256];
    let mut b = 0;
    while b < 0x21 {
        table[b] = Class::Forbidden;
        b += 1;
    }
    table[0x7f] = Class::Forbidden;
    let mut b = 0x21;
    while b < 0x7f {
        if is_segment_char(b as u8) {
            table[b] = Class::Keep;
        }
        b += 1;
    }
    table[b'/' as usize] = Class::Slash;
    table[b'%' as usize] = Class::Percent;
    table[b'?' as usize] = Class::Query;
    table[b'\\' as usize] = Class::Backslash;
    table[b'#' as usize] = Class::Forbidden;
    table
}

/// RFC 3986 `pchar` without `pct-encoded`: unreserved, sub-delims, `:` and `@`.
const fn is_segment_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
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
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn class(b: u8) -> Class {
    CLASSES
        .get(usize::from(b))
        .copied()
        .unwrap_or(Class::Encode)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_encoded(out: &mut String, b: u8) {
    out.push('%');
    for nibble in [b >> 4, b & 0x0f] {
        out.push(char::from(
            HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
        ));
    }
}

/// The canonical form of `path`, a request target's path with or without its
/// query string. Borrows when the path is already canonical, which is the
/// common case.
///
/// [`canonical_path`] reads a request target's path (a query string, if any, is
/// left out) and returns it with
///
/// - every percent-encoded octet that stands for a character allowed unencoded in
///   a path segment (RFC 3986 unreserved characters, sub-delimiters, `:` and `@`)
///   decoded: `/users/%61dmin` is `/users/admin`, as a router that decodes its
///   captures reads it;
/// - every other octet percent-encoded with upper-case hex digits: `%c3%a9` is
///   `%C3%A9`, a raw `"` is `%22`, raw UTF-8 is encoded byte by byte;
/// - `%25` left encoded, so nothing is ever decoded twice.
///
/// A path that routers may read in more than one way has no canonical form: it is
/// [`AmbiguousPath`], and policies treat it as failing closed. That is a path
/// that does not start with `/`, or that has an empty segment (`//`), a `.` or
/// `..` segment (also when encoded), an encoded `/` or `\` (`%2F`, `%5C`), a raw
/// `\`, `#`, a NUL or other control character (raw or encoded), or a `%` not
/// followed by two hex digits. A trailing `/` is kept: `/a/` and `/a` are
/// different paths, as they are to most routers.
///
/// ```
/// use zt_core::policy::{AmbiguousPath, canonical_path};
///
/// assert_eq!(canonical_path("/users/%61dmin?x=1").unwrap(), "/users/admin");
/// assert_eq!(canonical_path("/files/caf%c3%a9").unwrap(), "/files/caf%C3%A9");
/// assert_eq!(canonical_path("/a/%2e%2e/admin"), Err(AmbiguousPath::DotSegment));
/// assert_eq!(canonical_path("/files/secret%2Fkey"), Err(AmbiguousPath::EncodedSeparator));
/// ```
///
/// # Errors
///
/// Why the path has no canonical form.
pub fn canonical_path(path: &str) -> Result<Cow<'_, str>, AmbiguousPath> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(AmbiguousPath::NotAbsolute);
    }
    // Most paths are canonical already: check them in one pass without copying,
    // and copy only from the first byte that changes.
    let mut segment_start = 1;
    let mut i = 1;
    let mut end = bytes.len();
    let mut changed_at = None;
    while let Some(&b) = bytes.get(i) {
        match class(b) {
            Class::Keep => {}
            Class::Slash => {
                check_segment(bytes.get(segment_start..i).unwrap_or_default())?;
                segment_start = i.saturating_add(1);
            }
            Class::Query => {
                end = i;
                break;
            }
            Class::Backslash => return Err(AmbiguousPath::Backslash),
            Class::Forbidden => return Err(AmbiguousPath::ForbiddenByte),
            Class::Percent | Class::Encode => {
                changed_at = Some(i);
                break;
            }
        }
        i = i.saturating_add(1);
    }
    let Some(changed_at) = changed_at else {
        check_last_segment(bytes.get(segment_start..end).unwrap_or_default())?;
        return Ok(Cow::Borrowed(path.get(..end).unwrap_or(path)));
    };
    let mut out = String::with_capacity(path.len());
    out.push_str(path.get(..changed_at).unwrap_or_default());
    let mut i = changed_at;
    while let Some(&b) = bytes.get(i) {
        match class(b) {
            Class::Keep => out.push(char::from(b)),
            Class::Slash => {
                check_segment(out.as_bytes().get(segment_start..).unwrap_or_default())?;
                out.push('/');
                segment_start = out.len();
            }
            Class::Query => break,
            Class::Backslash => return Err(AmbiguousPath::Backslash),
            Class::Forbidden => return Err(AmbiguousPath::ForbiddenByte),
            Class::Encode => push_encoded(&mut out, b),
            Class::Percent => {
                let decoded = bytes
                    .get(i.saturating_add(1))
                    .copied()
                    .and_then(hex_value)
                    .zip(bytes.get(i.saturating_add(2)).copied().and_then(hex_value))
                    .map(|(hi, lo)| hi << 4 | lo)
                    .ok_or(AmbiguousPath::InvalidEscape)?;
                match decoded {
                    b'/' | b'\\' => return Err(AmbiguousPath::EncodedSeparator),
                    0..0x20 | 0x7f => return Err(AmbiguousPath::ForbiddenByte),
                    b if is_segment_char(b) => out.push(char::from(b)),
                    b => push_encoded(&mut out, b),
                }
                i = i.saturating_add(2);
            }
        }
        i = i.saturating_add(1);
    }
    check_last_segment(out.as_bytes().get(segment_start..).unwrap_or_default())?;
    Ok(Cow::Owned(out))
}

/// A segment followed by `/`: neither empty nor a dot segment.
fn check_segment(segment: &[u8]) -> Result<(), AmbiguousPath> {
    match segment {
        [] => Err(AmbiguousPath::EmptySegment),
        [b'.'] | [b'.', b'.'] => Err(AmbiguousPath::DotSegment),
        _ => Ok(()),
    }
}

/// The last segment may be empty (a trailing slash), but not a dot segment.
fn check_last_segment(segment: &[u8]) -> Result<(), AmbiguousPath> {
    match segment {
        [b'.'] | [b'.', b'.'] => Err(AmbiguousPath::DotSegment),
        _ => Ok(()),
    }
}

/// The canonical form of one literal segment of a path *pattern*, the same
/// transformation [`canonical_path`] applies to requests.
pub(crate) fn canonical_segment(segment: &str) -> Result<Cow<'_, str>, AmbiguousPath> {
    let mut path = String::with_capacity(segment.len().saturating_add(1));
    path.push('/');
    path.push_str(segment);
    if segment.contains(['/', '?']) {
        return Err(AmbiguousPath::EncodedSeparator);
    }
    let canonical = canonical_path(&path)?;
    if canonical == path {
        return Ok(Cow::Borrowed(segment));
    }
    Ok(Cow::Owned(
        canonical.get(1..).unwrap_or_default().to_owned(),
    ))
}

/// Why an authority (`:authority`, `Host`) is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedAuthority {
    /// The authority is empty or has an empty host.
    #[error("authority has no host")]
    Empty,
    /// The authority has user information (`user@host`).
    #[error("authority has user information")]
    UserInfo,
    /// The host has a character no host name has (including percent-encoding)
    /// or an empty label.
    #[error("authority has an invalid host")]
    InvalidHost,
    /// The port is not a number up to 65535.
    #[error("authority has an invalid port")]
    InvalidPort,
}

/// A request's authority in canonical form: lower-case host without a trailing
/// dot, and the port apart.
///
/// [`Authority::parse`] reads an HTTP/2 `:authority`, an HTTP/1.1 `Host` or the
/// authority of an absolute-form target. The host is compared case-insensitively
/// and without one trailing dot, so the canonical host is lower case without it;
/// the port is kept apart, and policies never compare it. An authority with
/// user information, percent-encoding or characters no host name has is
/// malformed.
///
/// ```
/// use zt_core::policy::Authority;
///
/// let authority = Authority::parse("ADMIN.Internal.:8443").unwrap();
/// assert_eq!(authority.host(), "admin.internal");
/// assert_eq!(authority.port(), Some(8443));
/// assert_eq!(authority.to_string(), "admin.internal:8443");
/// assert!(Authority::parse("user@admin.internal").is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Authority<'a> {
    host: Cow<'a, str>,
    port: Option<u16>,
    /// The raw authority was written in canonical form already.
    canonical: bool,
}

// === impl Authority ===

impl<'a> Authority<'a> {
    /// Reads an HTTP/2 `:authority`, an HTTP/1.1 `Host` value or the authority of
    /// an absolute-form target. An empty port (`host:`) is no port.
    ///
    /// # Errors
    ///
    /// Why the authority is malformed.
    pub fn parse(raw: &'a str) -> Result<Self, MalformedAuthority> {
        // One pass for the user info refused and the last colon.
        let mut last_colon = None;
        for (at, b) in raw.bytes().enumerate() {
            match b {
                b'@' => return Err(MalformedAuthority::UserInfo),
                b':' => last_colon = Some(at),
                _ => {}
            }
        }
        let (host, port_text) = if raw.starts_with('[') {
            let close = raw.find(']').ok_or(MalformedAuthority::InvalidHost)?;
            let (host, rest) = raw.split_at(close.saturating_add(1));
            let inner = host.get(1..host.len().saturating_sub(1)).unwrap_or("");
            if inner.is_empty()
                || !inner
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            {
                return Err(MalformedAuthority::InvalidHost);
            }
            match rest {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        rest.strip_prefix(':')
                            .ok_or(MalformedAuthority::InvalidPort)?,
                    ),
                ),
            }
        } else {
            match last_colon.and_then(|at| Some((raw.get(..at)?, raw.get(at.saturating_add(1)..)?)))
            {
                Some((host, port)) => (host, Some(port)),
                None => (raw, None),
            }
        };
        let port = match port_text {
            None | Some("") => None,
            Some(port) => {
                if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(MalformedAuthority::InvalidPort);
                }
                Some(
                    port.parse::<u16>()
                        .map_err(|_| MalformedAuthority::InvalidPort)?,
                )
            }
        };
        // Canonical as written: no port text other than the number itself (no
        // empty port, no leading zeros), no trailing dot, no upper case (below).
        // A port's text is all digits and parsed: it is the number's own
        // spelling unless it has a leading zero.
        let port_canonical = match (port_text, port) {
            (None, None) => true,
            (Some(text), Some(_)) => text.len() == 1 || !text.starts_with('0'),
            _ => false,
        };
        let stripped = host.strip_suffix('.');
        let host = stripped.unwrap_or(host);
        if host.is_empty() {
            return Err(MalformedAuthority::Empty);
        }
        let mut lower = false;
        if host.starts_with('[') {
            lower = host.bytes().any(|b| b.is_ascii_uppercase());
        } else {
            // One pass: allowed bytes only, and no empty label (a leading, a
            // doubled or, after the one stripped above, a trailing dot).
            let mut label_start = true;
            for b in host.bytes() {
                if b == b'.' {
                    if label_start {
                        return Err(MalformedAuthority::InvalidHost);
                    }
                    label_start = true;
                } else if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') {
                    lower |= b.is_ascii_uppercase();
                    label_start = false;
                } else {
                    return Err(MalformedAuthority::InvalidHost);
                }
            }
            if label_start {
                return Err(MalformedAuthority::InvalidHost);
            }
        }
        let host = if lower {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        Ok(Self {
            host,
            port,
            canonical: port_canonical && stripped.is_none() && !lower,
        })
    }

    /// Whether the authority was written in canonical form already, so that an
    /// integration forwarding the canonical form need not rewrite it.
    #[must_use]
    pub fn is_canonical(&self) -> bool {
        self.canonical
    }

    /// The host, lower case, without a trailing dot; IPv6 literals keep their
    /// brackets.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn into_host(self) -> Cow<'a, str> {
        self.host
    }

    /// The port, when the authority names one.
    #[must_use]
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

/// Two authorities are equal when their canonical forms are, however written.
impl PartialEq for Authority<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host && self.port == other.port
    }
}

impl Eq for Authority<'_> {}

impl fmt::Display for Authority<'_> {
    /// `host` or `host:port`, in canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_decode_segment_characters_and_encode_the_rest() {
        for (raw, expected) in [
            ("/", "/"),
            ("/a/", "/a/"),
            ("/a/b?x=../..", "/a/b"),
            ("/users/%61dmin", "/users/admin"),
            ("/users/%41DMIN", "/users/ADMIN"),
            ("/files/%73ecret/key", "/files/secret/key"),
            ("/a/%3a%40%3B", "/a/:@;"),
            ("/a/%2E%2Ejson", "/a/..json"),
            ("/a/%20b", "/a/%20b"),
            ("/a/%c3%a9", "/a/%C3%A9"),
            ("/a/%25%36%31", "/a/%2561"),
            ("/a/\"x\"", "/a/%22x%22"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a/...", "/a/..."),
            ("/a/{b}", "/a/%7Bb%7D"),
        ] {
            assert_eq!(canonical_path(raw).as_deref(), Ok(expected), "{raw:?}");
        }
    }

    #[test]
    fn percent_25_is_never_decoded_twice() {
        assert_eq!(
            canonical_path("/u/%2561dmin").as_deref(),
            Ok("/u/%2561dmin")
        );
    }

    #[test]
    fn ambiguous_paths_have_no_canonical_form() {
        use AmbiguousPath::*;
        for (raw, why) in [
            ("", NotAbsolute),
            ("*", NotAbsolute),
            ("v1", NotAbsolute),
            ("//", EmptySegment),
            ("/a//b", EmptySegment),
            ("/a/./b", DotSegment),
            ("/a/../b", DotSegment),
            ("/..", DotSegment),
            ("/a/..?q", DotSegment),
            ("/a/%2e%2E/b", DotSegment),
            ("/a/%2e", DotSegment),
            ("/%61/%2e/b", DotSegment),
            ("/a%2fb", EncodedSeparator),
            ("/a%5Cb", EncodedSeparator),
            ("/%61%2Fb", EncodedSeparator),
            ("/a\\b", Backslash),
            ("/a b", ForbiddenByte),
            ("/a%00b", ForbiddenByte),
            ("/a%0A", ForbiddenByte),
            ("/a#b", ForbiddenByte),
            ("/a%", InvalidEscape),
            ("/a%4", InvalidEscape),
            ("/a%zz", InvalidEscape),
        ] {
            assert_eq!(canonical_path(raw), Err(why), "{raw:?}");
        }
    }

    #[test]
    fn canonical_paths_borrow_when_nothing_changes() {
        assert!(matches!(
            canonical_path("/v1/items/42?x"),
            Ok(Cow::Borrowed("/v1/items/42"))
        ));
        assert!(matches!(canonical_path("/v1/%61"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn canonical_form_is_a_fixed_point() {
        for raw in ["/users/%61dmin", "/a/%c3%a9", "/a/\"", "/a/%25", "/x/%3f"] {
            let once = canonical_path(raw).unwrap().into_owned();
            assert_eq!(
                canonical_path(&once).as_deref(),
                Ok(once.as_str()),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn pattern_segments_are_canonicalised_like_requests() {
        assert_eq!(canonical_segment("%61dmin").as_deref(), Ok("admin"));
        assert_eq!(canonical_segment("caf%c3%a9").as_deref(), Ok("caf%C3%A9"));
        assert!(canonical_segment("a%2Fb").is_err());
        assert!(canonical_segment("%2e%2e").is_err());
    }

    #[test]
    fn authorities_compare_without_case_trailing_dot_or_port() {
        for (raw, host, port) in [
            ("admin.internal", "admin.internal", None),
            ("ADMIN.INTERNAL", "admin.internal", None),
            ("admin.internal.", "admin.internal", None),
            ("admin.internal:443", "admin.internal", Some(443)),
            ("Admin.Internal.:8443", "admin.internal", Some(8443)),
            ("admin.internal:", "admin.internal", None),
            ("127.0.0.1:80", "127.0.0.1", Some(80)),
            ("[::1]:443", "[::1]", Some(443)),
            ("[FE80::1]", "[fe80::1]", None),
        ] {
            let authority = Authority::parse(raw).unwrap();
            assert_eq!(
                (authority.host(), authority.port()),
                (host, port),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn authorities_know_whether_they_were_written_canonically() {
        for (raw, canonical) in [
            ("a.org", true),
            ("a.org:443", true),
            ("[::1]:443", true),
            ("[::1]", true),
            ("a.org:0", true),
            ("A.org", false),
            ("a.org.", false),
            ("a.org:", false),
            ("a.org:0443", false),
            ("a.org:00", false),
            ("[::1]:08", false),
            ("[::1]:", false),
            ("[FE80::1]", false),
        ] {
            assert_eq!(
                Authority::parse(raw).unwrap().is_canonical(),
                canonical,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn malformed_authorities_are_refused() {
        use MalformedAuthority::*;
        for (raw, why) in [
            ("", Empty),
            (":443", Empty),
            (".", Empty),
            ("user@admin.internal", UserInfo),
            ("admin%2Einternal", InvalidHost),
            ("admin.internal:80@evil", UserInfo),
            ("[::1]@evil", UserInfo),
            ("admin..internal", InvalidHost),
            (".admin.internal", InvalidHost),
            ("admin.internal..", InvalidHost),
            ("admin internal", InvalidHost),
            ("admin.internal:https", InvalidPort),
            ("admin.internal:99999", InvalidPort),
            ("admin.internal:1:2", InvalidHost),
            ("[::1", InvalidHost),
            ("[::1]x", InvalidPort),
        ] {
            assert_eq!(Authority::parse(raw), Err(why), "{raw:?}");
        }
    }
}
