//! The compiled policy: rules indexed so that a decision looks at the few
//! rules that can apply to the peer, not at every rule.
//!
//! A rule goes into exactly one kind of bucket, by its most selective
//! positive `from` field:
//!
//! 1. `ids`: one bucket per listed ID (`by_id`);
//! 2. else `patterns`: per trust domain, one bucket per literal first path
//!    segment, or the trust domain's general bucket when the pattern starts
//!    with a wildcard (`by_trust_domain`);
//! 3. else `trust_domains`: the general bucket of each listed trust domain;
//! 4. else (no `from`, `any: true`, or only `not_*` fields): `any_peer`;
//!    rules for anonymous peers alone (`unauthenticated: true`) go in none.
//!
//! Anonymous peers (no client certificate) have no ID to look up: their
//! decisions look only at the rules that can match them (`anonymous`, see
//! `Rule::matches_anonymous`).
//!
//! Which trust-domain buckets apply to a peer depends on its ID alone, so each
//! ID bucket also holds the rules of its trust domain's buckets, as long as
//! those are few ([`MERGE_LIMIT`]): a peer named in the policy then costs one
//! lookup. Other peers cost up to two (trust domain, first segment). The
//! any-peer rules apply to everyone.
//!
//! Every rule found is then matched in full, so the index only ever narrows
//! the search and can never make a rule match that would not.
//!
//! What the index finds for a peer, and which of those rules' `from` match it,
//! depend on the peer's ID alone. [`Engine::select`] keeps that result, a
//! [`Selection`], for a connection's peer, and [`Engine::decide_selected`] then
//! matches only `to` and `when` for each of its requests: the same rules in the
//! same order, so the same outcome as [`Engine::decide`].
//!
//! The maps hash with foldhash rather than SipHash: their keys come from the
//! policy, and the lookup keys from peer SVIDs that a trusted CA issued, so
//! neither side is chosen freely by an attacker, and hashing is most of the
//! cost of a decision.

use std::collections::HashMap;
use std::sync::Arc;

use super::model::{Action, Rule};
use super::request::{RequestView, Tri};
use super::{Request, Verdict};
use crate::id::{SpiffeId, TrustDomain};
use crate::segments::split_segment;

/// The most rules a [`Selection`] holds. It lives as long as its connection,
/// so a peer whose `from` matches more rules than this (many `any` or
/// trust-domain rules) is decided from the index instead: 512 bytes at most per
/// connection.
const SELECTION_LIMIT: usize = 64;

/// How many rules of an ID's trust-domain buckets are copied into its ID
/// bucket; beyond this, the copies would cost more memory than the second
/// lookup costs time.
const MERGE_LIMIT: usize = 64;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub(crate) struct Engine {
    rules: Box<[Rule]>,
    by_id: Map<SpiffeId, IdBucket>,
    by_trust_domain: Map<TrustDomain, DomainBuckets>,
    any_peer: Box<[usize]>,
    /// The rules that can match an anonymous peer, in policy order.
    anonymous: Box<[usize]>,
}

struct IdBucket {
    /// Sorted rule indices.
    rules: Box<[usize]>,
    /// Whether `rules` includes the rules of the ID's trust-domain buckets.
    complete: bool,
}

#[derive(Default)]
struct DomainBuckets {
    general: Box<[usize]>,
    by_first_segment: Map<Box<str>, Box<[usize]>>,
}

impl DomainBuckets {
    /// The rules of the buckets that apply to `id`, a member of this domain.
    fn for_id<'a>(&'a self, id: &SpiffeId) -> (&'a [usize], &'a [usize]) {
        let segment = if self.by_first_segment.is_empty() {
            None
        } else {
            id.path()
                .strip_prefix('/')
                .map(|path| split_segment(path).0)
                .and_then(|segment| self.by_first_segment.get(segment))
        };
        (&self.general, segment.map_or(&[][..], |bucket| &bucket[..]))
    }
}

