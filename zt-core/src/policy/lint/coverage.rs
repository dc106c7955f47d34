//! Coverage: whether one rule matches every request another matches, field by
//! field (`from` through `peers`), and the index that finds the candidate
//! covering rules without comparing every pair.

use std::collections::HashMap;

use super::dead::{live_values, path_excluded};
use super::peers::{Peers, from_covers, peers};
use super::shapes::{Call, ValueShape};
use crate::id::{SpiffeId, TrustDomain};
use crate::policy::model::{Action, Condition, NonEmpty, Rule, To};
use crate::policy::pattern::{Domain, GrpcPattern, Id, ValuePattern};
use crate::policy::request::Upgrade;
use crate::segments::Segments;

/// Whether `cover` matches every request `rule` matches, from every verified
/// peer and from anonymous peers. `rule` is what an ambiguous request is held
/// against: when `cover` is an `allow` rule, ambiguity makes it unmet, so it
/// must not depend on anything `rule` can leave ambiguous.
pub(super) fn covers(cover: &Rule, rule: &Rule) -> bool {
    let strict = cover.action == Action::Allow;
    (!rule.matches_anonymous() || cover.matches_anonymous())
        && from_covers(cover.from.as_ref(), rule.from.as_ref())
        && to_covers(cover.to.as_ref(), rule.to.as_ref(), strict)
        && upgrades_cover(cover, rule)
        && when_covers(&cover.when, &rule.when)
}

/// Whether `cover` matches every upgrade `rule` matches, and plain requests if
/// `rule` matches them (see `Rule::admits`).
fn upgrades_cover(cover: &Rule, rule: &Rule) -> bool {
    let (cover_plain, cover_upgrades) = upgrades_matched(cover);
    let (plain, upgrades) = upgrades_matched(rule);
    (cover_plain || !plain) && upgrades.iter().all(|u| cover_upgrades.contains(u))
}

/// Whether a rule matches requests without an upgrade, and which upgrades it
/// matches.
fn upgrades_matched(rule: &Rule) -> (bool, Vec<Upgrade>) {
    match rule.to.as_ref().and_then(|to| to.upgrades.as_deref()) {
        Some(names) => (false, names.iter().map(|name| name.0).collect()),
        None if rule.action == Action::Allow => (true, Vec::new()),
        None => (true, Upgrade::ALL.to_vec()),
    }
}

pub(super) fn has_path_conditions(to: &To) -> bool {
    to.paths.is_some() || to.not_paths.is_some()
}

pub(super) fn to_covers(cover: Option<&To>, to: Option<&To>, strict: bool) -> bool {
    let Some(cover) = cover else {
        return true;
    };
    let Some(to) = to else {
        return false;
    };
    // An allow rule with path or gRPC conditions is unmet on an ambiguous path,
    // and one with host conditions on a request without a host, which a rule
    // without them still matches.
    let path_bound = |t: &To| t.has_paths() || t.has_grpc();
    if strict && ((path_bound(cover) && !path_bound(to)) || (cover.has_hosts() && !to.has_hosts()))
    {
        return false;
    }
    // Host lists are only compared for equality: lint proves, never guesses.
    if cover.has_hosts() && !same_hosts(cover, to) {
        return false;
    }
    // A `to` without gRPC conditions can match paths of any shape; `paths_cover`
    // treats a `to` without path conditions as matching every path.
    if cover.has_grpc() && !(to.has_grpc() && grpc_covers(cover, to)) {
        return false;
    }
    Methods::of(to).within(&Methods::of(cover)) && paths_cover(cover, to)
}

pub(super) fn same_hosts(a: &To, b: &To) -> bool {
    let raw = |list: &Option<NonEmpty<crate::policy::pattern::HostPattern>>| {
        let mut raw: Vec<String> = list
            .iter()
            .flat_map(|l| l.iter())
            .map(|h| h.raw.to_ascii_lowercase())
            .collect();
        raw.sort_unstable();
        raw
    };
    raw(&a.hosts) == raw(&b.hosts) && raw(&a.not_hosts) == raw(&b.not_hosts)
}

