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

use std::fmt;
use std::sync::Arc;

use self::coverage::{CoverIndex, Methods, covers};
use self::dead::dead_values;
use super::model::{Action, NonEmpty, Rule};
use super::pattern::{PathPattern, quoted};

mod coverage;
mod dead;
mod peers;
mod shapes;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

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
/// Anonymous peers (see `from.unauthenticated` in `docs/policy.md`) count as
/// peers too: a rule that matches them is covered only by a rule that matches
/// them as well, and a rule for anonymous peers alone is covered by any rule
/// that matches them on every request it matches. Verified peers are
/// X.509-SVIDs, whose IDs always have a path, and
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
