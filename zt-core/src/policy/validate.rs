//! The checks a rule passes while it loads, beyond what each value's own parser
//! checks: empty rules and fields, contradictions between a field and its `not_`
//! field, and values that the rest of the rule makes impossible to match. Each
//! error is reported at the rule's location in the document.

use std::collections::HashSet;
use std::hash::Hash;

use super::model::{Condition, From, NonEmpty, Rule, To};
use super::pattern::{
    Domain, GrpcPattern, HostPattern, Id, IdPattern, Method, PathPattern, ValuePattern, quoted,
};
use crate::id::SpiffeId;

// === impl Rule ===

impl Rule {
    /// The checks that need the whole rule.
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.from.is_none() && self.to.is_none() {
            return Err(
                "empty rule: give it from or to (to match every request from any \
                        authenticated peer, write from: {any: true})"
                    .to_owned(),
            );
        }
        if let Some(from) = &self.from {
            from.validate()?;
        }
        if let Some(to) = &self.to {
            to.validate()?;
        }
        for condition in &self.when {
            condition.validate()?;
        }
        Ok(())
    }
}

// === impl From ===

impl From {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.is_empty() {
            return Err(
                "from is empty: leave it out, or write from: {any: true} to match \
                        any authenticated peer"
                    .to_owned(),
            );
        }
        match self.unauthenticated {
            Some(false) => {
                return Err(
                    "from.unauthenticated: false has no meaning: remove it (allow rules \
                     without unauthenticated: true never admit anonymous peers)"
                        .to_owned(),
                );
            }
            Some(true) if !self.is_unauthenticated_only() => {
                return Err(
                    "from.unauthenticated: true cannot be combined with any other from field: \
                     an anonymous peer has no ID to match (write a separate rule)"
                        .to_owned(),
                );
            }
            _ => {}
        }
        if let Some(jwt) = &self.jwt {
            if jwt.unauthenticated.is_some() || jwt.jwt.is_some() {
                return Err(
                    "from.jwt takes any, ids, trust_domains, patterns and their not_ \
                     variants, matched against the token's subject"
                        .to_owned(),
                );
            }
            if jwt.is_empty() {
                return Err(
                    "from.jwt is empty: write jwt: {any: true} to require any valid \
                     JWT-SVID"
                        .to_owned(),
                );
            }
            jwt.validate().map_err(|why| format!("from.jwt: {why}"))?;
        }
        match self.any {
            Some(false) => {
                return Err("from.any: false would match nobody: remove it".to_owned());
            }
            Some(true) if self.has_positive() => {
                return Err(
                    "from.any: true cannot be combined with ids, trust_domains or \
                            patterns"
                        .to_owned(),
                );
            }
            _ => {}
        }
        let raw_patterns = |list: &Option<NonEmpty<IdPattern>>| -> Vec<String> {
            list.iter()
                .flat_map(|l| l.iter())
                .map(|p| p.raw.to_string())
                .collect()
        };
        both("ids", &self.ids, "not_ids", &self.not_ids, |id| {
            id.0.to_string()
        })?;
        both(
            "trust_domains",
            &self.trust_domains,
            "not_trust_domains",
            &self.not_trust_domains,
            |td| td.0.to_string(),
        )?;
        overlap(
            "patterns",
            &raw_patterns(&self.patterns),
            "not_patterns",
            &raw_patterns(&self.not_patterns),
        )?;

        // Each positive value must be able to match under the other fields;
        // one that cannot is a mistake the operator wants to hear about.
        for Id(id) in self.ids.iter().flat_map(|ids| ids.iter()) {
            if let Some(why) = self.id_excluded_by(id) {
                return Err(format!("id {id} can never match: {why}"));
            }
        }
        for pattern in self.patterns.iter().flat_map(|p| p.iter()) {
            let td = &pattern.trust_domain;
            if let Some(tds) = &self.trust_domains
                && !tds.iter().any(|Domain(t)| t == td)
            {
                return Err(format!(
                    "pattern {} can never match: its trust domain is not in trust_domains",
                    pattern.raw
                ));
            }
            if self
                .not_trust_domains
                .as_ref()
                .is_some_and(|tds| tds.iter().any(|Domain(t)| t == td))
            {
                return Err(format!(
                    "pattern {} can never match: its trust domain is in not_trust_domains",
                    pattern.raw
                ));
            }
        }
        for Domain(td) in self.trust_domains.iter().flat_map(|tds| tds.iter()) {
            if self.ids.is_none()
                && let Some(patterns) = &self.patterns
                && !patterns.iter().any(|p| p.trust_domain == *td)
            {
                return Err(format!(
                    "trust domain {td} in trust_domains can never match: no pattern is in it"
                ));
            }
        }
        Ok(())
    }

    /// Whether `unauthenticated` is the only field present.
    fn is_unauthenticated_only(&self) -> bool {
        self.jwt.is_none()
            && self.any.is_none()
            && !self.has_positive()
            && self.not_ids.is_none()
            && self.not_trust_domains.is_none()
            && self.not_patterns.is_none()
    }

    /// Why `id`, listed in `ids`, fails the rule's other `from` fields.
    fn id_excluded_by(&self, id: &SpiffeId) -> Option<&'static str> {
        if self
            .trust_domains
            .as_ref()
            .is_some_and(|tds| !tds.iter().any(|Domain(td)| td == id.trust_domain()))
        {
            return Some("its trust domain is not in trust_domains");
        }
        if self
            .not_trust_domains
            .as_ref()
            .is_some_and(|tds| tds.iter().any(|Domain(td)| td == id.trust_domain()))
        {
            return Some("its trust domain is in not_trust_domains");
        }
        if self.patterns.is_some() && !self.patterns_match(id) {
            return Some("it matches none of patterns");
        }
        if self.not_patterns_match(id) {
            return Some("it matches not_patterns");
        }
        None
    }
}

