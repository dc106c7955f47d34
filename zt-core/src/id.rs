//! SPIFFE IDs and trust domain names, parsed exactly as the SPIFFE-ID
//! standard (`spiffe/spiffe`, `standards/SPIFFE-ID.md`) defines them.
//!
//! A SPIFFE ID is `spiffe://<trust domain><path>`:
//!
//! * the scheme is exactly the lowercase `spiffe://`;
//! * the trust domain is 1 to [`MAX_TRUST_DOMAIN_LEN`] bytes of
//!   `[a-z0-9._-]`, so user info (`@`), ports (`:`), percent-encoding (`%`)
//!   and IP literals (`[`) can never appear in it;
//! * the path is empty (the trust domain's root ID) or one or more
//!   `/segment`s, each made of `[a-zA-Z0-9._-]`, never empty, never `.` or
//!   `..`, with no trailing `/`, no query (`?`) and no fragment (`#`);
//! * the whole ID is at most [`MAX_ID_LEN`] bytes.
//!
//! Nothing is normalised: an ID that parses is byte-for-byte the string it was
//! parsed from, and two IDs are equal exactly when their strings are equal.
//! That is what makes string comparison a safe authorization primitive here.
//!
//! ```
//! use zt_core::{IdError, SpiffeId, TrustDomain};
//!
//! let id: SpiffeId = "spiffe://example.org/ns/prod/sa/api".parse()?;
//! assert_eq!(id.trust_domain().as_str(), "example.org");
//! assert_eq!(id.path(), "/ns/prod/sa/api");
//! assert_eq!(id.segments().collect::<Vec<_>>(), ["ns", "prod", "sa", "api"]);
//! assert!(id.is_member_of(&TrustDomain::new("example.org")?));
//! assert_eq!(id.to_string(), "spiffe://example.org/ns/prod/sa/api");
//!
//! assert_eq!(
//!     SpiffeId::new("spiffe://example.org/ns/../admin"),
//!     Err(IdError::DotSegment)
//! );
//! # Ok::<(), IdError>(())
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Longest SPIFFE ID accepted, in bytes, scheme and trust domain included.
///
/// The standard requires support for IDs up to this length and forbids
/// generating longer ones; refusing longer input also bounds parsing work.
pub const MAX_ID_LEN: usize = 2048;

/// Longest trust domain name accepted, in bytes (the RFC 3986 host limit).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// The only scheme accepted; matched byte for byte, so `SPIFFE://` is refused.
pub(crate) const SCHEME_PREFIX: &str = "spiffe://";

/// Why a string is not a valid SPIFFE ID, trust domain or path.
///
/// Each variant names the rule that failed. Messages deliberately leave out
/// the offending input: it is usually attacker-controlled (a peer
/// certificate's URI SAN) and callers decide whether it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The input string is empty.
    #[error("cannot be empty")]
    Empty,
    /// The input does not start with exactly `spiffe://`.
    #[error("scheme is missing or invalid")]
    WrongScheme,
    /// There is no trust domain between `spiffe://` and the path, or a bare
    /// trust domain name is empty.
    #[error("trust domain is missing")]
    MissingTrustDomain,
    /// The trust domain contains a byte outside `[a-z0-9._-]`, such as an
    /// uppercase letter, `@`, `:`, `%`, `[` or any non-ASCII byte.
    #[error(
        "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
    )]
    BadTrustDomainChar,
    /// The trust domain is longer than [`MAX_TRUST_DOMAIN_LEN`] bytes.
    #[error("trust domain cannot be longer than {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong,
    /// A path given on its own is neither empty nor starts with `/`.
    #[error("path must have a leading slash")]
    NoLeadingSlash,
    /// The path contains `//`.
    #[error("path cannot contain empty segments")]
    EmptySegment,
    /// A path segment is exactly `.` or `..`.
    #[error("path cannot contain dot segments")]
    DotSegment,
    /// The path ends with `/`.
    #[error("path cannot have a trailing slash")]
    TrailingSlash,
    /// A path segment contains a byte outside `[a-zA-Z0-9._-]`, such as `%`,
    /// `?`, `#`, `:`, `@`, a space or any non-ASCII byte.
    #[error(
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores"
    )]
    BadPathSegmentChar,
    /// The whole ID is longer than [`MAX_ID_LEN`] bytes.
    #[error("spiffe id cannot be longer than {MAX_ID_LEN} bytes")]
    TooLong,
}

/// The name of a SPIFFE trust domain, such as `example.org`.
///
/// Always valid: it can only be built through the checks in [`TrustDomain::new`]
/// or by parsing a [`SpiffeId`]. Cloning is a reference-count increment.
/// Equality, ordering and hashing are those of the name string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain {
    name: Arc<str>,
}

