//! Deciding whether a peer's SPIFFE ID is acceptable.
//!
//! An [`IdMatcher`] is built once (from code or configuration) and then
//! asked [`IdMatcher::matches`] on every handshake or request. Matching never
//! allocates. Only [`IdMatcher::any`] and [`IdMatcher::not`] can accept an ID
//! from a trust domain they do not spell out in full; every other rule, and
//! every combination of rules that uses neither, stays inside the trust
//! domains it names.
//!
//! Patterns are `spiffe://<trust domain>` followed by path segments, where a
//! segment may be `*` (exactly one segment) or, as the last segment only,
//! `**` (one or more segments). The trust domain is always literal.
//!
//! ```
//! use zt_core::{IdMatcher, SpiffeId};
//!
//! let workloads: IdMatcher = "spiffe://example.org/ns/*/sa/**".parse()?;
//! let api: SpiffeId = "spiffe://example.org/ns/prod/sa/api".parse()?;
//! let admin: SpiffeId = "spiffe://example.org/admin".parse()?;
//! let foreign: SpiffeId = "spiffe://example.net/ns/prod/sa/api".parse()?;
//!
//! assert!(workloads.matches(&api));
//! assert!(!workloads.matches(&admin));
//! assert!(!workloads.matches(&foreign));
//!
//! let policy = IdMatcher::any_of([workloads, IdMatcher::exact(admin.clone())]);
//! assert!(policy.matches(&admin));
//! assert_eq!(
//!     policy.to_string(),
//!     "any of [spiffe://example.org/ns/*/sa/**, spiffe://example.org/admin]"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::id::{
    IdError, SCHEME_PREFIX, SpiffeId, TrustDomain, split_trust_domain, validate_segment,
};
use crate::segments::{Segments, SyntaxError};

/// How many IDs of a [`IdMatcher::one_of`] set its `Display` lists before
/// summarising the rest, so log lines stay bounded.
const DISPLAYED_IDS: usize = 8;

/// Why a string is not a valid [`IdMatcher::pattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern breaks a SPIFFE ID rule: scheme, trust domain, length, an
    /// empty or dot segment, a trailing slash, or a bad character in a
    /// literal segment. The wrapped error names the rule.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The trust domain contains `*`; patterns never match across trust
    /// domains, so the trust domain must be spelled out in full.
    #[error("trust domain cannot contain wildcards")]
    WildcardInTrustDomain,
    /// `**` appears before the last segment.
    #[error("** is only allowed as the last path segment")]
    RecursiveWildcardNotLast,
    /// A segment mixes `*` with other characters (`a*`, `***`); a wildcard
    /// must be a whole segment.
    #[error("a wildcard must be a whole path segment, either * or **")]
    PartialWildcard,
}

/// A rule that accepts or rejects SPIFFE IDs.
///
/// Cloning copies the rule's structure but shares its strings. `Display`
/// gives a readable summary for logs and error messages; `FromStr` is
/// [`IdMatcher::pattern`].
///
/// Matchers only look at the ID string. Whether the peer really owns that ID
/// is for certificate verification against the trust bundle to establish,
/// before any matcher is consulted.
#[derive(Clone)]
pub struct IdMatcher {
    rule: Rule,
}

#[derive(Debug, Clone)]
enum Rule {
    Any,
    Exact(SpiffeId),
    /// Sorted and deduplicated, for binary search and stable `Display`.
    OneOf(Box<[SpiffeId]>),
    TrustDomain(TrustDomain),
    Pattern(Pattern),
    AnyOf(Box<[IdMatcher]>),
    AllOf(Box<[IdMatcher]>),
    Not(Box<IdMatcher>),
}

/// A pattern with at least one wildcard; wildcard-free patterns become
/// [`Rule::Exact`].
#[derive(Debug, Clone)]
struct Pattern {
    trust_domain: TrustDomain,
    segments: Segments,
}

impl IdMatcher {
    /// Matches every ID, from every trust domain.
    ///
    /// Only sound where the peer's SVID has already been verified against
    /// the configured trust bundles, as the mTLS layer does before any
    /// matcher runs: the effective policy is then "any workload those
    /// bundles vouch for", across every trust domain they cover.
    #[must_use]
    pub fn any() -> Self {
        Self { rule: Rule::Any }
    }

    /// Matches `id` and nothing else; comparison is byte for byte.
    #[must_use]
    pub fn exact(id: SpiffeId) -> Self {
        Self {
            rule: Rule::Exact(id),
        }
    }

    /// Matches any of `ids`. An empty set matches nothing.
    ///
    /// Lookups are a binary search over the sorted, deduplicated IDs, so
    /// large sets stay cheap to query.
    #[must_use]
    pub fn one_of(ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        let mut ids: Vec<SpiffeId> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        Self {
            rule: Rule::OneOf(ids.into_boxed_slice()),
        }
    }

