//! Rules that can never match, and values of a rule that can never match while
//! the rest of the rule can: one rule at a time, against its own `not_` fields.

use super::LintKind;
use super::shapes::ValueShape;
use crate::policy::model::{Action, Condition, From, Rule, To};
use crate::policy::pattern::{Domain, Id, IdPattern, PathPattern, ValuePattern, quoted};

/// Reports the values of `rule` that can never match; returns whether the
/// whole rule can never match.
pub(super) fn dead_values(rule: &Rule, report: &mut impl FnMut(LintKind, String)) -> bool {
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
pub(super) fn dead_from(from: &From, report: &mut impl FnMut(LintKind, String)) -> bool {
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

pub(super) const ROOT_ID: &str = "it is a trust domain's own ID, which no SVID carries (write <trust domain>/** for every workload)";

/// Why `pattern`, in `from.patterns` of a rule without `ids`, can match no
/// verified peer.
pub(super) fn pattern_excluded(from: &From, pattern: &IdPattern) -> Option<String> {
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
pub(super) fn dead_paths(to: &To) -> Vec<String> {
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

pub(super) fn path_excluded<'a>(to: &'a To, path: &PathPattern) -> Option<&'a PathPattern> {
    to.not_paths
        .iter()
        .flat_map(|n| n.iter())
        .find(|n| path.segments.within(&n.segments))
}

/// Why an HTTP `to` matches no request with an unambiguous path.
pub(super) fn to_never_matches(to: &To) -> Option<String> {
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

pub(super) fn excluded_value<'a>(
    condition: &'a Condition,
    value: &ValuePattern,
) -> Option<&'a ValuePattern> {
    let shape = ValueShape::of(value);
    condition
        .not_values
        .iter()
        .flat_map(|n| n.iter())
        .find(|n| shape.within(ValueShape::of(n)))
}

/// The `values` of a condition that `not_values` leaves something of; `None`
/// when the condition has no `values` (any present value, or absence).
pub(super) fn live_values(condition: &Condition) -> Option<Vec<ValueShape<'_>>> {
    condition.values.as_ref().map(|values| {
        values
            .iter()
            .filter(|v| excluded_value(condition, v).is_none())
            .map(ValueShape::of)
            .collect()
    })
}

/// Two conditions on one header that no single value (nor absence) meets.
pub(super) fn contradictory_conditions(when: &[Condition]) -> Option<String> {
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