impl TrustDomain {
    /// Parses a bare trust domain name such as `example.org`.
    ///
    /// A full ID such as `spiffe://example.org` is refused here (`:` and `/`
    /// are not trust domain characters); use [`TrustDomain::from_id_or_name`]
    /// to accept either form.
    ///
    /// # Errors
    ///
    /// [`IdError::MissingTrustDomain`] for an empty name,
    /// [`IdError::TrustDomainTooLong`] or [`IdError::BadTrustDomainChar`].
    pub fn new(name: &str) -> Result<Self, IdError> {
        validate_trust_domain_name(name)?;
        Ok(Self {
            name: Arc::from(name),
        })
    }

    /// The name as the trust domain holds it: cloning the `Arc` copies no bytes,
    /// for labels and records that outlive this value.
    #[must_use]
    pub fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// Parses either a bare trust domain name (`example.org`) or a full SPIFFE
    /// ID (`spiffe://example.org/anything`), returning the trust domain.
    ///
    /// Input containing `:/` is treated as an ID and must be a valid one,
    /// path included; anything else must be a valid bare name. Looking for
    /// `:/` rather than `://` makes a typo such as `spiffe:/example.org`
    /// report [`IdError::WrongScheme`] instead of a confusing character error.
    ///
    /// # Errors
    ///
    /// Whatever [`SpiffeId::new`] or [`TrustDomain::new`] reports for the
    /// form the input was taken to be.
    pub fn from_id_or_name(id_or_name: &str) -> Result<Self, IdError> {
        if id_or_name.contains(":/") {
            let (trust_domain, _path) = split_id(id_or_name)?;
            // `split_id` has validated the name; no second check needed.
            Ok(Self {
                name: Arc::from(trust_domain),
            })
        } else {
            Self::new(id_or_name)
        }
    }

    /// The trust domain name, without scheme.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<name>`, with an empty
    /// path.
    #[must_use]
    pub fn id(&self) -> SpiffeId {
        let mut id = String::with_capacity(SCHEME_PREFIX.len() + self.name.len());
        id.push_str(SCHEME_PREFIX);
        id.push_str(&self.name);
        // Cannot exceed MAX_ID_LEN: 9 + 255 bytes at most.
        SpiffeId {
            path_start: id.len(),
            id: Arc::from(id),
            trust_domain: self.clone(),
        }
    }
}

impl fmt::Display for TrustDomain {
    /// Writes the bare name, e.g. `example.org`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.name)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TrustDomain").field(&&*self.name).finish()
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;

    /// Same as [`TrustDomain::new`]: a bare name only.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for TrustDomain {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for TrustDomain {
    /// Accepts a string and validates it with [`TrustDomain::new`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseVisitor::new("a SPIFFE trust domain name"))
    }
}

/// A SPIFFE ID such as `spiffe://example.org/ns/prod/sa/api`.
///
/// Always valid: every constructor enforces the rules listed in the
/// [module documentation](self). Cloning is two reference-count increments.
/// Equality, ordering and hashing are those of the ID string, and
/// [`Display`](fmt::Display) writes that string exactly as it was parsed.
#[derive(Clone)]
pub struct SpiffeId {
    id: Arc<str>,
    trust_domain: TrustDomain,
    /// Byte offset of the path in `id`. It always points at an ASCII `/` or
    /// at the end of the string, so it is a char boundary.
    path_start: usize,
}

impl SpiffeId {
    /// Parses a SPIFFE ID.
    ///
    /// # Errors
    ///
    /// The [`IdError`] naming the first rule the input breaks, checked from
    /// left to right after the length limit.
    pub fn new(id: &str) -> Result<Self, IdError> {
        let (trust_domain, path) = split_id(id)?;
        Ok(Self {
            id: Arc::from(id),
            trust_domain: TrustDomain {
                name: Arc::from(trust_domain),
            },
            path_start: id.len().saturating_sub(path.len()),
        })
    }

    /// Builds an ID from a trust domain and a path such as `/ns/prod` (or
    /// `""` for the trust domain's root ID).
    ///
    /// # Errors
    ///
    /// [`IdError::NoLeadingSlash`] when a non-empty path does not start with
    /// `/`, [`IdError::TooLong`] when the resulting ID would exceed
    /// [`MAX_ID_LEN`], or the path rule that `path` breaks.
    pub fn from_parts(trust_domain: &TrustDomain, path: &str) -> Result<Self, IdError> {
        let prefix_len = SCHEME_PREFIX.len().saturating_add(trust_domain.name.len());
        if prefix_len.saturating_add(path.len()) > MAX_ID_LEN {
            return Err(IdError::TooLong);
        }
        validate_path(path)?;
        let mut id = String::with_capacity(prefix_len.saturating_add(path.len()));
        id.push_str(SCHEME_PREFIX);
        id.push_str(&trust_domain.name);
        id.push_str(path);
        Ok(Self {
            id: Arc::from(id),
            trust_domain: trust_domain.clone(),
            path_start: prefix_len,
        })
    }

