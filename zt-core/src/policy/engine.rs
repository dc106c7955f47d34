//! The compiled policy (placeholder until the indexed engine lands).

use std::sync::Arc;

use super::{Request, Verdict};
use crate::{IdMatcher, SpiffeId};

pub(crate) struct Engine {
    rules: Vec<(Arc<str>, IdMatcher)>,
}

pub(crate) struct Outcome {
    pub(crate) verdict: Verdict,
    pub(crate) rule: Option<Arc<str>>,
    pub(crate) audit: Vec<Arc<str>>,
}

impl Engine {
    pub(crate) fn empty() -> Self {
        Self { rules: Vec::new() }
    }

    pub(crate) fn compile(rules: Vec<IdMatcher>) -> Self {
        Self {
            rules: rules
                .into_iter()
                .map(|m| (Arc::from(m.to_string()), m))
                .collect(),
        }
    }

    pub(crate) fn decide(&self, peer: &SpiffeId, _request: &Request<'_>) -> Outcome {
        let rule = self
            .rules
            .iter()
            .find(|(_, m)| m.matches(peer))
            .map(|(n, _)| Arc::clone(n));
        Outcome {
            verdict: if rule.is_some() {
                Verdict::Allow
            } else {
                Verdict::Deny
            },
            rule,
            audit: Vec::new(),
        }
    }

    pub(crate) fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub(crate) fn rule_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.rules.iter().map(|(n, _)| &**n)
    }
}
