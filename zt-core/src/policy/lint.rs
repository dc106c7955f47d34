//! Lint: rules that can never match, and rules that never decide. See
//! [`LintFinding`] for what is looked for and what is not.
//!
//! ```
//! use zt_core::{Format, Policy};
//! use zt_core::policy::LintKind;
//!
//! let policy = Policy::parse(r#"{ "rules": [
//!     { "name": "frontend-reads", "action": "allow",
//!       "from": { "patterns": ["spiffe://example.org/frontend/**"] },
//!       "to": { "methods": ["GET"] } },
//!     { "name": "quarantine", "action": "deny",
//!       "from": { "trust_domains": ["example.org"] } }
//! ] }"#, Format::Json)?;
//!
//! let findings = policy.lint();
//! assert_eq!(findings.len(), 1);
//! let finding = &findings[0];
//! assert_eq!(finding.rule(), "frontend-reads");
//! assert_eq!(finding.kind(), &LintKind::Shadowed { by: "quarantine".to_owned() });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::model::{Action, Condition, From, NonEmpty, Rule, To};
use super::pattern::{Domain, GrpcPattern, Id, IdPattern, PathPattern, ValuePattern, quoted};
use crate::segments::Segments;
use crate::{SpiffeId, TrustDomain};

/// What [`Policy::lint`](super::Policy::lint) found about one rule.
///
/// Loading a policy already refuses the contradictions it can see inside one
/// field or between a field and its `not_` field (see `docs/policy.md`,
/// "Validation"). Lint looks further, without changing what the policy
/// decides:
///
/// - [`LintKind::NeverMatches`]: a rule whose conditions exclude every request
///   from every verified peer — every pattern covered by a `not_patterns`
///   entry, a pattern or ID naming only a trust domain's own ID (which no SVID
///   carries), `not_paths: ["/**"]`, every `paths` value covered by
///   `not_paths`, header conditions that exclude every value or contradict
///   each other;
/// - [`LintKind::DeadValue`]: one value of a field that can never match while
///   the rest of the rule can, such as `paths: ["/v1/*"]` beside `not_paths:
///   ["/v1/**"]`;
/// - [`LintKind::Shadowed`]: an `allow` rule that some `deny` rule matches on
///   every request it matches, so it never lets anything through;
/// - [`LintKind::Redundant`]: a rule that an earlier rule with the same action
///   matches on every request it matches, so it is never the deciding rule.
///
/// Every finding is proven, never guessed: a rule is reported as shadowed or
/// redundant only when one other rule covers it field by field. Lint does not
/// report a rule covered only by several rules together, a value covered only
/// by several `not_` values together, conditions implied only by several
/// conditions together, or rules that are merely broader than intended; an
/// empty report does not mean the policy says what you meant.
///
/// Peers are verified X.509-SVIDs, whose IDs always have a path, and
/// ambiguous requests (see "Ambiguous requests fail closed" in
/// `docs/policy.md`) meet the conditions of `deny` and `audit` rules whatever
/// they say: the findings take both into account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LintFinding {
    rule: Arc<str>,
    position: usize,
    kind: LintKind,
    message: String,
}

/// The kind of a [`LintFinding`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LintKind {
    /// The rule matches no request from any verified peer. For `deny` and
    /// `audit` rules whose `to` or `when` is at fault: none but the ambiguous
    /// requests such rules match whatever their conditions say.
    NeverMatches,
    /// One value of one of the rule's fields can never match; the rest of the
    /// rule can. Removing the value changes no decision.
    DeadValue,
    /// An `allow` rule that the `deny` rule `by` matches on every request it
    /// matches: it never lets a request through.
    Shadowed {
        /// The name of the covering `deny` rule.
        by: String,
    },
    /// A rule that the earlier rule `by`, with the same action, matches on every
    /// request it matches: it is never the deciding rule, and removing it
    /// changes no verdict.
    Redundant {
        /// The name of the covering rule.
        by: String,
    },
    /// A rule whose meaning changed when requests came to be decided on one
    /// canonical view: an HTTP rule that now also matches gRPC calls on its
    /// paths (the content type decides nothing), or a rule naming `GET` that now
    /// also covers `HEAD`. Reported by
    /// [`Policy::upgrade_notes`](super::Policy::upgrade_notes), not by `lint`:
    /// the rule is not wrong, it may just say more than it used to.
    MeaningChanged,
}

// === impl LintFinding ===

impl LintFinding {
    /// The name of the rule the finding is about.
    #[must_use]
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The rule's position in the policy, counting from 1.
    #[must_use]
    pub fn position(&self) -> usize {
        self.position
    }

    /// What was found.
    #[must_use]
    pub fn kind(&self) -> &LintKind {
        &self.kind
    }

    /// A one-line explanation, without the rule's name.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {} (rule {}): {}",
            quoted(&self.rule),
            self.position,
            self.message
        )
    }
}

/// Lints `rules`, in policy order; findings are ordered by rule.
pub(crate) fn lint(rules: &[Rule]) -> Vec<LintFinding> {
    let mut findings = Vec::new();
    let mut never = vec![false; rules.len()];
    for (index, (rule, never)) in rules.iter().zip(never.iter_mut()).enumerate() {
        let mut report = |kind: LintKind, message: String| {
            findings.push(LintFinding {
                rule: Arc::clone(&rule.name),
                position: index.saturating_add(1),
                kind,
                message,
            });
        };
        *never = dead_values(rule, &mut report);
    }

    let index = CoverIndex::new(rules);
    for (position, rule) in rules.iter().enumerate() {
        if never.get(position).copied().unwrap_or(true) || rule.action == Action::Audit {
            continue;
        }
        let candidates: Vec<usize> = index.candidates(rule).collect();
        let covering = |action: Action| {
            candidates.iter().find_map(|&other| {
                let cover = rules.get(other)?;
                let usable = other != position
                    && cover.action == action
                    && (action != rule.action || other < position)
                    && !never.get(other).copied().unwrap_or(true)
                    && covers(cover, rule);
                usable.then_some(cover)
            })
        };
        // A deny rule anywhere makes an allow rule pointless; otherwise an
        // earlier rule with the same action keeps it from ever deciding.
        let deny = match rule.action {
            Action::Allow => covering(Action::Deny),
            _ => None,
        };
        let finding = match deny {
            Some(by) => (
                LintKind::Shadowed {
                    by: by.name.to_string(),
                },
                format!(
                    "never allows anything: deny rule {} matches every request it matches, \
                     and deny wins",
                    quoted(&by.name)
                ),
            ),
            None => match covering(rule.action) {
                Some(by) => (
                    LintKind::Redundant {
                        by: by.name.to_string(),
                    },
                    format!(
                        "never decides: the earlier {} rule {} matches every request it matches",
                        action_name(by.action),
                        quoted(&by.name)
                    ),
                ),
                None => continue,
            },
        };
        let (kind, message) = finding;
        findings.push(LintFinding {
            rule: Arc::clone(&rule.name),
            position: position.saturating_add(1),
            kind,
            message,
        });
    }
    findings.sort_by_key(|finding| finding.position);
    findings
}