/// The methods an HTTP `to` allows: a finite set, or all but a finite set.
pub(super) enum Methods<'a> {
    Only(Vec<&'a str>),
    AllBut(Vec<&'a str>),
}

impl<'a> Methods<'a> {
    /// A rule that names `GET` covers `HEAD` too, in both fields.
    pub(super) fn of(to: &'a To) -> Self {
        let expand = |list: &'a Option<NonEmpty<crate::policy::pattern::Method>>| {
            let mut names: Vec<&'a str> =
                list.iter().flat_map(|m| m.iter()).map(|m| &*m.0).collect();
            if names.contains(&"GET") && !names.contains(&"HEAD") {
                names.push("HEAD");
            }
            names
        };
        let not = expand(&to.not_methods);
        match &to.methods {
            Some(_) => Self::Only(
                expand(&to.methods)
                    .into_iter()
                    .filter(|m| !not.contains(m))
                    .collect(),
            ),
            None => Self::AllBut(not),
        }
    }

    pub(super) fn within(&self, outer: &Self) -> bool {
        match (self, outer) {
            (Self::Only(a), Self::Only(b)) => a.iter().all(|m| b.contains(m)),
            (Self::Only(a), Self::AllBut(b)) => a.iter().all(|m| !b.contains(m)),
            (Self::AllBut(_), Self::Only(_)) => false,
            (Self::AllBut(a), Self::AllBut(b)) => b.iter().all(|m| a.contains(m)),
        }
    }
}

pub(super) fn paths_cover(cover: &To, to: &To) -> bool {
    if !has_path_conditions(cover) {
        return true;
    }
    let live: Option<Vec<&Segments>> = to.paths.as_ref().map(|paths| {
        paths
            .iter()
            .filter(|p| path_excluded(to, p).is_none())
            .map(|p| &p.segments)
            .collect()
    });
    if let Some(outer) = &cover.paths {
        let inside = |segments: &Segments| outer.iter().any(|o| segments.within(&o.segments));
        let covered = match &live {
            Some(live) => live.iter().all(|p| inside(p)),
            None => inside(&Segments::everything()),
        };
        if !covered {
            return false;
        }
    }
    cover.not_paths.iter().flat_map(|n| n.iter()).all(|n| {
        to.not_paths
            .iter()
            .flat_map(|m| m.iter())
            .any(|m| n.segments.within(&m.segments))
            || live
                .as_ref()
                .is_some_and(|live| live.iter().all(|p| p.disjoint(&n.segments)))
    })
}

pub(super) fn grpc_covers(cover: &To, to: &To) -> bool {
    let excluded = |p: &GrpcPattern| {
        to.not_grpc
            .iter()
            .flat_map(|n| n.iter())
            .any(|n| Call::of(p).within(Call::of(n)))
    };
    let live: Option<Vec<Call<'_>>> = to.grpc.as_ref().map(|calls| {
        calls
            .iter()
            .filter(|p| !excluded(p))
            .map(Call::of)
            .collect()
    });
    if let Some(outer) = &cover.grpc {
        let covered = live.as_ref().is_some_and(|live| {
            live.iter()
                .all(|call| outer.iter().any(|o| call.within(Call::of(o))))
        });
        if !covered {
            return false;
        }
    }
    cover.not_grpc.iter().flat_map(|n| n.iter()).all(|n| {
        let n = Call::of(n);
        to.not_grpc
            .iter()
            .flat_map(|m| m.iter())
            .any(|m| n.within(Call::of(m)))
            || live
                .as_ref()
                .is_some_and(|live| live.iter().all(|call| call.disjoint(n)))
    })
}

/// Every condition of `cover` must follow from one condition of `when` on the
/// same header, whose ambiguity (a repeated header) then leaves the rule of
/// `when` unmet or `cover` met.
pub(super) fn when_covers(cover: &[Condition], when: &[Condition]) -> bool {
    cover.iter().all(|outer| {
        when.iter()
            .any(|inner| inner.header == outer.header && condition_within(inner, outer))
    })
}

