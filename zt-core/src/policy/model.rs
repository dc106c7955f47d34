//! The policy document: serde types that validate while they deserialize, so
//! every error carries the location the format's parser knows, and the checks
//! that span a whole rule (empty rules, contradictions, duplicate names).

use std::collections::HashMap;
use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::pattern::{
    Domain, GrpcPattern, HeaderName, HostPattern, Id, IdPattern, Method, PathPattern, PatternIndex,
    RuleName, ValuePattern, quoted,
};
use super::{Format, Location, Mode, PolicyError};
use crate::SpiffeId;

/// A whole policy document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Document {
    #[serde(default)]
    pub(crate) mode: Mode,
    pub(crate) rules: Rules,
}

/// The rules, in document order, with unique names.
#[derive(Debug, Default)]
pub(crate) struct Rules(pub(crate) Vec<Rule>);

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    Allow,
    Deny,
    Audit,
}

/// A validated rule. At least one of `from` and `to` is present.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: Arc<str>,
    pub(crate) action: Action,
    pub(crate) from: Option<From>,
    pub(crate) to: Option<To>,
    pub(crate) when: Box<[Condition]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: RuleName,
    action: Action,
    #[serde(default, deserialize_with = "present")]
    from: Option<From>,
    #[serde(default, deserialize_with = "present")]
    to: Option<To>,
    #[serde(default, deserialize_with = "present")]
    when: Option<NonEmpty<Condition>>,
}

/// Who a rule applies to. Present fields are ANDed; the values of one field
/// are ORed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct From {
    #[serde(default, deserialize_with = "present")]
    pub(crate) any: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) ids: Option<NonEmpty<Id>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) trust_domains: Option<NonEmpty<Domain>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) patterns: Option<NonEmpty<IdPattern>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) not_ids: Option<NonEmpty<Id>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) not_trust_domains: Option<NonEmpty<Domain>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) not_patterns: Option<NonEmpty<IdPattern>>,
    /// `patterns` and `not_patterns` indexed for matching (see `normalize`).
    #[serde(skip)]
    pub(crate) patterns_index: Option<PatternIndex>,
    #[serde(skip)]
    pub(crate) not_patterns_index: Option<PatternIndex>,
}

/// Which requests a rule applies to. Present fields are ANDed; the values of one
/// field are ORed. Every field applies to every request, whatever its protocol:
/// `grpc` matches by the path's shape, `paths` matches gRPC calls as well.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct To {
    #[serde(default, deserialize_with = "present")]
    pub(crate) hosts: Option<NonEmpty<HostPattern>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) not_hosts: Option<NonEmpty<HostPattern>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) methods: Option<NonEmpty<Method>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) paths: Option<NonEmpty<PathPattern>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) grpc: Option<NonEmpty<GrpcPattern>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) not_methods: Option<NonEmpty<Method>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) not_paths: Option<NonEmpty<PathPattern>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) not_grpc: Option<NonEmpty<GrpcPattern>>,
}

/// A condition on one request header.
#[derive(Debug)]
pub(crate) struct Condition {
    pub(crate) header: HeaderName,
    pub(crate) values: Option<NonEmpty<ValuePattern>>,
    pub(crate) not_values: Option<NonEmpty<ValuePattern>>,
    /// The header is a list: its members (repeated fields, comma-separated
    /// elements) are matched one by one.
    pub(crate) members: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    header: HeaderName,
    #[serde(default)]
    members: bool,
    #[serde(default, deserialize_with = "present")]
    values: Option<NonEmpty<ValuePattern>>,
    #[serde(default, deserialize_with = "present")]
    not_values: Option<NonEmpty<ValuePattern>>,
}

/// A list with at least one element.
#[derive(Debug)]
pub(crate) struct NonEmpty<T>(pub(crate) Box<[T]>);

impl<T> std::ops::Deref for NonEmpty<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Ord> NonEmpty<T> {
    fn sort_dedup(&mut self) {
        let mut items = std::mem::take(&mut self.0).into_vec();
        items.sort_unstable();
        items.dedup();
        self.0 = items.into_boxed_slice();
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmpty<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<T>::deserialize(deserializer)?;
        if items.is_empty() {
            // An empty list would match nothing (or, negated, exclude nothing);
            // it is far more likely a templating slip than an intent.
            return Err(de::Error::custom(
                "empty list: give at least one value or leave the field out",
            ));
        }
        Ok(Self(items.into_boxed_slice()))
    }
}

/// For optional fields: absent is `None`, but an explicit `null` (YAML's
/// `ids:` with nothing after it) is an error rather than "no constraint",
/// which would silently widen the rule.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

// === impl Rules ===

impl<'de> Deserialize<'de> for Rules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RulesVisitor;

        impl<'de> Visitor<'de> for RulesVisitor {
            type Value = Rules;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of rules")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rules, A::Error> {
                let mut rules = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                let mut names = HashMap::new();
                while let Some(rule) = seq.next_element_seed(UniqueRule {
                    names: &mut names,
                    position: rules.len().saturating_add(1),
                })? {
                    rules.push(rule);
                }
                Ok(Rules(rules))
            }
        }

        deserializer.deserialize_seq(RulesVisitor)
    }
}