/// Rules whose meaning changed with the canonical request view; see
/// [`LintKind::MeaningChanged`].
pub(crate) fn upgrade_notes(rules: &[Rule]) -> Vec<LintFinding> {
    let mut notes = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let Some(to) = &rule.to else {
            continue;
        };
        let mut note = |message: String| {
            notes.push(LintFinding {
                rule: Arc::clone(&rule.name),
                position: index.saturating_add(1),
                kind: LintKind::MeaningChanged,
                message,
            });
        };
        let http_only =
            (to.methods.is_some() || to.not_methods.is_some() || to.has_paths()) && !to.has_grpc();
        let admits_post = match Methods::of(to) {
            Methods::Only(methods) => methods.contains(&"POST"),
            Methods::AllBut(methods) => !methods.contains(&"POST"),
        };
        let two_segments = to
            .paths
            .as_ref()
            .is_none_or(|paths| paths.iter().any(PathPattern::can_match_two_segments));
        if http_only && admits_post && two_segments {
            note(
                "also matches gRPC calls (POST /pkg.Service/Method) on its paths: the content \
                 type no longer decides which rules apply"
                    .to_owned(),
            );
        }
        let names_get = |list: &Option<NonEmpty<super::pattern::Method>>| {
            let names: Vec<&str> = list.iter().flat_map(|m| m.iter()).map(|m| &*m.0).collect();
            names.contains(&"GET") && !names.contains(&"HEAD")
        };
        if names_get(&to.methods) || names_get(&to.not_methods) {
            note("names GET, which now also covers HEAD".to_owned());
        }
    }
    notes
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Audit => "audit",
    }
}

// === never-matching rules and dead values ===

/// Reports the values of `rule` that can never match; returns whether the
/// whole rule can never match.
fn dead_values(rule: &Rule, report: &mut impl FnMut(LintKind, String)) -> bool {
    let mut never = false;
    if let Some(from) = &rule.from {
        never |= dead_from(from, report);
    }
    // Ambiguous requests meet `deny` and `audit` conditions whatever they say.
    let ambiguous_note = if rule.action == Action::Allow {
        ""
    } else {
        " (except requests with an ambiguous path, which it matches regardless)"
    };
    if let Some(to) = &rule.to {
        for dead in dead_paths(to) {
            report(LintKind::DeadValue, dead);
        }
        if let Some(why) = to_never_matches(to) {
            report(
                LintKind::NeverMatches,
                format!("can never match{ambiguous_note}: {why}"),
            );
            never = true;
        }
    }
    let header_note = if rule.action == Action::Allow {
        ""
    } else {
        " (except requests that repeat the header, which it matches regardless)"
    };
    for condition in &rule.when {
        let live = live_values(condition);
        if let Some(values) = &condition.values {
            for value in values.iter() {
                if let Some(excluding) = excluded_value(condition, value) {
                    report(
                        LintKind::DeadValue,
                        format!(
                            "when condition on header {}: value {} can never match: \
                             not_values excludes all of it with {}",
                            condition.header.0,
                            quoted(&value.raw),
                            quoted(&excluding.raw)
                        ),
                    );
                }
            }
            if live.as_ref().is_some_and(Vec::is_empty) {
                report(
                    LintKind::NeverMatches,
                    format!(
                        "can never match{header_note}: not_values excludes every value \
                         of the when condition on header {}",
                        condition.header.0
                    ),
                );
                never = true;
            }
        }
    }
    if let Some(why) = contradictory_conditions(&rule.when) {
        report(
            LintKind::NeverMatches,
            format!("can never match{header_note}: {why}"),
        );
        never = true;
    }
    never
}

/// Reports dead `from` values; returns whether `from` matches no verified peer.
fn dead_from(from: &From, report: &mut impl FnMut(LintKind, String)) -> bool {
    if let Some(ids) = &from.ids {
        // Load-time validation already checked every ID against the other fields.
        let mut live = 0_usize;
        for Id(id) in ids.iter() {
            if id.is_root() {
                report(
                    LintKind::DeadValue,
                    format!("id {id} can never match: {ROOT_ID}"),
                );
            } else {
                live = live.saturating_add(1);
            }
        }
        if live == 0 {
            report(
                LintKind::NeverMatches,
                "can never match: no value of from.ids can match a verified peer".to_owned(),
            );
            return true;
        }
        return false;
    }
    if let Some(patterns) = &from.patterns {
        let mut live = 0_usize;
        for pattern in patterns.iter() {
            match pattern_excluded(from, pattern) {
                Some(why) => report(
                    LintKind::DeadValue,
                    format!("pattern {} can never match: {why}", pattern.raw),
                ),
                None => live = live.saturating_add(1),
            }
        }
        if live == 0 {
            report(
                LintKind::NeverMatches,
                "can never match: no pattern of from.patterns can match a verified peer".to_owned(),
            );
            return true;
        }
        return false;
    }
    if let Some(domains) = &from.trust_domains {
        let mut live = 0_usize;
        for Domain(td) in domains.iter() {
            match from
                .not_patterns
                .iter()
                .flat_map(|n| n.iter())
                .find(|n| &n.trust_domain == td && n.segments.is_everything())
            {
                Some(excluding) => report(
                    LintKind::DeadValue,
                    format!(
                        "trust domain {td} can never match: not_patterns excludes every \
                         workload in it with {}",
                        excluding.raw
                    ),
                ),
                None => live = live.saturating_add(1),
            }
        }
        if live == 0 {
            report(
                LintKind::NeverMatches,
                "can never match: not_patterns excludes every trust domain of \
                 from.trust_domains"
                    .to_owned(),
            );
            return true;
        }
    }
    false
}

const ROOT_ID: &str = "it is a trust domain's own ID, which no SVID carries (write <trust domain>/** for every workload)";

