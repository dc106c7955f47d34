//! The values a policy document holds — rule names, ID patterns, HTTP methods,
//! path patterns, gRPC names, header names and header value patterns — each
//! parsed and validated from a string, and matched against requests.
//!
//! The values of `to` and `when` (methods, paths, hosts, gRPC names, headers)
//! are in [`http`].
//!
//! Each type deserializes from a string through its `FromStr`, so a bad value
//! is reported by the format's parser at the value's own location.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::Arc;

use serde::de;

use crate::id::{SpiffeId, TrustDomain};
use crate::matcher::PatternError;
use crate::matcher::compile_pattern;
use crate::segments::{Segments, split_segment};

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

/// An ID pattern (`*` one segment, `**` the rest), compiled by the same parser
/// as [`IdMatcher::pattern`](crate::IdMatcher::pattern), so patterns mean exactly
/// what they mean everywhere else in zt.
#[derive(Clone, Debug)]
pub(crate) struct IdPattern {
    pub(crate) raw: Box<str>,
    pub(crate) trust_domain: TrustDomain,
    pub(crate) segments: Segments,
}

impl IdPattern {
    pub(crate) fn new(s: &str) -> Result<Self, PatternError> {
        let (trust_domain, segments) = compile_pattern(s)?;
        Ok(Self {
            raw: s.into(),
            trust_domain,
            segments,
        })
    }

    /// Same as the [`IdMatcher`](crate::IdMatcher) of the pattern.
    pub(crate) fn matches(&self, id: &SpiffeId) -> bool {
        id.trust_domain() == &self.trust_domain
            && self.segments.matches(id.path().strip_prefix('/'))
    }

    /// The first path segment when it is literal, for indexes.
    pub(crate) fn first_segment(&self) -> Option<&str> {
        self.segments.first_literal()
    }

    /// The one ID a pattern without wildcards names.
    pub(crate) fn as_id(&self) -> Option<SpiffeId> {
        if !self.segments.is_literal() {
            return None;
        }
        SpiffeId::new(&self.raw).ok()
    }
}

/// A list of ID patterns, indexed so that matching an ID looks at the few
/// patterns that can match it, not at every one: wildcard-free patterns by exact
/// ID, the others by trust domain and literal first segment. A rule with 100,000
/// `not_patterns` costs a hash lookup per decision, not 100,000 comparisons.
#[derive(Debug, Default)]
pub(crate) struct PatternIndex {
    exact: std::collections::HashSet<SpiffeId>,
    by_segment: std::collections::HashMap<(TrustDomain, Box<str>), Vec<IdPattern>>,
    general: std::collections::HashMap<TrustDomain, Vec<IdPattern>>,
}

impl PatternIndex {
    pub(crate) fn new(patterns: &[IdPattern]) -> Self {
        let mut index = Self::default();
        for pattern in patterns {
            if let Some(id) = pattern.as_id() {
                index.exact.insert(id);
            } else if let Some(segment) = pattern.first_segment() {
                index
                    .by_segment
                    .entry((pattern.trust_domain.clone(), Box::from(segment)))
                    .or_default()
                    .push(pattern.clone());
            } else {
                index
                    .general
                    .entry(pattern.trust_domain.clone())
                    .or_default()
                    .push(pattern.clone());
            }
        }
        index
    }

    /// Whether any pattern of the list matches `id`.
    pub(crate) fn matches(&self, id: &SpiffeId) -> bool {
        if self.exact.contains(id) {
            return true;
        }
        let td = id.trust_domain();
        if let Some(general) = self.general.get(td)
            && general.iter().any(|p| p.matches(id))
        {
            return true;
        }
        if self.by_segment.is_empty() {
            return false;
        }
        let Some(first) = id.path().strip_prefix('/').map(|p| split_segment(p).0) else {
            return false;
        };
        self.by_segment
            .get(&(td.clone(), Box::from(first)))
            .is_some_and(|bucket| bucket.iter().any(|p| p.matches(id)))
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

mod http;

pub(crate) use http::{
    GrpcPattern, HeaderName, HostPattern, Method, PathPattern, UpgradeName, ValuePattern,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::IdMatcher;

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
}