    /// Matches every ID whose trust domain is exactly `trust_domain`,
    /// including the trust domain's root ID `spiffe://<trust domain>`.
    ///
    /// Names must be equal in full: `example.org` does not cover
    /// `sub.example.org` or `example.org.evil`. Use the pattern
    /// `spiffe://<trust domain>/**` to exclude the root ID.
    #[must_use]
    pub fn trust_domain(trust_domain: TrustDomain) -> Self {
        Self {
            rule: Rule::TrustDomain(trust_domain),
        }
    }

    /// Compiles a pattern such as `spiffe://example.org/ns/*/sa/**`.
    ///
    /// * The trust domain is literal and must be equal in full.
    /// * `*` as a whole segment matches exactly one segment.
    /// * `**` as the last segment matches one or more segments, so it never
    ///   matches the parent itself: `spiffe://td/**` matches every ID of `td`
    ///   except the root ID `spiffe://td`.
    /// * Any other segment is literal, case-sensitive, and must follow the
    ///   ID rules for segments.
    ///
    /// A pattern without wildcards is the same as [`IdMatcher::exact`] of the
    /// ID it spells. Patterns obey the ID length limits
    /// ([`MAX_ID_LEN`](crate::id::MAX_ID_LEN) overall).
    ///
    /// # Errors
    ///
    /// A [`PatternError`] naming the rule the pattern breaks.
    pub fn pattern(pattern: &str) -> Result<Self, PatternError> {
        let (trust_domain, segments) = compile_pattern(pattern)?;
        if segments.is_literal() {
            return Ok(Self::exact(SpiffeId::new(pattern)?));
        }
        Ok(Self {
            rule: Rule::Pattern(Pattern {
                trust_domain,
                segments,
            }),
        })
    }

    /// Matches an ID that at least one of `matchers` matches. An empty list
    /// matches nothing.
    #[must_use]
    pub fn any_of(matchers: impl IntoIterator<Item = IdMatcher>) -> Self {
        Self {
            rule: Rule::AnyOf(matchers.into_iter().collect()),
        }
    }

    /// Matches an ID that every one of `matchers` matches.
    ///
    /// An empty list matches nothing: this fails closed rather than
    /// following the logical convention that an empty conjunction is true,
    /// so a policy whose list ended up empty cannot silently allow everyone.
    #[must_use]
    pub fn all_of(matchers: impl IntoIterator<Item = IdMatcher>) -> Self {
        Self {
            rule: Rule::AllOf(matchers.into_iter().collect()),
        }
    }

    /// Matches exactly the IDs `matcher` does not match.
    ///
    /// On its own this accepts IDs from every other trust domain as well;
    /// to carve out exceptions, combine it with a positive rule, e.g.
    /// `all_of([trust_domain(td), not(exact(id))])`.
    #[must_use]
    #[allow(
        clippy::should_implement_trait,
        reason = "a constructor that wraps the matcher to negate, not an operator"
    )]
    pub fn not(matcher: IdMatcher) -> Self {
        Self {
            rule: Rule::Not(Box::new(matcher)),
        }
    }

    /// Whether `id` is accepted. Never allocates.
    #[must_use]
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match &self.rule {
            Rule::Any => true,
            Rule::Exact(expected) => expected == id,
            Rule::OneOf(ids) => ids.binary_search(id).is_ok(),
            Rule::TrustDomain(trust_domain) => id.is_member_of(trust_domain),
            Rule::Pattern(pattern) => pattern.matches(id),
            Rule::AnyOf(matchers) => matchers.iter().any(|m| m.matches(id)),
            Rule::AllOf(matchers) => !matchers.is_empty() && matchers.iter().all(|m| m.matches(id)),
            Rule::Not(matcher) => !matcher.matches(id),
        }
    }
}

impl Pattern {
    fn matches(&self, id: &SpiffeId) -> bool {
        id.is_member_of(&self.trust_domain) && self.segments.matches(id.path().strip_prefix('/'))
    }
}

/// Compiles an ID pattern into its trust domain and segments: the one parser of
/// ID patterns, for [`IdMatcher::pattern`] and the policy's `patterns`.
pub(crate) fn compile_pattern(pattern: &str) -> Result<(TrustDomain, Segments), PatternError> {
    let (trust_domain, path) = match split_trust_domain(pattern) {
        Ok(parts) => parts,
        Err(IdError::BadTrustDomainChar) if trust_domain_has_wildcard(pattern) => {
            return Err(PatternError::WildcardInTrustDomain);
        }
        Err(err) => return Err(err.into()),
    };
    let segments = match path.strip_prefix('/') {
        Some(rest) => Some(rest),
        None if path.is_empty() => None,
        None => return Err(IdError::NoLeadingSlash.into()),
    };
    let segments = Segments::compile(segments, |part, last| match part {
        "" if last => Err(IdError::TrailingSlash),
        "" => Err(IdError::EmptySegment),
        _ => validate_segment(part).map(|()| part.into()),
    })
    .map_err(|err| match err {
        SyntaxError::RestNotLast => PatternError::RecursiveWildcardNotLast,
        SyntaxError::PartialWildcard => PatternError::PartialWildcard,
        SyntaxError::Literal(err) => PatternError::Id(err),
    })?;
    Ok((TrustDomain::new(trust_domain)?, segments))
}