pub(crate) struct Outcome {
    pub(crate) verdict: Verdict,
    pub(crate) rule: Option<Arc<str>>,
    pub(crate) audit: Vec<Arc<str>>,
}

// === impl Engine ===

impl Engine {
    pub(crate) fn empty() -> Self {
        Self::compile(Vec::new())
    }

    pub(crate) fn compile(rules: Vec<Rule>) -> Self {
        let mut by_id: Map<SpiffeId, Vec<usize>> = Map::default();
        let mut general: Map<TrustDomain, Vec<usize>> = Map::default();
        let mut by_segment: Map<TrustDomain, Map<Box<str>, Vec<usize>>> = Map::default();
        let mut any_peer = Vec::new();

        for (index, rule) in rules.iter().enumerate() {
            let from = rule.from.as_ref();
            if let Some(ids) = from.and_then(|f| f.ids.as_ref()) {
                for id in ids.iter() {
                    push_once(by_id.entry(id.0.clone()).or_default(), index);
                }
            } else if let Some(patterns) = from.and_then(|f| f.patterns.as_ref()) {
                // A rule whose patterns in a trust domain include one that
                // starts with a wildcard goes only in that domain's general
                // bucket, so no decision ever meets it twice.
                let mut wild: Vec<&TrustDomain> = Vec::new();
                for pattern in patterns.iter() {
                    if pattern.first_segment().is_none() {
                        wild.push(&pattern.trust_domain);
                    }
                }
                for pattern in patterns.iter() {
                    let td = &pattern.trust_domain;
                    match pattern.first_segment() {
                        Some(segment) if !wild.contains(&td) => push_once(
                            by_segment
                                .entry(td.clone())
                                .or_default()
                                .entry(Box::from(segment))
                                .or_default(),
                            index,
                        ),
                        _ => push_once(general.entry(td.clone()).or_default(), index),
                    }
                }
            } else if let Some(tds) = from.and_then(|f| f.trust_domains.as_ref()) {
                for td in tds.iter() {
                    push_once(general.entry(td.0.clone()).or_default(), index);
                }
            } else if from.is_none_or(|f| f.unauthenticated.is_none()) {
                any_peer.push(index);
            }
        }
        let anonymous = rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.matches_anonymous())
            .map(|(index, _)| index)
            .collect();