    /// The trust domain the ID belongs to.
    #[must_use]
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path: `""` for a root ID, otherwise `/segment` repeated, e.g.
    /// `/ns/prod`.
    #[must_use]
    pub fn path(&self) -> &str {
        // `path_start` is a char boundary within `id` by construction, so the
        // fallback is unreachable; it only keeps this accessor panic-free.
        self.id.get(self.path_start..).unwrap_or_default()
    }

    /// Iterates over the path segments, without their slashes; yields
    /// nothing for a root ID.
    pub fn segments(&self) -> Segments<'_> {
        Segments {
            rest: self.path().strip_prefix('/'),
        }
    }

    /// Whether the path is empty, i.e. this is `spiffe://<trust domain>`.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.path().is_empty()
    }

    /// Whether the ID's trust domain is exactly `trust_domain`.
    ///
    /// Only whole names compare equal: `example.org.evil` is not a member of
    /// `example.org`, nor is `sub.example.org`.
    #[must_use]
    pub fn is_member_of(&self, trust_domain: &TrustDomain) -> bool {
        self.trust_domain == *trust_domain
    }

    /// The whole ID string, exactly as parsed or built.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

// Comparisons use only the ID string: the trust domain and path offset are
// derived from it, so including them could never change the outcome.
impl PartialEq for SpiffeId {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for SpiffeId {}

impl PartialOrd for SpiffeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SpiffeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

impl Hash for SpiffeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl fmt::Display for SpiffeId {
    /// Writes the ID exactly as parsed, e.g. `spiffe://example.org/ns/prod`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SpiffeId").field(&&*self.id).finish()
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;

    /// Same as [`SpiffeId::new`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    /// Accepts a string and validates it with [`SpiffeId::new`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseVisitor::new("a SPIFFE ID string"))
    }
}

/// Iterator over the segments of a [`SpiffeId`] path, returned by
/// [`SpiffeId::segments`].
///
/// Segments are never empty, since IDs cannot contain empty segments.
#[derive(Debug, Clone)]
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct Segments<'a> {
    /// The path after its leading `/` and after the segments already
    /// yielded; `None` once exhausted or for a root ID.
    rest: Option<&'a str>,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match rest.split_once('/') {
            Some((segment, tail)) => {
                self.rest = Some(tail);
                Some(segment)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

impl DoubleEndedIterator for Segments<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        match rest.rsplit_once('/') {
            Some((head, segment)) => {
                self.rest = Some(head);
                Some(segment)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

impl FusedIterator for Segments<'_> {}

/// Deserializes any `FromStr<Err = IdError>` type from a string, so that a
/// bad string surfaces as a deserializer error carrying the [`IdError`]
/// message, without first copying borrowed input into a `String`.
struct ParseVisitor<T> {
    expecting: &'static str,
    target: PhantomData<fn() -> T>,
}

impl<T> ParseVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        Self {
            expecting,
            target: PhantomData,
        }
    }
}

impl<T: FromStr<Err = IdError>> de::Visitor<'_> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

/// Validates a whole SPIFFE ID and splits it into its trust domain name and
/// its path (`""` or starting with `/`).
fn split_id(id: &str) -> Result<(&str, &str), IdError> {
    let (trust_domain, path) = split_trust_domain(id)?;
    validate_path(path)?;
    Ok((trust_domain, path))
}

/// Checks everything in `spiffe://<trust domain>` plus the overall length
/// limit, and returns the trust domain name and the rest, unvalidated.
///
/// Shared with the matcher, whose patterns have the same scheme and trust
/// domain rules but their own path syntax.
pub(crate) fn split_trust_domain(id: &str) -> Result<(&str, &str), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    // Checked before anything else so oversized input costs no scanning.
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    let rest = id.strip_prefix(SCHEME_PREFIX).ok_or(IdError::WrongScheme)?;

    let mut trust_domain_len = rest.len();
    for (i, byte) in rest.bytes().enumerate() {
        if byte == b'/' {
            trust_domain_len = i;
            break;
        }
        if !is_trust_domain_byte(byte) {
            return Err(IdError::BadTrustDomainChar);
        }
    }
    // Every byte before `trust_domain_len` is ASCII and the byte at it (if
    // any) is `/`, so this is a char boundary and the split cannot fail.
    let (trust_domain, path) = rest
        .split_at_checked(trust_domain_len)
        .ok_or(IdError::BadTrustDomainChar)?;
    check_trust_domain_len(trust_domain)?;
    Ok((trust_domain, path))
}