/// Whether the part between the scheme and the first `/` contains `*`, to
/// tell a wildcard attempt apart from an ordinary bad character.
fn trust_domain_has_wildcard(pattern: &str) -> bool {
    pattern.strip_prefix(SCHEME_PREFIX).is_some_and(|rest| {
        rest.split_once('/')
            .map_or(rest, |(trust_domain, _)| trust_domain)
            .contains('*')
    })
}

impl FromStr for IdMatcher {
    type Err = PatternError;

    /// Same as [`IdMatcher::pattern`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::pattern(s)
    }
}

impl fmt::Display for IdMatcher {
    /// Writes a one-line summary, e.g. `spiffe://td/ns/*/sa/**`,
    /// `trust domain example.org`, `any of [..]`, `not (..)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Any => f.write_str("any spiffe id"),
            Rule::Exact(id) => f.write_str(id.as_str()),
            Rule::OneOf(ids) => {
                f.write_str("one of [")?;
                write_list(f, ids.iter().take(DISPLAYED_IDS))?;
                let hidden = ids.len().saturating_sub(DISPLAYED_IDS);
                if hidden > 0 {
                    write!(f, ", ... ({hidden} more)")?;
                }
                f.write_str("]")
            }
            Rule::TrustDomain(trust_domain) => write!(f, "trust domain {trust_domain}"),
            Rule::Pattern(pattern) => fmt::Display::fmt(pattern, f),
            Rule::AnyOf(matchers) => {
                f.write_str("any of [")?;
                write_list(f, matchers.iter())?;
                f.write_str("]")
            }
            Rule::AllOf(matchers) => {
                f.write_str("all of [")?;
                write_list(f, matchers.iter())?;
                f.write_str("]")
            }
            Rule::Not(matcher) => write!(f, "not ({matcher})"),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME_PREFIX}{}{}", self.trust_domain, self.segments)
    }
}

fn write_list<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: impl Iterator<Item = T>,
) -> fmt::Result {
    for (i, item) in items.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Debug for IdMatcher {
    /// The `Display` summary, which is more useful in logs than the
    /// internal structure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdMatcher")
            .field(&format_args!("{self}"))
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_free_pattern_compiles_to_exact() {
        let matcher = IdMatcher::pattern("spiffe://example.org/a/b").unwrap();
        assert!(matches!(matcher.rule, Rule::Exact(_)));
    }

    #[test]
    fn root_pattern_compiles_to_exact_root_id() {
        let matcher = IdMatcher::pattern("spiffe://example.org").unwrap();
        assert!(matches!(&matcher.rule, Rule::Exact(id) if id.is_root()));
    }

    #[test]
    fn wildcard_pattern_compiles_to_segments() {
        let matcher = IdMatcher::pattern("spiffe://example.org/ns/*/sa/**").unwrap();
        let Rule::Pattern(pattern) = &matcher.rule else {
            panic!("expected a compiled pattern, got {matcher:?}");
        };
        assert_eq!(pattern.trust_domain.as_str(), "example.org");
        assert!(!pattern.segments.is_literal());
        assert_eq!(pattern.segments.to_string(), "/ns/*/sa/**");
    }

    #[test]
    fn one_of_is_sorted_and_deduplicated() {
        let a = SpiffeId::new("spiffe://example.org/a").unwrap();
        let b = SpiffeId::new("spiffe://example.org/b").unwrap();
        let matcher = IdMatcher::one_of([b.clone(), a.clone(), b.clone()]);
        let Rule::OneOf(ids) = &matcher.rule else {
            panic!("expected one_of, got {matcher:?}");
        };
        assert_eq!(&**ids, [a, b]);
    }

    #[test]
    fn pattern_errors_name_the_broken_rule() {
        let err = |p: &str| compile_pattern(p).unwrap_err();
        assert_eq!(
            err("spiffe://example.org/a/"),
            PatternError::Id(IdError::TrailingSlash)
        );
        assert_eq!(
            err("spiffe://example.org/a//b"),
            PatternError::Id(IdError::EmptySegment)
        );
        assert_eq!(
            err("spiffe://example.org/**/a"),
            PatternError::RecursiveWildcardNotLast
        );
        assert_eq!(
            err("spiffe://example.org/a*"),
            PatternError::PartialWildcard
        );
        assert_eq!(
            err("spiffe://*.example.org/a"),
            PatternError::WildcardInTrustDomain
        );
        assert_eq!(
            err("spiffe://example.org/a b/*"),
            PatternError::Id(IdError::BadPathSegmentChar)
        );
    }
}