        let mut by_trust_domain: Map<TrustDomain, DomainBuckets> = Map::default();
        for (td, list) in general {
            by_trust_domain.entry(td).or_default().general = list.into_boxed_slice();
        }
        for (td, segments) in by_segment {
            by_trust_domain.entry(td).or_default().by_first_segment = segments
                .into_iter()
                .map(|(segment, list)| (segment, list.into_boxed_slice()))
                .collect();
        }
        let by_id = by_id
            .into_iter()
            .map(|(id, mut list)| {
                let (general, segment) = by_trust_domain
                    .get(id.trust_domain())
                    .map_or((&[][..], &[][..]), |domain| domain.for_id(&id));
                let complete = general.len().saturating_add(segment.len()) <= MERGE_LIMIT;
                if complete && !(general.is_empty() && segment.is_empty()) {
                    list.extend_from_slice(general);
                    list.extend_from_slice(segment);
                    list.sort_unstable();
                    list.dedup();
                }
                let bucket = IdBucket {
                    rules: list.into_boxed_slice(),
                    complete,
                };
                (id, bucket)
            })
            .collect();
        Self {
            rules: rules.into_boxed_slice(),
            by_id,
            by_trust_domain,
            any_peer: any_peer.into_boxed_slice(),
            anonymous,
        }
    }

    pub(crate) fn decide(&self, peer: &SpiffeId, request: &Request<'_>) -> Outcome {
        let mut eval = Evaluation::new(&self.rules, Subject::Peer(peer), request);
        self.candidates(peer, |bucket, id_known| eval.run(bucket, id_known));
        eval.finish()
    }

    /// The rules whose `from` matches `peer`, in policy order: what
    /// [`decide`](Self::decide) keeps of the index's candidates before it looks
    /// at the request. Depends on the peer's ID and this engine alone. `None`
    /// when they are more than [`SELECTION_LIMIT`].
    pub(crate) fn select(&self, peer: &SpiffeId) -> Option<Selection> {
        let mut selected = Vec::new();
        self.candidates(peer, |bucket, id_known| {
            selected.extend(bucket.iter().copied().filter(|&index| {
                self.rules
                    .get(index)
                    .is_some_and(|rule| from_matches(rule, peer, id_known))
            }));
        });
        // Buckets are each sorted, not their concatenation.
        selected.sort_unstable();
        selected.dedup();
        (selected.len() <= SELECTION_LIMIT).then(|| Selection {
            rules: selected.into_boxed_slice(),
        })
    }

    /// Decides `request` from `peer` on `selection`, which [`select`](Self::select)
    /// made for the same peer from this engine: the outcome of
    /// [`decide`](Self::decide), with only `to` and `when` left to match.
    pub(crate) fn decide_selected(
        &self,
        selection: &Selection,
        peer: &SpiffeId,
        request: &Request<'_>,
    ) -> Outcome {
        let mut eval = Evaluation::new(&self.rules, Subject::Peer(peer), request);
        eval.run_selected(&selection.rules);
        eval.finish()
    }

    /// Calls `visit` with each bucket of rules that can apply to `peer`, and
    /// whether it is the peer's ID bucket, whose rules all list the peer in
    /// `ids`.
    fn candidates<'a>(&'a self, peer: &SpiffeId, mut visit: impl FnMut(&'a [usize], bool)) {
        let mut complete = false;
        if !self.by_id.is_empty()
            && let Some(bucket) = self.by_id.get(peer)
        {
            // Every rule here either lists the peer in `ids` or has no `ids`.
            visit(&bucket.rules, true);
            complete = bucket.complete;
        }
        if !complete
            && !self.by_trust_domain.is_empty()
            && let Some(domain) = self.by_trust_domain.get(peer.trust_domain())
        {
            let (general, segment) = domain.for_id(peer);
            visit(general, false);
            visit(segment, false);
        }
        visit(&self.any_peer, false);
    }

    /// Decides `request` from an anonymous peer, on the rules that can match one.
    pub(crate) fn decide_anonymous(&self, request: &Request<'_>) -> Outcome {
        let mut eval = Evaluation::new(&self.rules, Subject::Anonymous, request);
        eval.run(&self.anonymous, false);
        eval.finish()
    }

    pub(crate) fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub(crate) fn rule_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.rules.iter().map(|rule| &*rule.name)
    }

    /// The rules in policy order, for lint.
    pub(crate) fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules in policy order, to compile again with others.
    pub(crate) fn into_rules(self) -> Vec<Rule> {
        self.rules.into_vec()
    }
}

/// The rules of one [`Engine`] whose `from` matches one peer, in policy order;
/// see [`Engine::select`].
pub(crate) struct Selection {
    rules: Box<[usize]>,
}

/// Rule indices are pushed in increasing order, so a repeat is always last.
fn push_once(list: &mut Vec<usize>, index: usize) {
    if list.last() != Some(&index) {
        list.push(index);
    }
}

/// Whom a decision is for.
#[derive(Clone, Copy)]
enum Subject<'a> {
    /// A verified peer with this ID.
    Peer(&'a SpiffeId),
    /// A peer that presented no certificate.
    Anonymous,
}

/// One decision in progress.
struct Evaluation<'a> {
    rules: &'a [Rule],
    peer: Subject<'a>,
    request: RequestView<'a>,
    /// The first matching `deny` and `allow` rules, in policy order.
    deny: Option<usize>,
    allow: Option<usize>,
    /// Matching `audit` rules; empty (and unallocated) in the common case.
    audit: Vec<usize>,
}

impl<'a> Evaluation<'a> {
    fn new(rules: &'a [Rule], peer: Subject<'a>, request: &'a Request<'a>) -> Self {
        Self {
            rules,
            peer,
            request: RequestView::new(request),
            deny: None,
            allow: None,
            audit: Vec::new(),
        }
    }

