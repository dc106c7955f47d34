//! The peers a rule's `from` can match, as IDs or regions (a trust domain, a
//! pattern's segments), and whether one `from` covers another.

use super::dead::pattern_excluded;
use crate::id::{SpiffeId, TrustDomain};
use crate::policy::model::From;
use crate::policy::pattern::{Domain, Id, IdPattern};
use crate::segments::Segments;

/// The peers a `from` can match, over-approximated where it is not a finite
/// list of IDs.
pub(super) enum Peers<'a> {
    /// Exactly these IDs (those the `from` matches).
    Ids(Vec<SpiffeId>),
    /// At most the IDs of these regions.
    Regions(Vec<Region<'a>>),
    /// Any peer.
    Any,
}

/// A set of non-root IDs in one trust domain.
pub(super) enum Region<'a> {
    /// Every workload of the trust domain.
    Domain(&'a TrustDomain),
    Pattern(&'a TrustDomain, &'a Segments),
}

impl Region<'_> {
    pub(super) fn trust_domain(&self) -> &TrustDomain {
        match self {
            Self::Domain(td) | Self::Pattern(td, _) => td,
        }
    }

    pub(super) fn within(&self, pattern: &IdPattern) -> bool {
        if self.trust_domain() != &pattern.trust_domain {
            return false;
        }
        match self {
            Self::Domain(_) => pattern.segments.is_everything(),
            Self::Pattern(_, segments) => segments.within(&pattern.segments),
        }
    }

    pub(super) fn disjoint(&self, pattern: &IdPattern) -> bool {
        if self.trust_domain() != &pattern.trust_domain {
            return true;
        }
        match self {
            Self::Domain(_) => false,
            Self::Pattern(_, segments) => segments.disjoint(&pattern.segments),
        }
    }
}

pub(super) fn peers(from: Option<&From>) -> Peers<'_> {
    let Some(from) = from else {
        return Peers::Any;
    };
    if from.unauthenticated.is_some() {
        // Anonymous peers alone: no verified peer.
        return Peers::Ids(Vec::new());
    }
    if let Some(ids) = &from.ids {
        // Validation guarantees that every listed ID passes the other fields.
        return Peers::Ids(ids.iter().map(|Id(id)| id.clone()).collect());
    }
    if let Some(patterns) = &from.patterns {
        let literals: Option<Vec<SpiffeId>> = patterns.iter().map(IdPattern::as_id).collect();
        if let Some(literals) = literals {
            return Peers::Ids(
                literals
                    .into_iter()
                    .filter(|id| from_matches(Some(from), id))
                    .collect(),
            );
        }
        return Peers::Regions(
            patterns
                .iter()
                .filter(|p| pattern_excluded(from, p).is_none())
                .map(|p| Region::Pattern(&p.trust_domain, &p.segments))
                .collect(),
        );
    }
    if let Some(domains) = &from.trust_domains {
        return Peers::Regions(
            domains
                .iter()
                .map(|Domain(td)| Region::Domain(td))
                .collect(),
        );
    }
    Peers::Any
}

/// Whether `from` (none: every peer) matches a verified peer with ID `id`.
pub(super) fn from_matches(from: Option<&From>, id: &SpiffeId) -> bool {
    from.is_none_or(|from| from.matches(id))
}

/// Whether `cover` matches every verified peer `from` matches (anonymous
/// peers are compared by `covers`, which knows the rules' actions).
pub(super) fn from_covers(cover: Option<&From>, from: Option<&From>) -> bool {
    let Some(cover) = cover else {
        return true;
    };
    // Whether a request carries a token, and whose, is known per request only:
    // a rule that asks for one covers nothing for sure. (A `jwt` in `from` only
    // narrows it, so it needs no care there.)
    if cover.jwt.is_some() {
        return false;
    }
    if cover.unauthenticated.is_some() {
        // `cover` matches no verified peer: it covers only a `from` that matches none.
        return matches!(peers(from), Peers::Ids(ids) if ids.is_empty());
    }
    let regions = match peers(from) {
        Peers::Ids(ids) => return ids.iter().all(|id| from_matches(Some(cover), id)),
        Peers::Regions(regions) => Some(regions),
        Peers::Any => None,
    };
    if cover.ids.is_some() {
        return false;
    }
    if let Some(domains) = &cover.trust_domains {
        let within = |r: &Region<'_>| domains.iter().any(|Domain(td)| td == r.trust_domain());
        if !regions.as_ref().is_some_and(|rs| rs.iter().all(within)) {
            return false;
        }
    }
    if let Some(patterns) = &cover.patterns {
        let within = |r: &Region<'_>| patterns.iter().any(|p| r.within(p));
        if !regions.as_ref().is_some_and(|rs| rs.iter().all(within)) {
            return false;
        }
    }
    // Every exclusion of `cover` must leave the peers of `from` alone.
    let excludes_domain = |td: &TrustDomain| {
        from.and_then(|f| f.not_trust_domains.as_ref())
            .is_some_and(|n| n.iter().any(|Domain(t)| t == td))
    };
    if let Some(not_ids) = &cover.not_ids
        && not_ids.iter().any(|Id(id)| from_matches(from, id))
    {
        return false;
    }
    if let Some(not_domains) = &cover.not_trust_domains {
        let untouched = |td: &TrustDomain| {
            excludes_domain(td)
                || regions
                    .as_ref()
                    .is_some_and(|rs| rs.iter().all(|r| r.trust_domain() != td))
        };
        if !not_domains.iter().all(|Domain(td)| untouched(td)) {
            return false;
        }
    }
    if let Some(not_patterns) = &cover.not_patterns {
        let untouched = |n: &IdPattern| {
            excludes_domain(&n.trust_domain)
                || from
                    .and_then(|f| f.not_patterns.as_ref())
                    .is_some_and(|ms| {
                        ms.iter().any(|m| {
                            m.trust_domain == n.trust_domain && n.segments.within(&m.segments)
                        })
                    })
                || regions
                    .as_ref()
                    .is_some_and(|rs| rs.iter().all(|r| r.disjoint(n)))
                || n.as_id().is_some_and(|id| !from_matches(from, &id))
        };
        if !not_patterns.iter().all(untouched) {
            return false;
        }
    }
    true
}