/// Why `pattern`, in `from.patterns` of a rule without `ids`, can match no
/// verified peer.
fn pattern_excluded(from: &From, pattern: &IdPattern) -> Option<String> {
    if pattern.segments.arity() == (0, false) {
        return Some(ROOT_ID.to_owned());
    }
    if let Some(excluding) =
        from.not_patterns.iter().flat_map(|n| n.iter()).find(|n| {
            n.trust_domain == pattern.trust_domain && pattern.segments.within(&n.segments)
        })
    {
        return Some(format!(
            "not_patterns excludes all of it with {}",
            excluding.raw
        ));
    }
    if let Some(id) = pattern.as_id()
        && from
            .not_ids
            .as_ref()
            .is_some_and(|not| not.iter().any(|Id(n)| *n == id))
    {
        return Some("not_ids excludes it".to_owned());
    }
    None
}

/// `paths` values that `not_paths` excludes entirely.
fn dead_paths(to: &To) -> Vec<String> {
    let Some(paths) = &to.paths else {
        return Vec::new();
    };
    paths
        .iter()
        .filter_map(|path| {
            let excluding = path_excluded(to, path)?;
            Some(format!(
                "path {} can never match: not_paths excludes all of it with {}",
                path.raw, excluding.raw
            ))
        })
        .collect()
}

fn path_excluded<'a>(to: &'a To, path: &PathPattern) -> Option<&'a PathPattern> {
    to.not_paths
        .iter()
        .flat_map(|n| n.iter())
        .find(|n| path.segments.within(&n.segments))
}

/// Why an HTTP `to` matches no request with an unambiguous path.
fn to_never_matches(to: &To) -> Option<String> {
    match &to.paths {
        Some(paths) => paths
            .iter()
            .all(|p| path_excluded(to, p).is_some())
            .then(|| "not_paths excludes every path of to.paths".to_owned()),
        None => to
            .not_paths
            .iter()
            .flat_map(|n| n.iter())
            .find(|n| n.segments.is_everything())
            .map(|n| format!("not_paths {} excludes every path", n.raw)),
    }
}

fn excluded_value<'a>(condition: &'a Condition, value: &ValuePattern) -> Option<&'a ValuePattern> {
    let shape = ValueShape::of(value);
    condition
        .not_values
        .iter()
        .flat_map(|n| n.iter())
        .find(|n| shape.within(ValueShape::of(n)))
}

/// The `values` of a condition that `not_values` leaves something of; `None`
/// when the condition has no `values` (any present value, or absence).
fn live_values(condition: &Condition) -> Option<Vec<ValueShape<'_>>> {
    condition.values.as_ref().map(|values| {
        values
            .iter()
            .filter(|v| excluded_value(condition, v).is_none())
            .map(ValueShape::of)
            .collect()
    })
}

/// Two conditions on one header that no single value (nor absence) meets.
fn contradictory_conditions(when: &[Condition]) -> Option<String> {
    for (i, a) in when.iter().enumerate() {
        for b in when.iter().skip(i.saturating_add(1)) {
            // Several members of a list can meet conditions no single value meets.
            if a.header != b.header || a.members || b.members {
                continue;
            }
            let header = &a.header.0;
            // `values` require the header; `not_values: ["*"]` alone requires its absence.
            let requires_absence = |c: &Condition| {
                c.values.is_none()
                    && c.not_values
                        .as_ref()
                        .is_some_and(|n| n.iter().any(|v| ValueShape::of(v) == ValueShape::Any))
            };
            if (a.values.is_some() && requires_absence(b))
                || (b.values.is_some() && requires_absence(a))
            {
                return Some(format!(
                    "two when conditions on header {header}: one requires it, the other \
                     requires its absence"
                ));
            }
            if let (Some(live_a), Some(live_b)) = (live_values(a), live_values(b))
                && !live_a.is_empty()
                && !live_b.is_empty()
                && live_a
                    .iter()
                    .all(|va| live_b.iter().all(|vb| va.disjoint(*vb)))
            {
                return Some(format!(
                    "two when conditions on header {header} have no value in common"
                ));
            }
        }
    }
    None
}

// === coverage: does one rule match every request another matches? ===

/// Whether `cover` matches every request `rule` matches, from every verified
/// peer. `rule` is what an ambiguous request is held against: when `cover` is
/// an `allow` rule, ambiguity makes it unmet, so it must not depend on
/// anything `rule` can leave ambiguous.
fn covers(cover: &Rule, rule: &Rule) -> bool {
    let strict = cover.action == Action::Allow;
    from_covers(cover.from.as_ref(), rule.from.as_ref())
        && to_covers(cover.to.as_ref(), rule.to.as_ref(), strict)
        && when_covers(&cover.when, &rule.when)
}

/// The peers a `from` can match, over-approximated where it is not a finite
/// list of IDs.
enum Peers<'a> {
    /// Exactly these IDs (those the `from` matches).
    Ids(Vec<SpiffeId>),
    /// At most the IDs of these regions.
    Regions(Vec<Region<'a>>),
    /// Any peer.
    Any,
}

/// A set of non-root IDs in one trust domain.
enum Region<'a> {
    /// Every workload of the trust domain.
    Domain(&'a TrustDomain),
    Pattern(&'a TrustDomain, &'a Segments),
}

impl Region<'_> {
    fn trust_domain(&self) -> &TrustDomain {
        match self {
            Self::Domain(td) | Self::Pattern(td, _) => td,
        }
    }

    fn within(&self, pattern: &IdPattern) -> bool {
        if self.trust_domain() != &pattern.trust_domain {
            return false;
        }
        match self {
            Self::Domain(_) => pattern.segments.is_everything(),
            Self::Pattern(_, segments) => segments.within(&pattern.segments),
        }
    }

    fn disjoint(&self, pattern: &IdPattern) -> bool {
        if self.trust_domain() != &pattern.trust_domain {
            return true;
        }
        match self {
            Self::Domain(_) => false,
            Self::Pattern(_, segments) => segments.disjoint(&pattern.segments),
        }
    }
}

fn peers(from: Option<&From>) -> Peers<'_> {
    let Some(from) = from else {
        return Peers::Any;
    };
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

/// What the engine decides for `from`, restated on the validated model.
fn from_matches(from: Option<&From>, id: &SpiffeId) -> bool {
    let Some(from) = from else {
        return true;
    };
    let td = id.trust_domain();
    let listed = |ids: &[Id]| ids.iter().any(|Id(x)| x == id);
    let in_domains = |tds: &[Domain]| tds.iter().any(|Domain(t)| t == td);
    from.ids.as_deref().is_none_or(listed)
        && from.trust_domains.as_deref().is_none_or(in_domains)
        && from
            .patterns
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p.matches(id)))
        && !from.not_ids.as_deref().is_some_and(listed)
        && !from.not_trust_domains.as_deref().is_some_and(in_domains)
        && !from
            .not_patterns
            .as_ref()
            .is_some_and(|ps| ps.iter().any(|p| p.matches(id)))
}