    /// Matches the rules of `bucket`; `id_known` when it is the peer's ID
    /// bucket, whose rules all list the peer in `ids`.
    fn run(&mut self, bucket: &[usize], id_known: bool) {
        let peer = self.peer;
        self.run_with(bucket, |rule, request| {
            rule_matches(rule, peer, id_known, request)
        });
    }

    /// Matches the rules of a [`Selection`] for this peer, whose `from` matched.
    fn run_selected(&mut self, selected: &[usize]) {
        self.run_with(selected, request_matches);
    }

    fn run_with(&mut self, bucket: &[usize], matches: impl Fn(&Rule, &RequestView<'_>) -> bool) {
        for &index in bucket {
            let Some(rule) = self.rules.get(index) else {
                continue;
            };
            let slot = match rule.action {
                Action::Deny => &mut self.deny,
                Action::Allow => &mut self.allow,
                Action::Audit => {
                    if matches(rule, &self.request) {
                        self.audit.push(index);
                    }
                    continue;
                }
            };
            // Only the first matching rule of each kind is reported, so a
            // later one need not be matched at all.
            if slot.is_some_and(|found| found < index) {
                continue;
            }
            if matches(rule, &self.request) {
                *slot = Some(index);
            }
        }
    }

    // Both deciding paths end here; left out of line it costs each decision
    // some 30 instructions (benches/RESULTS.md).
    #[inline(always)]
    fn finish(mut self) -> Outcome {
        let name = |index: usize| self.rules.get(index).map(|rule| Arc::clone(&rule.name));
        let (verdict, rule) = match (self.deny, self.allow) {
            (Some(deny), _) => (Verdict::Deny, name(deny)),
            (None, Some(allow)) => (Verdict::Allow, name(allow)),
            (None, None) => (Verdict::Deny, None),
        };
        let audit = if self.audit.is_empty() {
            Vec::new()
        } else {
            self.audit.sort_unstable();
            self.audit.dedup();
            self.audit.iter().filter_map(|&index| name(index)).collect()
        };
        Outcome {
            verdict,
            rule,
            audit,
        }
    }
}

/// Whether `rule` matches. An ambiguous condition counts as unmet for an
/// `allow` rule and as met for `deny` and `audit` rules, so ambiguity can
/// only ever lead to a denial.
fn rule_matches(rule: &Rule, peer: Subject<'_>, id_known: bool, request: &RequestView<'_>) -> bool {
    let from_holds = match peer {
        Subject::Peer(peer) => from_matches(rule, peer, id_known),
        Subject::Anonymous => rule.matches_anonymous(),
    };
    from_holds && request_matches(rule, request)
}

/// Whether `rule`'s `from` matches the verified `peer`; `id_known` as in
/// [`Evaluation::run`]. It depends on the peer alone (`from.jwt` is the
/// request's, matched in [`request_matches`]).
fn from_matches(rule: &Rule, peer: &SpiffeId, id_known: bool) -> bool {
    rule.from
        .as_ref()
        .is_none_or(|from| from.matches_peer(peer, id_known))
}

/// Whether what `rule` asks of the request holds — the subject of its JWT-SVID
/// (`from.jwt`), `to` and `when` — failing closed as [`rule_matches`] says.
fn request_matches(rule: &Rule, request: &RequestView<'_>) -> bool {
    let fail_closed = |tri: Tri| match tri {
        Tri::Yes => true,
        Tri::No => false,
        Tri::Unknown => rule.action != Action::Allow,
    };
    if !rule.admits(request.upgrade) {
        return false;
    }
    if let Some(from) = &rule.from
        && !from.jwt_matches(rule.action, request.request().jwt_subject())
    {
        return false;
    }
    if let Some(to) = &rule.to
        && !fail_closed(to.matches(request))
    {
        return false;
    }
    rule.when
        .iter()
        .all(|condition| fail_closed(condition.matches(request.request())))
}