// === impl To ===

impl To {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.is_empty() {
            return Err("to is empty: leave it out to match every request".to_owned());
        }
        let raw_hosts = |list: &Option<NonEmpty<HostPattern>>| -> Vec<String> {
            list.iter()
                .flat_map(|l| l.iter())
                .map(|p| p.raw.to_ascii_lowercase())
                .collect()
        };
        overlap(
            "hosts",
            &raw_hosts(&self.hosts),
            "not_hosts",
            &raw_hosts(&self.not_hosts),
        )?;
        both(
            "methods",
            &self.methods,
            "not_methods",
            &self.not_methods,
            |m| m.0.to_string(),
        )?;
        let raw_paths = |list: &Option<NonEmpty<PathPattern>>| -> Vec<String> {
            list.iter()
                .flat_map(|l| l.iter())
                .map(|p| p.raw.to_string())
                .collect()
        };
        overlap(
            "paths",
            &raw_paths(&self.paths),
            "not_paths",
            &raw_paths(&self.not_paths),
        )?;
        for path in self
            .paths
            .iter()
            .flat_map(|p| p.iter())
            .filter(|p| p.is_exact())
        {
            if let Some(excluding) = self
                .not_paths
                .iter()
                .flat_map(|p| p.iter())
                .find(|not| not.matches(&path.canonical))
            {
                return Err(format!(
                    "path {} can never match: not_paths excludes it with {}",
                    path.raw, excluding.raw
                ));
            }
        }
        // Upgrades are decided as the GET that asks for them, whichever HTTP
        // version carried it.
        if self.upgrades.is_some() {
            let names_get = |list: &Option<NonEmpty<Method>>| {
                list.iter().flat_map(|l| l.iter()).any(|m| &*m.0 == "GET")
            };
            if self.methods.is_some() && !names_get(&self.methods) {
                return Err(
                    "upgrades can never match: an upgrade is decided as a GET request and \
                     methods does not name GET"
                        .to_owned(),
                );
            }
            if names_get(&self.not_methods) {
                return Err(
                    "upgrades can never match: an upgrade is decided as a GET request and \
                     not_methods excludes GET"
                        .to_owned(),
                );
            }
        }
        let raw_grpc = |list: &Option<NonEmpty<GrpcPattern>>| -> Vec<String> {
            list.iter()
                .flat_map(|l| l.iter())
                .map(|p| p.raw.to_string())
                .collect()
        };
        overlap(
            "grpc",
            &raw_grpc(&self.grpc),
            "not_grpc",
            &raw_grpc(&self.not_grpc),
        )?;
        for call in self.grpc.iter().flat_map(|g| g.iter()) {
            let Some(parts) = call.as_call() else {
                continue;
            };
            if let Some(excluding) = self
                .not_grpc
                .iter()
                .flat_map(|g| g.iter())
                .find(|not| not.matches(parts))
            {
                return Err(format!(
                    "gRPC method {} can never match: not_grpc excludes it with {}",
                    call.raw, excluding.raw
                ));
            }
        }
        Ok(())
    }
}

// === impl Condition ===

impl Condition {
    pub(super) fn validate(&self) -> Result<(), String> {
        let header = &self.header.0;
        if self.values.is_none() && self.not_values.is_none() {
            return Err(format!(
                "when condition on header {header} needs values or not_values"
            ));
        }
        let raw = |list: &Option<NonEmpty<ValuePattern>>| -> Vec<String> {
            list.iter()
                .flat_map(|l| l.iter())
                .map(|v| v.raw.to_string())
                .collect()
        };
        overlap(
            "values",
            &raw(&self.values),
            "not_values",
            &raw(&self.not_values),
        )
        .map_err(|why| format!("when condition on header {header}: {why}"))?;
        for value in self
            .values
            .iter()
            .flat_map(|v| v.iter())
            .filter(|v| v.is_exact())
        {
            if let Some(excluding) = self
                .not_values
                .iter()
                .flat_map(|v| v.iter())
                .find(|not| not.matches(&value.raw))
            {
                return Err(format!(
                    "when condition on header {header}: value {} can never match: not_values \
                     excludes it with {}",
                    quoted(&value.raw),
                    quoted(&excluding.raw)
                ));
            }
        }
        Ok(())
    }
}

/// Fails when a value is in both a field and its not-variant.
fn both<T: Eq + Hash>(
    field: &str,
    values: &Option<NonEmpty<T>>,
    not_field: &str,
    not_values: &Option<NonEmpty<T>>,
    show: impl Fn(&T) -> String,
) -> Result<(), String> {
    let (Some(values), Some(not_values)) = (values, not_values) else {
        return Ok(());
    };
    let excluded: HashSet<&T> = not_values.iter().collect();
    match values.iter().find(|v| excluded.contains(v)) {
        Some(value) => Err(format!(
            "{} is in both {field} and {not_field}",
            quoted(&show(value))
        )),
        None => Ok(()),
    }
}

fn overlap(
    field: &str,
    values: &[String],
    not_field: &str,
    not_values: &[String],
) -> Result<(), String> {
    let excluded: HashSet<&String> = not_values.iter().collect();
    match values.iter().find(|v| excluded.contains(v)) {
        Some(value) => Err(format!(
            "{} is in both {field} and {not_field}",
            quoted(value)
        )),
        None => Ok(()),
    }
}