fn validate_trust_domain_name(name: &str) -> Result<(), IdError> {
    if !name.bytes().all(is_trust_domain_byte) {
        return Err(IdError::BadTrustDomainChar);
    }
    check_trust_domain_len(name)
}

fn check_trust_domain_len(name: &str) -> Result<(), IdError> {
    if name.is_empty() {
        Err(IdError::MissingTrustDomain)
    } else if name.len() > MAX_TRUST_DOMAIN_LEN {
        Err(IdError::TrustDomainTooLong)
    } else {
        Ok(())
    }
}

/// Validates a path: `""`, or one or more `/segment`s.
///
/// One pass over the bytes; each segment's length and whether it is all dots
/// are tracked as it goes, so nothing is re-scanned.
fn validate_path(path: &str) -> Result<(), IdError> {
    let mut bytes = path.bytes();
    match bytes.next() {
        None => return Ok(()),
        Some(b'/') => {}
        Some(_) => return Err(IdError::NoLeadingSlash),
    }
    let mut segment = SegmentShape::default();
    for byte in bytes {
        if byte == b'/' {
            segment.check(IdError::EmptySegment)?;
            segment = SegmentShape::default();
        } else if is_path_byte(byte) {
            segment.push(byte);
        } else {
            return Err(IdError::BadPathSegmentChar);
        }
    }
    // An empty final segment means the path ended with `/`.
    segment.check(IdError::TrailingSlash)
}

/// Validates one path segment given without slashes; used by the matcher for
/// the literal segments of a pattern, so they follow the ID rules exactly.
pub(crate) fn validate_segment(segment: &str) -> Result<(), IdError> {
    let mut shape = SegmentShape::default();
    for byte in segment.bytes() {
        if !is_path_byte(byte) {
            return Err(IdError::BadPathSegmentChar);
        }
        shape.push(byte);
    }
    shape.check(IdError::EmptySegment)
}

/// What the segment rules need to know about a segment, gathered byte by byte.
#[derive(Debug)]
struct SegmentShape {
    len: usize,
    all_dots: bool,
}

impl Default for SegmentShape {
    fn default() -> Self {
        Self {
            len: 0,
            all_dots: true,
        }
    }
}

impl SegmentShape {
    fn push(&mut self, byte: u8) {
        self.len = self.len.saturating_add(1);
        self.all_dots &= byte == b'.';
    }

    /// `if_empty` is the error an empty segment gets, which depends on
    /// whether it is the last one (trailing slash) or not (`//`).
    fn check(&self, if_empty: IdError) -> Result<(), IdError> {
        match (self.len, self.all_dots) {
            (0, _) => Err(if_empty),
            (1 | 2, true) => Err(IdError::DotSegment),
            _ => Ok(()),
        }
    }
}

const fn is_trust_domain_byte(byte: u8) -> bool {
    matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

const fn is_path_byte(byte: u8) -> bool {
    matches!(byte, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn path_offset_points_at_the_path_for_parsed_and_built_ids() {
        let td = TrustDomain::new("example.org").unwrap();
        let parsed = SpiffeId::new("spiffe://example.org/a/b").unwrap();
        let built = SpiffeId::from_parts(&td, "/a/b").unwrap();
        let root = td.id();
        assert_eq!(parsed.path(), "/a/b");
        assert_eq!(built.path(), "/a/b");
        assert_eq!(root.path(), "");
        assert_eq!(parsed, built);
    }

    #[test]
    fn segment_shape_flags_only_one_or_two_dots_as_dot_segments() {
        for (segment, expected) in [
            (".", Err(IdError::DotSegment)),
            ("..", Err(IdError::DotSegment)),
            ("...", Ok(())),
            (".a", Ok(())),
            ("a.", Ok(())),
            ("", Err(IdError::EmptySegment)),
            ("a%2f", Err(IdError::BadPathSegmentChar)),
        ] {
            assert_eq!(validate_segment(segment), expected, "{segment:?}");
        }
    }

    #[test]
    fn split_trust_domain_leaves_the_path_unvalidated() {
        assert_eq!(split_trust_domain("spiffe://td/a//*"), Ok(("td", "/a//*")));
    }

    #[test]
    fn error_messages_name_the_length_limits() {
        assert_eq!(
            IdError::TooLong.to_string(),
            "spiffe id cannot be longer than 2048 bytes"
        );
        assert_eq!(
            IdError::TrustDomainTooLong.to_string(),
            "trust domain cannot be longer than 255 bytes"
        );
    }
}
