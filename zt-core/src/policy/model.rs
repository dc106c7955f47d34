//! The policy document: serde types that validate while they deserialize, so
//! every error carries the location the format's parser knows, and the checks
//! that span a whole rule (empty rules, contradictions, duplicate names).

use std::collections::HashMap;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::pattern::{
    Domain, GrpcPattern, HeaderName, HostPattern, Id, IdPattern, Method, PathPattern, PatternIndex,
    RuleName, UpgradeName, ValuePattern, quoted,
};
use super::request::{RequestView, Tri, Upgrade};
use super::{Mode, PolicyError, Request};
use crate::id::SpiffeId;

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
    /// `true`: anonymous peers (no client certificate) and nobody else; alone
    /// in its `from` (see `validate`).
    #[serde(default, deserialize_with = "present")]
    pub(crate) unauthenticated: Option<bool>,
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
    /// The subject of the request's JWT-SVID, with the fields above (but
    /// `unauthenticated` and `jwt`): decided per request ([`From::jwt_matches`]).
    #[serde(default, deserialize_with = "present")]
    pub(crate) jwt: Option<Box<From>>,
    /// `patterns` and `not_patterns` indexed for matching (see `normalize`).
    #[serde(skip)]
    pub(crate) patterns_index: Option<PatternIndex>,
    #[serde(skip)]
    pub(crate) not_patterns_index: Option<PatternIndex>,
}

/// Which requests a rule applies to. Present fields are ANDed; the values of one
/// field are ORed. Every field applies to every request, whatever its protocol:
/// `grpc` matches by the path's shape, `paths` matches gRPC calls as well.
/// `upgrades` matches only requests that ask for one of the named upgrades; an
/// `allow` rule without it never admits an upgrade (see [`Rule::admits`]).
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
    #[serde(default, deserialize_with = "present")]
    pub(crate) upgrades: Option<NonEmpty<UpgradeName>>,
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

// === impl From ===