/// Deserializes one rule and checks that its name is new, so that the error
/// for a duplicate points at the duplicate rather than at the list.
struct UniqueRule<'a> {
    names: &'a mut HashMap<Arc<str>, usize>,
    /// 1-based position in the list.
    position: usize,
}

impl<'de> de::DeserializeSeed<'de> for UniqueRule<'_> {
    type Value = Rule;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Rule, D::Error> {
        let rule = Rule::deserialize(deserializer)?;
        if let Some(first) = self.names.insert(Arc::clone(&rule.name), self.position) {
            return Err(de::Error::custom(format!(
                "rule {}: duplicate rule name (rules {first} and {})",
                quoted(&rule.name),
                self.position
            )));
        }
        Ok(rule)
    }
}

// === impl Rule ===

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawRule::deserialize(deserializer)?;
        let name = raw.name.0;
        let rule = Rule {
            name: Arc::clone(&name),
            action: raw.action,
            from: raw.from,
            to: raw.to,
            when: raw.when.map_or_else(Box::default, |when| when.0),
        };
        let mut rule = rule;
        if let Some(from) = &mut rule.from {
            from.index_patterns();
        }
        rule.validate()
            .map_err(|why| de::Error::custom(format!("rule {}: {why}", quoted(&name))))?;
        if let Some(from) = &mut rule.from {
            from.normalize();
        }
        Ok(rule)
    }
}

impl Rule {
    /// The checks that need the whole rule.
    fn validate(&self) -> Result<(), String> {
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
    /// Sorts and deduplicates the ID and trust domain lists, for binary search.
    fn normalize(&mut self) {
        for list in [&mut self.ids, &mut self.not_ids].into_iter().flatten() {
            list.sort_dedup();
        }
        for list in [&mut self.trust_domains, &mut self.not_trust_domains]
            .into_iter()
            .flatten()
        {
            list.sort_dedup();
        }
    }

    /// Indexes the pattern lists; validation matches through the indexes too, so
    /// checking every ID against `not_patterns` is linear, not a product.
    fn index_patterns(&mut self) {
        self.patterns_index = self.patterns.as_deref().map(PatternIndex::new);
        self.not_patterns_index = self.not_patterns.as_deref().map(PatternIndex::new);
    }

    /// Whether `patterns` (indexed) has a match for `id`.
    /// Every `From` is indexed when built (`Rule::deserialize`, `allow_patterns`).
    pub(crate) fn patterns_match(&self, id: &SpiffeId) -> bool {
        self.patterns_index
            .as_ref()
            .is_some_and(|index| index.matches(id))
    }

    /// Whether `not_patterns` (indexed) has a match for `id`.
    pub(crate) fn not_patterns_match(&self, id: &SpiffeId) -> bool {
        self.not_patterns_index
            .as_ref()
            .is_some_and(|index| index.matches(id))
    }

    fn has_positive(&self) -> bool {
        self.ids.is_some() || self.trust_domains.is_some() || self.patterns.is_some()
    }

    fn is_empty(&self) -> bool {
        self.any.is_none()
            && !self.has_positive()
            && self.not_ids.is_none()
            && self.not_trust_domains.is_none()
            && self.not_patterns.is_none()
    }

    fn validate(&self) -> Result<(), String> {
        if self.is_empty() {
            return Err(
                "from is empty: leave it out, or write from: {any: true} to match \
                        any authenticated peer"
                    .to_owned(),
            );
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
    fn is_empty(&self) -> bool {
        self.methods.is_none()
            && self.not_methods.is_none()
            && self.paths.is_none()
            && self.not_paths.is_none()
            && self.grpc.is_none()
            && self.not_grpc.is_none()
            && self.hosts.is_none()
            && self.not_hosts.is_none()
    }

    pub(crate) fn has_grpc(&self) -> bool {
        self.grpc.is_some() || self.not_grpc.is_some()
    }

    pub(crate) fn has_paths(&self) -> bool {
        self.paths.is_some() || self.not_paths.is_some()
    }

    pub(crate) fn has_hosts(&self) -> bool {
        self.hosts.is_some() || self.not_hosts.is_some()
    }

    fn validate(&self) -> Result<(), String> {
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

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawCondition::deserialize(deserializer)?;
        let mut condition = Condition {
            header: raw.header,
            values: raw.values,
            not_values: raw.not_values,
            members: raw.members,
        };
        if condition.is_host() {
            // The host is compared in canonical form: lower case, no trailing dot.
            if condition.members {
                return Err(de::Error::custom(
                    "when condition on header host: a request has one host; members does not apply",
                ));
            }
            for list in [&mut condition.values, &mut condition.not_values]
                .into_iter()
                .flatten()
            {
                for value in list.0.iter_mut() {
                    *value = value.host_form().map_err(de::Error::custom)?;
                }
            }
        }
        Ok(condition)
    }
}

impl Condition {
    /// Conditions on `host` match the request's canonical host, from the HTTP/2
    /// `:authority` or the HTTP/1.1 `Host`, not a header value.
    pub(crate) fn is_host(&self) -> bool {
        &*self.header.0 == "host"
    }

    fn validate(&self) -> Result<(), String> {
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

// === impl Document ===

impl Document {
    /// One `allow` rule per pattern, named after it.
    pub(crate) fn allow_patterns<I, S>(patterns: I) -> Result<Self, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut seen = HashSet::new();
        let mut rules = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let parsed = IdPattern::new(pattern).map_err(|source| PolicyError::InvalidPattern {
                pattern: pattern.to_owned(),
                source,
            })?;
            if !seen.insert(pattern.to_owned()) {
                continue;
            }
            let mut from = From {
                patterns: Some(NonEmpty(Box::new([parsed]))),
                ..From::default()
            };
            from.index_patterns();
            rules.push(Rule {
                name: Arc::from(pattern),
                action: Action::Allow,
                from: Some(from),
                to: None,
                when: Box::default(),
            });
        }
        Ok(Self {
            mode: Mode::Enforce,
            rules: Rules(rules),
        })
    }
}

/// Parses a whole document in `format`.
pub(crate) fn parse(text: &str, format: Format) -> Result<Document, PolicyError> {
    let invalid = |location: Option<Location>, message: String| PolicyError::Invalid {
        path: None,
        format,
        location,
        message: sanitize(&message),
    };
    match format {
        Format::Json => serde_json::from_str(text).map_err(|err| {
            let location = (err.line() > 0).then(|| Location {
                line: err.line(),
                column: err.column(),
            });
            // serde_json appends the position to its message; it is kept apart here.
            let suffix = format!(" at line {} column {}", err.line(), err.column());
            invalid(location, strip_position(err.to_string(), &suffix))
        }),
        #[cfg(feature = "policy-toml")]
        Format::Toml => toml::from_str(text).map_err(|err| {
            let location = err.span().map(|span| location_of(text, span.start));
            invalid(location, err.message().to_owned())
        }),
        #[cfg(feature = "policy-yaml")]
        Format::Yaml => serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|err| {
            let location = err.location().map(|at| Location {
                line: usize::try_from(at.line()).unwrap_or(usize::MAX),
                column: usize::try_from(at.column()).unwrap_or(usize::MAX),
            });
            let message = yaml_message(&err);
            let message = match location {
                Some(at) => strip_position(message, &format!(" at {at}")),
                None => message,
            };
            invalid(location, message)
        }),
        #[allow(
            unreachable_patterns,
            reason = "reachable when a format feature is off"
        )]
        _ => Err(PolicyError::FormatNotEnabled { format }),
    }
}