/// Whether every header state meeting `inner` meets `outer`.
pub(super) fn condition_within(inner: &Condition, outer: &Condition) -> bool {
    // Conditions on list members are only compared for equality: one member
    // may meet `inner` while another meets `outer`'s `not_values`.
    if inner.members || outer.members {
        fn raw(list: &Option<NonEmpty<ValuePattern>>) -> Vec<&str> {
            let mut raw: Vec<&str> = list
                .iter()
                .flat_map(|l| l.iter())
                .map(|v| &*v.raw)
                .collect();
            raw.sort_unstable();
            raw
        }
        return inner.members == outer.members
            && raw(&inner.values) == raw(&outer.values)
            && raw(&inner.not_values) == raw(&outer.not_values);
    }
    // An absent header meets a condition exactly when it has no `values`.
    if inner.values.is_none() && outer.values.is_some() {
        return false;
    }
    let live = live_values(inner);
    if let Some(values) = &outer.values {
        let outer: Vec<ValueShape<'_>> = values.iter().map(ValueShape::of).collect();
        let inside = |v: &ValueShape<'_>| outer.iter().any(|o| v.within(*o));
        let covered = match &live {
            Some(live) => live.iter().all(inside),
            None => inside(&ValueShape::Any),
        };
        if !covered {
            return false;
        }
    }
    outer.not_values.iter().flat_map(|n| n.iter()).all(|n| {
        let n = ValueShape::of(n);
        inner
            .not_values
            .iter()
            .flat_map(|m| m.iter())
            .any(|m| n.within(ValueShape::of(m)))
            || live
                .as_ref()
                .is_some_and(|live| live.iter().all(|v| v.disjoint(n)))
    })
}

/// Narrows the rules that could cover a rule to those whose positive `from`
/// fields can include its peers, so linting is not quadratic in the number of
/// rules for policies that name their peers.
pub(super) struct CoverIndex<'a> {
    by_id: HashMap<&'a SpiffeId, Vec<usize>>,
    by_trust_domain: HashMap<&'a TrustDomain, Vec<usize>>,
    any_peer: Vec<usize>,
}

impl<'a> CoverIndex<'a> {
    pub(super) fn new(rules: &'a [Rule]) -> Self {
        let mut index = Self {
            by_id: HashMap::new(),
            by_trust_domain: HashMap::new(),
            any_peer: Vec::new(),
        };
        for (i, rule) in rules.iter().enumerate() {
            let from = rule.from.as_ref();
            if let Some(ids) = from.and_then(|f| f.ids.as_ref()) {
                for Id(id) in ids.iter() {
                    index.by_id.entry(id).or_default().push(i);
                }
            } else if let Some(patterns) = from.and_then(|f| f.patterns.as_ref()) {
                for pattern in patterns.iter() {
                    push_once(
                        index
                            .by_trust_domain
                            .entry(&pattern.trust_domain)
                            .or_default(),
                        i,
                    );
                }
            } else if let Some(domains) = from.and_then(|f| f.trust_domains.as_ref()) {
                for Domain(td) in domains.iter() {
                    push_once(index.by_trust_domain.entry(td).or_default(), i);
                }
            } else {
                index.any_peer.push(i);
            }
        }
        index
    }

    /// The rules that may cover `rule`, in increasing order.
    pub(super) fn candidates(&self, rule: &Rule) -> impl Iterator<Item = usize> {
        let mut found = self.any_peer.clone();
        let none = Vec::new();
        let (id, td) = match peers(rule.from.as_ref()) {
            Peers::Ids(ids) => match ids.first() {
                Some(id) => (
                    self.by_id.get(id).unwrap_or(&none),
                    self.by_trust_domain.get(id.trust_domain()).unwrap_or(&none),
                ),
                None => (&none, &none),
            },
            Peers::Regions(regions) => (
                &none,
                regions
                    .first()
                    .and_then(|r| self.by_trust_domain.get(r.trust_domain()))
                    .unwrap_or(&none),
            ),
            Peers::Any => (&none, &none),
        };
        found.extend_from_slice(id);
        found.extend_from_slice(td);
        found.sort_unstable();
        found.dedup();
        found.into_iter()
    }
}

pub(super) fn push_once(list: &mut Vec<usize>, index: usize) {
    if list.last() != Some(&index) {
        list.push(index);
    }
}