impl From {
    /// Sorts and deduplicates the ID and trust domain lists, for binary search.
    fn normalize(&mut self) {
        if let Some(jwt) = &mut self.jwt {
            jwt.normalize();
        }
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
        if let Some(jwt) = &mut self.jwt {
            jwt.index_patterns();
        }
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

    pub(super) fn has_positive(&self) -> bool {
        self.ids.is_some() || self.trust_domains.is_some() || self.patterns.is_some()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.unauthenticated.is_none()
            && self.any.is_none()
            && !self.has_positive()
            && self.not_ids.is_none()
            && self.not_trust_domains.is_none()
            && self.not_patterns.is_none()
            && self.jwt.is_none()
    }

    /// Whether the request's JWT-SVID meets `from.jwt` for a rule with `action`;
    /// `subject` is the token's verified subject, `None` when the request carries
    /// no token. Without `jwt`, any request does.
    ///
    /// A request without a token meets only a `jwt` of `not_` fields alone, and
    /// only for `deny` and `audit` rules: an `allow` rule that names tokens admits
    /// only requests that carry one, and a `deny` rule that excludes some tokens
    /// denies the requests that carry none as well.
    pub(crate) fn jwt_matches(&self, action: Action, subject: Option<&SpiffeId>) -> bool {
        let Some(jwt) = &self.jwt else {
            return true;
        };
        match subject {
            Some(subject) => jwt.matches(subject),
            None => action != Action::Allow && jwt.any.is_none() && !jwt.has_positive(),
        }
    }
}

// === impl To ===

impl To {
    pub(super) fn is_empty(&self) -> bool {
        self.methods.is_none()
            && self.not_methods.is_none()
            && self.paths.is_none()
            && self.not_paths.is_none()
            && self.grpc.is_none()
            && self.not_grpc.is_none()
            && self.hosts.is_none()
            && self.not_hosts.is_none()
            && self.upgrades.is_none()
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

// === meaning: what a rule's fields match ===

impl From {
    /// Whether a verified peer with this ID meets `from`.
    pub(crate) fn matches(&self, peer: &SpiffeId) -> bool {
        self.matches_peer(peer, false)
    }

    /// [`From::matches`], where `id_listed` says the caller already found the
    /// peer in `ids` (the engine's ID buckets). ID and trust domain lists are
    /// sorted (see `From::normalize`).
    pub(crate) fn matches_peer(&self, peer: &SpiffeId, id_listed: bool) -> bool {
        let from = self;
        // `unauthenticated` stands alone in its `from`: it matches no verified peer.
        if from.unauthenticated.is_some() {
            return false;
        }
        let td = peer.trust_domain();
        let has_id = |ids: &[Id]| ids.binary_search_by(|Id(id)| id.cmp(peer)).is_ok();
        let has_td = |tds: &[Domain]| tds.binary_search_by(|Domain(t)| t.cmp(td)).is_ok();
        (id_listed || from.ids.as_deref().is_none_or(has_id))
            && from.trust_domains.as_deref().is_none_or(has_td)
            && (from.patterns.is_none() || from.patterns_match(peer))
            && !from.not_ids.as_deref().is_some_and(has_id)
            && !from.not_trust_domains.as_deref().is_some_and(has_td)
            && !from.not_patterns_match(peer)
    }
}

impl Rule {
    /// Whether the rule's `from` matches an anonymous peer, one that presented no
    /// certificate. Only `from: {unauthenticated: true}` admits one to an `allow`
    /// rule; `deny` and `audit` rules without a positive `from` field (no `from`,
    /// or only `not_` fields) match it too, so deny stays the broader. `any`
    /// means any authenticated peer.
    pub(crate) fn matches_anonymous(&self) -> bool {
        let Some(from) = &self.from else {
            return self.action != Action::Allow;
        };
        if from.unauthenticated.is_some() {
            // Validation refuses `false`; were one to get here, it admits nobody.
            return from.unauthenticated == Some(true);
        }
        self.action != Action::Allow && from.any.is_none() && !from.has_positive()
    }
}

/// A field and its `not_` field: some value of the first matches (when present)
/// and no value of the second does (when present). Values are ORed, the two
/// fields ANDed, as everywhere in a rule.
fn field_holds<T>(
    values: &Option<NonEmpty<T>>,
    not_values: &Option<NonEmpty<T>>,
    matches: impl Fn(&T) -> bool,
) -> bool {
    values.as_deref().is_none_or(|vs| vs.iter().any(&matches))
        && !not_values
            .as_deref()
            .is_some_and(|vs| vs.iter().any(&matches))
}

/// A method named in a rule covers the request's method; `GET` covers `HEAD`,
/// which servers answer with the `GET` handler.
fn method_covers(named: &Method, method: &str) -> bool {
    *named.0 == *method || (method == "HEAD" && &*named.0 == "GET")
}

impl Rule {
    /// Whether the rule can match `request` at all as far as its upgrade goes:
    /// an upgrade is admitted only by an `allow` rule that names it in
    /// `to.upgrades`, so that an allow rule written for plain requests (`GET
    /// /ws`) never opens a tunnel. A `deny` or `audit` rule without `upgrades`
    /// matches upgrades like any request, so denying a path denies its
    /// upgrades too.
    #[inline]
    pub(crate) fn admits(&self, upgrade: Option<Upgrade>) -> bool {
        upgrade.is_none()
            || self.action != Action::Allow
            || self.to.as_ref().is_some_and(|to| to.upgrades.is_some())
    }
}

impl To {
    /// Whether the fields of `to` that are present hold; every field applies to
    /// every request, whatever its protocol or content type.
    pub(crate) fn matches(&self, request: &RequestView<'_>) -> Tri {
        let to = self;
        // First: a request without an upgrade meets no `upgrades`.
        if let Some(names) = &to.upgrades
            && !request
                .upgrade
                .is_some_and(|upgrade| names.iter().any(|name| name.0 == upgrade))
        {
            return Tri::No;
        }
        let req = request.request();
        let method = req.method();
        let methods = Tri::from_bool(field_holds(&to.methods, &to.not_methods, |m| {
            method_covers(m, method)
        }));
        methods
            .and(|| {
                if !to.has_hosts() {
                    return Tri::Yes;
                }
                let Some(host) = req.host() else {
                    return Tri::Unknown;
                };
                Tri::from_bool(field_holds(&to.hosts, &to.not_hosts, |h| h.matches(host)))
            })
            .and(|| {
                if !to.has_paths() {
                    return Tri::Yes;
                }
                let Some(path) = request.path() else {
                    return Tri::Unknown;
                };
                Tri::from_bool(field_holds(&to.paths, &to.not_paths, |p| p.matches(path)))
            })
            .and(|| {
                if !to.has_grpc() {
                    return Tri::Yes;
                }
                if request.path().is_none() {
                    return Tri::Unknown;
                }
                // `grpc` and `not_grpc` only ever match gRPC-shaped paths.
                let Some(call) = request.call() else {
                    return Tri::No;
                };
                Tri::from_bool(field_holds(&to.grpc, &to.not_grpc, |p| p.matches(call)))
            })
    }
}

impl Condition {
    /// Whether the condition holds for `request`; `Unknown` when the request is
    /// ambiguous for it.
    pub(crate) fn matches(&self, request: &Request<'_>) -> Tri {
        let condition = self;
        if condition.is_host() {
            // The canonical host, whichever of `:authority` and `Host` carried it.
            let Some(host) = request.host() else {
                return Tri::Unknown;
            };
            return value_matches(condition, host);
        }
        let headers = request.headers();
        let name = &*condition.header.0;
        if condition.members {
            return members_match(condition, &headers.all(name), headers.count(name));
        }
        let value = headers.get(name);
        if headers.count(name) != usize::from(value.is_some()) {
            return Tri::Unknown;
        }
        let Some(value) = value else {
            // An absent header meets no `values` and is excluded by no `not_values`.
            return Tri::from_bool(condition.values.is_none());
        };
        // A comma-separated list read as one value would let a client hide a member
        // a `deny` rule looks for (`x-debug: off, on`).
        if value.contains(',') {
            return Tri::Unknown;
        }
        value_matches(condition, value)
    }
}

fn value_matches(condition: &Condition, value: &str) -> Tri {
    Tri::from_bool(field_holds(&condition.values, &condition.not_values, |v| {
        v.matches(value)
    }))
}

/// A list-valued header: `values` holds when some member matches one of them,
/// `not_values` when no member matches any of them. Unreadable values and
/// quoted strings (whose commas are not separators) are ambiguous.
fn members_match(condition: &Condition, fields: &[Option<&str>], count: usize) -> Tri {
    if fields.len() != count {
        return Tri::Unknown;
    }
    let mut members = Vec::new();
    for field in fields {
        let Some(field) = field else {
            return Tri::Unknown;
        };
        if field.contains('"') {
            return Tri::Unknown;
        }
        members.extend(
            field
                .split(',')
                .map(|m| m.trim_matches([' ', '\t']))
                .filter(|m| !m.is_empty()),
        );
    }
    let any = |patterns: &[ValuePattern]| {
        members
            .iter()
            .any(|m| patterns.iter().any(|p| p.matches(m)))
    };
    Tri::from_bool(
        condition.values.as_deref().is_none_or(any)
            && !condition.not_values.as_deref().is_some_and(any),
    )
}