/// Parser error text made safe to log and show: control characters escaped, so
/// that a field name holding a newline cannot forge a log line, and string values
/// the parser quotes (`invalid type: string "…"`) replaced by their length, so
/// that a file of secrets given as the policy by mistake does not end up in logs
/// and status pages. Field names stay (escaped): they say what to fix.
pub(crate) fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        let (before, from) = rest.split_at(at);
        push_escaped(&mut out, before);
        let value = from.get("string \"".len()..).unwrap_or_default();
        // The closing quote: the first one not escaped by a backslash.
        let mut escaped = false;
        let end = value.char_indices().find_map(|(i, c)| {
            let close = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            close.then_some(i)
        });
        match end {
            Some(end) => {
                out.push_str(&format!("a string of {end} bytes"));
                rest = value.get(end.saturating_add(1)..).unwrap_or_default();
            }
            None => {
                out.push_str("a string");
                rest = "";
            }
        }
    }
    push_escaped(&mut out, rest);
    out
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

fn strip_position(message: String, suffix: &str) -> String {
    match message.strip_suffix(suffix) {
        Some(stripped) => stripped.to_owned(),
        None => message,
    }
}

/// The 1-based line and column of byte `offset` in `text`.
#[cfg(feature = "policy-toml")]
fn location_of(text: &str, offset: usize) -> Location {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i.saturating_add(1));
    Location {
        line: before.matches('\n').count().saturating_add(1),
        column: before
            .get(line_start..)
            .map_or(0, |line| line.chars().count())
            .saturating_add(1),
    }
}

#[cfg(feature = "policy-yaml")]
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    // Events are bounded by the input size (MAX_POLICY_BYTES) for everything
    // but alias expansion, which the budget's alias limits bound. The default
    // of one million events is too few for a policy of 100,000 rules.
    budget.max_events = super::MAX_POLICY_BYTES;
    // Nodes, like events, take at least a byte of input each; the default of
    // 250,000 refused policies of about 25,000 rules.
    budget.max_nodes = super::MAX_POLICY_BYTES;
    serde_saphyr::options! {
        budget: Some(budget),
        // `yes`/`on` silently becoming `true` has no place in a policy.
        strict_booleans: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        with_snippet: false,
    }
}

#[cfg(feature = "policy-yaml")]
fn yaml_message(err: &serde_saphyr::Error) -> String {
    err.render_with_options(serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    })
}
