//! The outcome of one authorization decision.

use std::fmt;
use std::sync::Arc;

/// What a policy decided for a request, before dry-run is taken into account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// An `allow` rule matched and no `deny` rule did.
    Allow,
    /// A `deny` rule matched, or no `allow` rule did.
    Deny,
}

impl Verdict {
    /// `"allow"` or `"deny"`, for logs and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The outcome of [`Policy::decide`](crate::Policy::decide): whether to let the
/// request through, and the rule and reason to log.
///
/// Producing one does not allocate unless `audit` rules matched: rule names
/// are shared with the policy.
///
/// Callers act on [`is_allowed`](Self::is_allowed) and should log every
/// decision with its [`reason`](Self::reason). In a dry-run policy, a request
/// the policy would deny is let through: `is_allowed()` is `true`, `verdict()`
/// is [`Verdict::Deny`] and `dry_run()` is `true` — log that as "would deny".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    verdict: Verdict,
    dry_run: bool,
    rule: Option<Arc<str>>,
    audit: Vec<Arc<str>>,
}

// === impl Decision ===

impl Decision {
    pub(crate) fn new(
        verdict: Verdict,
        dry_run: bool,
        rule: Option<Arc<str>>,
        audit: Vec<Arc<str>>,
    ) -> Self {
        Self {
            verdict,
            dry_run,
            rule,
            audit,
        }
    }

    /// Whether the caller must let the request through: the verdict is
    /// [`Verdict::Allow`], or the policy is in dry-run mode.
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow || self.dry_run
    }

    /// What the policy decided, before dry-run.
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// The name of the deciding rule; `None` when no rule matched and the
    /// request was denied by default.
    #[must_use]
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// [`rule`](Self::rule) as the policy holds it: cloning the `Arc` copies no
    /// bytes, for labels and records that outlive the decision.
    #[must_use]
    pub fn rule_shared(&self) -> Option<&Arc<str>> {
        self.rule.as_ref()
    }

    /// A one-line explanation for logs: `allowed by rule x`, `denied by rule
    /// y`, or `no allow rule matched (default deny)`, with `(dry run, not
    /// enforced)` appended when a dry-run policy let a denied request through.
    #[must_use]
    pub fn reason(&self) -> Reason<'_> {
        Reason { decision: self }
    }

    /// The `audit` rules that matched, in policy order. They never change the
    /// outcome.
    pub fn audit_rules(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.audit.iter().map(|name| &**name)
    }

    /// [`audit_rules`](Self::audit_rules) as the policy holds them, as
    /// [`rule_shared`](Self::rule_shared).
    pub fn audit_rules_shared(&self) -> impl ExactSizeIterator<Item = &Arc<str>> + '_ {
        self.audit.iter()
    }

    /// Whether the policy was in dry-run mode.
    #[must_use]
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }
}

impl fmt::Display for Decision {
    /// Same as [`Decision::reason`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.reason(), f)
    }
}

/// The explanation of a [`Decision`]; see [`Decision::reason`].
#[derive(Clone, Copy, Debug)]
pub struct Reason<'a> {
    decision: &'a Decision,
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.decision;
        match (d.verdict, d.rule.as_deref()) {
            (Verdict::Allow, Some(rule)) => write!(f, "allowed by rule {rule}")?,
            // Unreachable by construction: only a rule can allow.
            (Verdict::Allow, None) => f.write_str("allowed")?,
            (Verdict::Deny, Some(rule)) => write!(f, "denied by rule {rule}")?,
            (Verdict::Deny, None) => f.write_str("no allow rule matched (default deny)")?,
        }
        if d.dry_run && d.verdict == Verdict::Deny {
            f.write_str(" (dry run, not enforced)")?;
        }
        Ok(())
    }
}