fn from_covers(cover: Option<&From>, from: Option<&From>) -> bool {
    let Some(cover) = cover else {
        return true;
    };
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

fn has_path_conditions(to: &To) -> bool {
    to.paths.is_some() || to.not_paths.is_some()
}

fn to_covers(cover: Option<&To>, to: Option<&To>, strict: bool) -> bool {
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

fn same_hosts(a: &To, b: &To) -> bool {
    let raw = |list: &Option<NonEmpty<super::pattern::HostPattern>>| {
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
enum Methods<'a> {
    Only(Vec<&'a str>),
    AllBut(Vec<&'a str>),
}

impl<'a> Methods<'a> {
    /// A rule that names `GET` covers `HEAD` too, in both fields.
    fn of(to: &'a To) -> Self {
        let expand = |list: &'a Option<NonEmpty<super::pattern::Method>>| {
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

    fn within(&self, outer: &Self) -> bool {
        match (self, outer) {
            (Self::Only(a), Self::Only(b)) => a.iter().all(|m| b.contains(m)),
            (Self::Only(a), Self::AllBut(b)) => a.iter().all(|m| !b.contains(m)),
            (Self::AllBut(_), Self::Only(_)) => false,
            (Self::AllBut(a), Self::AllBut(b)) => b.iter().all(|m| a.contains(m)),
        }
    }
}

fn paths_cover(cover: &To, to: &To) -> bool {
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

fn grpc_covers(cover: &To, to: &To) -> bool {
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
fn when_covers(cover: &[Condition], when: &[Condition]) -> bool {
    cover.iter().all(|outer| {
        when.iter()
            .any(|inner| inner.header == outer.header && condition_within(inner, outer))
    })
}

/// Whether every header state meeting `inner` meets `outer`.
fn condition_within(inner: &Condition, outer: &Condition) -> bool {
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
struct CoverIndex<'a> {
    by_id: HashMap<&'a SpiffeId, Vec<usize>>,
    by_trust_domain: HashMap<&'a TrustDomain, Vec<usize>>,
    any_peer: Vec<usize>,
}

impl<'a> CoverIndex<'a> {
    fn new(rules: &'a [Rule]) -> Self {
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
    fn candidates(&self, rule: &Rule) -> impl Iterator<Item = usize> {
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

fn push_once(list: &mut Vec<usize>, index: usize) {
    if list.last() != Some(&index) {
        list.push(index);
    }
}

// === the structure of validated patterns ===

/// A gRPC pattern: a service and one method, or all its methods.
#[derive(Clone, Copy, Debug)]
struct Call<'a> {
    service: &'a str,
    method: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn of(pattern: &'a GrpcPattern) -> Self {
        let (service, method) = pattern.raw.split_once('/').unwrap_or((&pattern.raw, "*"));
        Self {
            service,
            method: (method != "*").then_some(method),
        }
    }

    fn within(self, outer: Call<'_>) -> bool {
        self.service == outer.service && (outer.method.is_none() || self.method == outer.method)
    }

    fn disjoint(self, other: Call<'_>) -> bool {
        self.service != other.service
            || matches!((self.method, other.method), (Some(a), Some(b)) if a != b)
    }
}

/// A header value pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueShape<'a> {
    Any,
    Exact(&'a str),
    Prefix(&'a str),
    Suffix(&'a str),
}

impl<'a> ValueShape<'a> {
    fn of(pattern: &'a ValuePattern) -> Self {
        let raw = &*pattern.raw;
        if raw == "*" {
            Self::Any
        } else if let Some(prefix) = raw.strip_suffix('*') {
            Self::Prefix(prefix)
        } else if let Some(suffix) = raw.strip_prefix('*') {
            Self::Suffix(suffix)
        } else {
            Self::Exact(raw)
        }
    }

    fn matches(self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => value == exact,
            Self::Prefix(prefix) => value.starts_with(prefix),
            Self::Suffix(suffix) => value.ends_with(suffix),
        }
    }

    fn within(self, outer: ValueShape<'_>) -> bool {
        match (self, outer) {
            (_, ValueShape::Any) => true,
            (Self::Exact(value), outer) => outer.matches(value),
            (Self::Prefix(a), ValueShape::Prefix(b)) => a.starts_with(b),
            (Self::Suffix(a), ValueShape::Suffix(b)) => a.ends_with(b),
            _ => false,
        }
    }

    fn disjoint(self, other: ValueShape<'_>) -> bool {
        match (self, other) {
            (Self::Exact(value), other) => !other.matches(value),
            (this, ValueShape::Exact(value)) => !this.matches(value),
            (Self::Prefix(a), ValueShape::Prefix(b)) => !(a.starts_with(b) || b.starts_with(a)),
            (Self::Suffix(a), ValueShape::Suffix(b)) => !(a.ends_with(b) || b.ends_with(a)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, Policy};

    fn lint_json(rules: &str) -> Vec<LintFinding> {
        let policy = Policy::parse(&format!(r#"{{"rules": [{rules}]}}"#), Format::Json)
            .unwrap_or_else(|err| panic!("policy should load: {err}"));
        policy.lint()
    }

    fn kinds(findings: &[LintFinding]) -> Vec<(&str, &LintKind)> {
        findings.iter().map(|f| (f.rule(), f.kind())).collect()
    }

    fn shadowed(by: &str) -> LintKind {
        LintKind::Shadowed { by: by.to_owned() }
    }

    fn redundant(by: &str) -> LintKind {
        LintKind::Redundant { by: by.to_owned() }
    }

    #[test]
    fn clean_policy_has_no_findings() {
        let findings = lint_json(
            r#"{"name": "reads", "action": "allow",
                "from": {"patterns": ["spiffe://td/frontend/**"]},
                "to": {"methods": ["GET"], "paths": ["/v1/**"]}},
               {"name": "writes", "action": "allow",
                "from": {"ids": ["spiffe://td/admin"]},
                "to": {"methods": ["POST"], "paths": ["/v1/**"]}},
               {"name": "no-legacy", "action": "deny",
                "from": {"ids": ["spiffe://td/frontend/legacy"]}},
               {"name": "watch", "action": "audit", "from": {"any": true}}"#,
        );
        assert_eq!(findings, []);
    }

    #[test]
    fn allow_rule_inside_deny_rule_is_shadowed_whatever_the_order() {
        for order in [[0, 1], [1, 0]] {
            let rules = [
                r#"{"name": "reads", "action": "allow",
                    "from": {"ids": ["spiffe://td/frontend/web"]},
                    "to": {"methods": ["GET"], "paths": ["/v1/items/*"]}}"#,
                r#"{"name": "freeze", "action": "deny",
                    "from": {"patterns": ["spiffe://td/frontend/**"]},
                    "to": {"paths": ["/v1/**"]}}"#,
            ];
            let findings = lint_json(&format!("{},{}", rules[order[0]], rules[order[1]]));
            assert_eq!(kinds(&findings), [("reads", &shadowed("freeze"))]);
        }
    }

    #[test]
    fn allow_rule_overlapping_deny_rule_is_not_shadowed() {
        let findings = lint_json(
            r#"{"name": "reads", "action": "allow",
                "from": {"patterns": ["spiffe://td/frontend/**"]},
                "to": {"methods": ["GET"]}},
               {"name": "no-web", "action": "deny",
                "from": {"ids": ["spiffe://td/frontend/web"]}}"#,
        );
        assert_eq!(findings, []);
    }

    #[test]
    fn deny_rule_with_exclusion_the_allow_rule_avoids_shadows_it() {
        let findings = lint_json(
            r#"{"name": "reads", "action": "allow",
                "from": {"patterns": ["spiffe://td/frontend/**"]},
                "to": {"paths": ["/v1/items/*"]}},
               {"name": "outsiders", "action": "deny",
                "from": {"trust_domains": ["td"], "not_patterns": ["spiffe://td/admin/**"]}}"#,
        );
        assert_eq!(kinds(&findings), [("reads", &shadowed("outsiders"))]);
    }

    #[test]
    fn deny_rule_whose_exclusion_overlaps_the_allow_rule_does_not_shadow_it() {
        let findings = lint_json(
            r#"{"name": "reads", "action": "allow",
                "from": {"patterns": ["spiffe://td/frontend/**"]}},
               {"name": "outsiders", "action": "deny",
                "from": {"trust_domains": ["td"], "not_patterns": ["spiffe://td/frontend/web"]}}"#,
        );
        assert_eq!(findings, []);
    }

    #[test]
    fn later_allow_rule_inside_earlier_one_is_redundant() {
        let findings = lint_json(
            r#"{"name": "frontend", "action": "allow",
                "from": {"patterns": ["spiffe://td/frontend/**"]}},
               {"name": "web-reads", "action": "allow",
                "from": {"ids": ["spiffe://td/frontend/web"]},
                "to": {"methods": ["GET", "HEAD"]}}"#,
        );
        assert_eq!(kinds(&findings), [("web-reads", &redundant("frontend"))]);
    }

    #[test]
    fn earlier_allow_rule_inside_later_one_is_not_redundant() {
        let findings = lint_json(
            r#"{"name": "web-reads", "action": "allow",
                "from": {"ids": ["spiffe://td/frontend/web"]},
                "to": {"methods": ["GET"]}},
               {"name": "frontend", "action": "allow",
                "from": {"patterns": ["spiffe://td/frontend/**"]}}"#,
        );
        assert_eq!(findings, []);
    }

    #[test]
    fn allow_rule_with_paths_does_not_cover_one_without_them() {
        // An ambiguous path leaves the first rule unmet but the second matched.
        let findings = lint_json(
            r#"{"name": "all-paths", "action": "allow",
                "from": {"any": true}, "to": {"paths": ["/**"]}},
               {"name": "gets", "action": "allow",
                "from": {"any": true}, "to": {"methods": ["GET"]}}"#,
        );
        assert_eq!(findings, []);
    }

    #[test]
    fn deny_rule_with_paths_covers_allow_rule_without_them() {
        // An ambiguous path meets the deny rule's path condition.
        let findings = lint_json(
            r#"{"name": "gets", "action": "allow",
                "from": {"any": true}, "to": {"methods": ["GET"]}},
               {"name": "all-paths", "action": "deny",
                "from": {"any": true}, "to": {"paths": ["/**"]}}"#,
        );
        assert_eq!(kinds(&findings), [("gets", &shadowed("all-paths"))]);
    }

    #[test]
    fn later_deny_rule_inside_earlier_one_is_redundant() {
        let findings = lint_json(
            r#"{"name": "outsiders", "action": "deny",
                "from": {"not_trust_domains": ["td"]}},
               {"name": "partner-admin", "action": "deny",
                "from": {"trust_domains": ["partner.org"]}, "to": {"paths": ["/admin/**"]}}"#,
        );
        assert_eq!(
            kinds(&findings),
            [("partner-admin", &redundant("outsiders"))]
        );
    }

    #[test]
    fn rules_of_other_protocols_never_cover_each_other() {
        let findings = lint_json(
            r#"{"name": "grpc-reads", "action": "allow",
                "from": {"any": true}, "to": {"grpc": ["pkg.Svc/Get"]}},
               {"name": "no-http-writes", "action": "deny",
                "from": {"any": true}, "to": {"methods": ["POST"]}}"#,
        );
        assert_eq!(findings, []);
    }

    #[test]
    fn grpc_method_inside_denied_service_is_shadowed() {
        let findings = lint_json(
            r#"{"name": "ledger-read", "action": "allow",
                "from": {"ids": ["spiffe://td/billing"]}, "to": {"grpc": ["ledger.Ledger/Get"]}},
               {"name": "ledger-frozen", "action": "deny",
                "from": {"trust_domains": ["td"]},
                "to": {"grpc": ["ledger.Ledger/*"], "not_grpc": ["ledger.Ledger/Health"]}}"#,
        );
        assert_eq!(
            kinds(&findings),
            [("ledger-read", &shadowed("ledger-frozen"))]
        );
    }

    #[test]
    fn methods_excluded_by_deny_rule_keep_allow_rule_alive() {
        let findings = lint_json(
            r#"{"name": "reads", "action": "allow",
                "from": {"any": true}, "to": {"methods": ["GET", "HEAD"]}},
               {"name": "no-writes", "action": "deny",
                "from": {"any": true}, "to": {"not_methods": ["GET", "OPTIONS"]}}"#,
        );
        assert_eq!(findings, []);
    }

    #[test]
    fn methods_all_outside_deny_exclusions_are_shadowed() {
        let findings = lint_json(
            r#"{"name": "writes", "action": "allow",
                "from": {"any": true}, "to": {"methods": ["POST", "PUT"]}},
               {"name": "read-only", "action": "deny",
                "from": {"any": true}, "to": {"not_methods": ["GET", "HEAD"]}}"#,
        );
        assert_eq!(kinds(&findings), [("writes", &shadowed("read-only"))]);
    }

    #[test]
    fn header_condition_of_deny_rule_must_follow_from_the_allow_rule() {
        let covered = lint_json(
            r#"{"name": "acme", "action": "allow", "from": {"any": true},
                "when": [{"header": "x-tenant", "values": ["acme-eu"]}]},
               {"name": "no-acme", "action": "deny", "from": {"any": true},
                "when": [{"header": "x-tenant", "values": ["acme-*"]}]}"#,
        );
        assert_eq!(kinds(&covered), [("acme", &shadowed("no-acme"))]);

        let not_covered = lint_json(
            r#"{"name": "acme", "action": "allow", "from": {"any": true},
                "when": [{"header": "x-tenant", "values": ["acme-*"]}]},
               {"name": "no-acme-eu", "action": "deny", "from": {"any": true},
                "when": [{"header": "x-tenant", "values": ["acme-eu"]}]}"#,
        );
        assert_eq!(not_covered, []);
    }

    #[test]
    fn pattern_covered_by_not_patterns_is_dead() {
        let findings = lint_json(
            r#"{"name": "r", "action": "allow",
                "from": {"patterns": ["spiffe://td/ns/*/sa/web", "spiffe://td/api/**"],
                         "not_patterns": ["spiffe://td/ns/**"]}}"#,
        );
        assert_eq!(kinds(&findings), [("r", &LintKind::DeadValue)]);
        assert_eq!(
            findings[0].to_string(),
            "rule \"r\" (rule 1): pattern spiffe://td/ns/*/sa/web can never match: \
             not_patterns excludes all of it with spiffe://td/ns/**"
        );
    }

    #[test]
    fn rule_whose_every_pattern_is_excluded_never_matches() {
        let findings = lint_json(
            r#"{"name": "r", "action": "deny",
                "from": {"patterns": ["spiffe://td/a/*"], "not_patterns": ["spiffe://td/*/*"]}},
               {"name": "s", "action": "allow", "from": {"patterns": ["spiffe://td/a/b"]}}"#,
        );
        assert_eq!(
            kinds(&findings),
            [("r", &LintKind::DeadValue), ("r", &LintKind::NeverMatches)]
        );
    }

    #[test]
    fn trust_domain_id_as_peer_never_matches() {
        let findings = lint_json(
            r#"{"name": "r", "action": "allow", "from": {"ids": ["spiffe://td"]}},
               {"name": "s", "action": "allow", "from": {"patterns": ["spiffe://td"]}}"#,
        );
        assert_eq!(
            kinds(&findings),
            [
                ("r", &LintKind::DeadValue),
                ("r", &LintKind::NeverMatches),
                ("s", &LintKind::DeadValue),
                ("s", &LintKind::NeverMatches)
            ]
        );
    }

    #[test]
    fn trust_domain_excluded_by_catch_all_pattern_never_matches() {
        let findings = lint_json(
            r#"{"name": "r", "action": "allow",
                "from": {"trust_domains": ["td"], "not_patterns": ["spiffe://td/**"]}}"#,
        );
        assert_eq!(
            kinds(&findings),
            [("r", &LintKind::DeadValue), ("r", &LintKind::NeverMatches)]
        );
    }

    #[test]
    fn not_paths_everything_never_matches() {
        let findings = lint_json(
            r#"{"name": "r", "action": "allow", "from": {"any": true},
                "to": {"methods": ["GET"], "not_paths": ["/**"]}}"#,
        );
        assert_eq!(kinds(&findings), [("r", &LintKind::NeverMatches)]);
        assert!(
            findings[0]
                .message()
                .contains("not_paths /** excludes every path")
        );
    }

    #[test]
    fn deny_rule_that_only_matches_ambiguous_paths_says_so() {
        let findings = lint_json(
            r#"{"name": "r", "action": "deny", "from": {"any": true},
                "to": {"paths": ["/v1/*"], "not_paths": ["/v1/**"]}}"#,
        );
        assert_eq!(
            kinds(&findings),
            [("r", &LintKind::DeadValue), ("r", &LintKind::NeverMatches)]
        );
        assert!(findings[1].message().contains("ambiguous path"));
    }

    #[test]
    fn path_wildcard_inside_not_paths_is_dead() {
        let findings = lint_json(
            r#"{"name": "r", "action": "allow", "from": {"any": true},
                "to": {"paths": ["/v1/*", "/v2/**"], "not_paths": ["/v1/**"]}}"#,
        );
        assert_eq!(kinds(&findings), [("r", &LintKind::DeadValue)]);
        assert!(
            findings[0]
                .message()
                .starts_with("path /v1/* can never match")
        );
    }

    #[test]
    fn header_value_prefix_inside_excluded_prefix_is_dead() {
        let findings = lint_json(
            r#"{"name": "r", "action": "allow", "from": {"any": true},
                "when": [{"header": "x-env", "values": ["prod-eu*", "dev"],
                          "not_values": ["prod*"]}]}"#,
        );
        assert_eq!(kinds(&findings), [("r", &LintKind::DeadValue)]);
    }

    #[test]
    fn contradictory_conditions_on_one_header_never_match() {
        for when in [
            r#"[{"header": "x-env", "values": ["prod"]}, {"header": "x-env", "values": ["dev*"]}]"#,
            r#"[{"header": "x-env", "values": ["*"]}, {"header": "x-env", "not_values": ["*"]}]"#,
        ] {
            let findings = lint_json(&format!(
                r#"{{"name": "r", "action": "allow", "from": {{"any": true}}, "when": {when}}}"#
            ));
            assert_eq!(kinds(&findings), [("r", &LintKind::NeverMatches)], "{when}");
        }
    }

    #[test]
    fn compatible_conditions_on_one_header_are_clean() {
        let findings = lint_json(
            r#"{"name": "r", "action": "allow", "from": {"any": true},
                "when": [{"header": "x-env", "values": ["prod*"]},
                         {"header": "x-env", "values": ["*-eu"]}]}"#,
        );
        assert_eq!(findings, []);
    }

    #[test]
    fn never_matching_rule_shadows_nothing() {
        let findings = lint_json(
            r#"{"name": "reads", "action": "allow", "from": {"ids": ["spiffe://td/web"]}},
               {"name": "dead-deny", "action": "deny",
                "from": {"patterns": ["spiffe://td/*"], "not_patterns": ["spiffe://td/**"]}}"#,
        );
        assert_eq!(
            kinds(&findings),
            [
                ("dead-deny", &LintKind::DeadValue),
                ("dead-deny", &LintKind::NeverMatches)
            ]
        );
    }

    #[test]
    fn audit_rules_are_never_shadowed() {
        let findings = lint_json(
            r#"{"name": "watch", "action": "audit", "from": {"ids": ["spiffe://td/web"]}},
               {"name": "deny-all", "action": "deny", "from": {"any": true}}"#,
        );
        assert_eq!(findings, []);
    }

    /// A small deterministic generator (xorshift), so the sample is the same
    /// on every run.
    struct Rng(u64);

    impl Rng {
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            items[usize::try_from(self.0 % items.len() as u64).unwrap()]
        }
    }

    /// Which of `requests` the single rule `rule` matches, under its own action.
    fn matched(rule: &str, peers: &[SpiffeId], requests: &[Sample]) -> Vec<bool> {
        let policy = Policy::parse(&format!(r#"{{"rules": [{rule}]}}"#), Format::Json).unwrap();
        let mut out = Vec::new();
        for peer in peers {
            for sample in requests {
                let headers: Vec<(String, String)> = sample
                    .headers
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect();
                let mut request = Request::new(sample.method, sample.path).with_headers(&headers);
                if let Some(host) = sample.host {
                    request = request.with_host(host);
                }
                let decision = policy.decide(peer, &request);
                out.push(decision.rule().is_some());
            }
        }
        out
    }

    struct Sample {
        method: &'static str,
        path: &'static str,
        host: Option<&'static str>,
        headers: &'static [(&'static str, &'static str)],
    }

    use crate::Request;

    #[test]
    fn coverage_claims_hold_on_sampled_requests() {
        let froms = [
            "",
            r#""from": {"any": true}"#,
            r#""from": {"ids": ["spiffe://td/a"]}"#,
            r#""from": {"ids": ["spiffe://td/a/b", "spiffe://other/a"]}"#,
            r#""from": {"patterns": ["spiffe://td/a/*"]}"#,
            r#""from": {"patterns": ["spiffe://td/a/**"]}"#,
            r#""from": {"patterns": ["spiffe://td/**"]}"#,
            r#""from": {"patterns": ["spiffe://td/*/b"], "not_ids": ["spiffe://td/x/b"]}"#,
            r#""from": {"patterns": ["spiffe://td/**"], "not_patterns": ["spiffe://td/a/**"]}"#,
            r#""from": {"trust_domains": ["td"]}"#,
            r#""from": {"trust_domains": ["td"], "not_patterns": ["spiffe://td/a/*"]}"#,
            r#""from": {"not_trust_domains": ["other"]}"#,
            r#""from": {"not_ids": ["spiffe://td/a"]}"#,
            r#""from": {"patterns": ["spiffe://td/a", "spiffe://td/b"]}"#,
            r#""from": {"patterns": ["spiffe://td/a/*"], "not_patterns": ["spiffe://td/a/**"]}"#,
        ];
        let tos = [
            "",
            r#""to": {"methods": ["GET"]}"#,
            r#""to": {"methods": ["GET", "POST"]}"#,
            r#""to": {"not_methods": ["POST"]}"#,
            r#""to": {"paths": ["/v1/*"]}"#,
            r#""to": {"paths": ["/v1/**"]}"#,
            r#""to": {"paths": ["/**"]}"#,
            r#""to": {"methods": ["GET"], "paths": ["/v1/a", "/"]}"#,
            r#""to": {"paths": ["/v1/**"], "not_paths": ["/v1/a"]}"#,
            r#""to": {"not_paths": ["/v1/**"]}"#,
            r#""to": {"grpc": ["s.S/*"]}"#,
            r#""to": {"grpc": ["s.S/M"]}"#,
            r#""to": {"grpc": ["s.S/*"], "not_grpc": ["s.S/M"]}"#,
            r#""to": {"not_grpc": ["t.T/*"]}"#,
            r#""to": {"paths": ["/v1/*"], "not_paths": ["/v1/**"]}"#,
            r#""to": {"hosts": ["a.org"]}"#,
            r#""to": {"hosts": ["*.a.org"], "methods": ["GET"]}"#,
            r#""to": {"not_hosts": ["a.org"]}"#,
            r#""to": {"methods": ["HEAD"]}"#,
            r#""to": {"not_methods": ["GET"]}"#,
            r#""to": {"methods": ["POST"], "grpc": ["s.S/*"]}"#,
            r#""to": {"paths": ["/s.S/*"]}"#,
        ];
        let whens = [
            "",
            r#""when": [{"header": "x", "values": ["a"]}]"#,
            r#""when": [{"header": "x", "values": ["a*"]}]"#,
            r#""when": [{"header": "x", "values": ["*"], "not_values": ["b"]}]"#,
            r#""when": [{"header": "x", "not_values": ["*"]}]"#,
            r#""when": [{"header": "x", "not_values": ["ab"]}]"#,
            r#""when": [{"header": "y", "values": ["a"]}]"#,
            r#""when": [{"header": "x", "values": ["ab*"], "not_values": ["a*"]}]"#,
            r#""when": [{"header": "x", "values": ["a"], "members": true}]"#,
            r#""when": [{"header": "x", "not_values": ["b"], "members": true}]"#,
            r#""when": [{"header": "host", "values": ["a.org"]}]"#,
        ];
        let peers: Vec<SpiffeId> = [
            "spiffe://td/a",
            "spiffe://td/b",
            "spiffe://td/a/b",
            "spiffe://td/a/b/c",
            "spiffe://td/x/b",
            "spiffe://other/a",
            "spiffe://other/a/b",
        ]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
        let header_sets: [&'static [(&str, &str)]; 7] = [
            &[],
            &[("x", "a")],
            &[("x", "ab")],
            &[("x", "b")],
            &[("x", "a"), ("x", "a")],
            &[("y", "a"), ("x", "a")],
            &[("x", "b, a")],
        ];
        let mut samples = Vec::new();
        for (h, headers) in header_sets.into_iter().enumerate() {
            for (p, (method, path)) in [
                ("GET", "/v1/a"),
                ("GET", "/v1/b"),
                ("POST", "/v1/a"),
                ("HEAD", "/v1/a"),
                ("GET", "/v1/a/b"),
                ("GET", "/"),
                ("PUT", "/v2"),
                ("GET", "/v1//a"),
                ("POST", "/v1/%2e%2e/a"),
                ("GET", "/v1/%61"),
                ("POST", "/s.S/M"),
                ("GET", "/s.S/M"),
                ("POST", "/s.S/N"),
                ("POST", "/t.T/M"),
                ("POST", "/s.S/M/x"),
            ]
            .into_iter()
            .enumerate()
            {
                let host = [None, Some("a.org"), Some("B.a.org"), Some("c.org")]
                    .get((h + p) % 4)
                    .copied()
                    .flatten();
                samples.push(Sample {
                    method,
                    path,
                    host,
                    headers,
                });
            }
        }

        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut rules = Vec::new();
        while rules.len() < 300 {
            let action = rng.pick(&["allow", "deny"]);
            let parts: Vec<&str> = [rng.pick(&froms), rng.pick(&tos), rng.pick(&whens)]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect();
            let json = format!(
                r#"{{"name": "r{}", "action": "{action}", {}}}"#,
                rules.len(),
                parts.join(", ")
            );
            let Ok(document) =
                super::super::model::parse(&format!(r#"{{"rules": [{json}]}}"#), Format::Json)
            else {
                continue;
            };
            let Some(rule) = document.rules.0.into_iter().next() else {
                continue;
            };
            let matches = matched(&json, &peers, &samples);
            rules.push((rule, matches));
        }

        // Ambiguous samples: a path with `//` or an encoded dot, no host, a
        // repeated header or a list in one header.
        let ambiguous = |i: usize| {
            let sample = &samples[i % samples.len()];
            sample.path.contains("//")
                || sample.path.contains("%2e")
                || sample.host.is_none()
                || sample.headers.len() == 2 && sample.headers[0] == sample.headers[1]
                || sample.headers.iter().any(|(_, v)| v.contains(','))
        };
        let mut nevers = 0;
        for (rule, matches) in &rules {
            if !dead_values(rule, &mut |_, _| {}) {
                continue;
            }
            nevers += 1;
            for (i, matched) in matches.iter().enumerate() {
                let allowed_miss = rule.action != Action::Allow && ambiguous(i);
                assert!(
                    !matched || allowed_miss,
                    "{rule:?} said never to match, but sample {i} matches"
                );
            }
        }
        assert!(
            nevers > 10,
            "too few never-match claims to mean anything: {nevers}"
        );

        let mut claims = 0;
        for (inner, inner_matches) in &rules {
            for (outer, outer_matches) in &rules {
                let checked = matches!(
                    (inner.action, outer.action),
                    (Action::Allow, _) | (Action::Deny, Action::Deny)
                );
                if !checked || !covers(outer, inner) {
                    continue;
                }
                claims += 1;
                for (i, (a, b)) in inner_matches.iter().zip(outer_matches).enumerate() {
                    assert!(
                        !a || *b,
                        "{:?} said to cover {:?}, but sample {i} matches only the latter",
                        outer,
                        inner
                    );
                }
            }
        }
        assert!(
            claims > 1000,
            "too few coverage claims to mean anything: {claims}"
        );
    }

    #[test]
    fn path_segments_agree_with_the_path_matcher() {
        let patterns = [
            "/", "/a", "/a/", "/a/b", "/*", "/a/*", "/*/b", "/**", "/a/**", "/*/**", "/a/*/c",
            "/a/b/**",
        ];
        let paths = [
            "/", "/a", "/a/", "/b", "/a/b", "/a/c", "/x/b", "/a/b/", "/a/b/c", "/a/x/c", "/x/y/z",
        ];
        let parsed: Vec<PathPattern> = patterns.iter().map(|p| p.parse().unwrap()).collect();
        for p in &parsed {
            for q in &parsed {
                let (sp, sq) = (&p.segments, &q.segments);
                let matched_p: Vec<&str> = paths.iter().copied().filter(|x| p.matches(x)).collect();
                if sp.within(sq) {
                    for path in &matched_p {
                        assert!(q.matches(path), "{} within {} but {path}", p.raw, q.raw);
                    }
                }
                if sp.disjoint(sq) {
                    for path in &matched_p {
                        assert!(!q.matches(path), "{} disjoint {} but {path}", p.raw, q.raw);
                    }
                }
            }
        }
        let segments = |p: &str| p.parse::<PathPattern>().unwrap().segments;
        assert!(segments("/a/*").within(&segments("/a/**")));
        assert!(!segments("/a/**").within(&segments("/a/*")));
        assert!(segments("/a/").disjoint(&segments("/a/*")));
        // Lint compares the canonical spelling, as decisions do.
        assert!(segments("/users/%61dmin").within(&segments("/users/admin")));
    }

    #[test]
    fn a_path_excluded_under_another_spelling_is_refused() {
        let err = Policy::parse(
            r#"{"rules": [{"name": "a", "action": "allow", "from": {"any": true},
                "to": {"paths": ["/users/admin/keys", "/other"],
                       "not_paths": ["/users/%61dmin/*"]}}]}"#,
            Format::Json,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("path /users/admin/keys can never match"),
            "{err}"
        );
    }

    #[test]
    fn value_shapes_agree_with_the_value_matcher() {
        let patterns = ["*", "a", "ab", "a*", "ab*", "*b", "*ab", "b*"];
        let values = ["", "a", "ab", "abc", "b", "ba", "cab", "bab"];
        let parsed: Vec<ValuePattern> = patterns.iter().map(|p| p.parse().unwrap()).collect();
        for p in &parsed {
            for q in &parsed {
                let (sp, sq) = (ValueShape::of(p), ValueShape::of(q));
                for value in values.iter().filter(|v| p.matches(v)) {
                    if sp.within(sq) {
                        assert!(q.matches(value), "{} within {} but {value}", p.raw, q.raw);
                    }
                    if sp.disjoint(sq) {
                        assert!(
                            !q.matches(value),
                            "{} disjoint {} but {value}",
                            p.raw,
                            q.raw
                        );
                    }
                }
            }
        }
    }

    fn notes(rules: &str) -> Vec<String> {
        let policy = Policy::parse(&format!(r#"{{"rules": [{rules}]}}"#), Format::Json).unwrap();
        policy
            .upgrade_notes()
            .iter()
            .map(|n| format!("{} {}", n.rule(), n.message()))
            .collect()
    }

    #[test]
    fn upgrade_notes_name_http_rules_that_now_match_grpc_calls() {
        let found = notes(
            r#"{"name": "a", "action": "deny", "from": {"any": true}, "to": {"paths": ["/admin/**"]}},
               {"name": "b", "action": "allow", "from": {"any": true}, "to": {"paths": ["/v1/items/*"]}},
               {"name": "c", "action": "allow", "from": {"any": true}, "to": {"methods": ["PUT"], "paths": ["/x/y"]}},
               {"name": "d", "action": "allow", "from": {"any": true}, "to": {"grpc": ["p.S/*"]}},
               {"name": "e", "action": "allow", "from": {"any": true}, "to": {"not_methods": ["DELETE"]}}"#,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("a also matches gRPC calls"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("e also matches gRPC calls"),
            "{found:?}"
        );
    }

    #[test]
    fn upgrade_notes_name_rules_whose_get_now_covers_head() {
        let found = notes(
            r#"{"name": "a", "action": "allow", "from": {"any": true}, "to": {"methods": ["GET"]}},
               {"name": "b", "action": "allow", "from": {"any": true}, "to": {"methods": ["GET", "HEAD"]}}"#,
        );
        assert_eq!(found, ["a names GET, which now also covers HEAD"]);
    }
}
