use super::coverage::covers;
use super::shapes::ValueShape;
use super::*;
use crate::id::SpiffeId;
use crate::policy::pattern::{PathPattern, ValuePattern};
use crate::policy::{Format, Policy};

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

/// Which of `requests` the single rule `rule` matches, under its own action,
/// from each of `peers` and then from an anonymous peer.
fn matched(rule: &str, peers: &[SpiffeId], requests: &[Sample]) -> Vec<bool> {
    let policy = Policy::parse(&format!(r#"{{"rules": [{rule}]}}"#), Format::Json).unwrap();
    let mut out = Vec::new();
    for peer in peers.iter().map(Some).chain([None]) {
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
            let decision = match peer {
                Some(peer) => policy.decide(peer, &request),
                None => policy.decide_anonymous(&request),
            };
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

use crate::policy::request::Request;

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
        r#""from": {"unauthenticated": true}"#,
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
            crate::policy::document::parse(&format!(r#"{{"rules": [{json}]}}"#), Format::Json)
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

#[test]
fn allow_rule_for_anonymous_peers_inside_a_deny_rule_without_from_is_shadowed() {
    let findings = lint_json(
        r#"{"name": "probes", "action": "allow", "from": {"unauthenticated": true},
            "to": {"methods": ["GET"], "paths": ["/healthz"]}},
           {"name": "no-health", "action": "deny", "to": {"paths": ["/healthz"]}}"#,
    );
    assert_eq!(kinds(&findings), [("probes", &shadowed("no-health"))]);
}

#[test]
fn allow_rule_for_anonymous_peers_is_not_shadowed_by_a_deny_rule_for_authenticated_ones() {
    for from in [
        r#"{"any": true}"#,
        r#"{"trust_domains": ["td"]}"#,
        r#"{"patterns": ["spiffe://td/**"]}"#,
    ] {
        let findings = lint_json(&format!(
            r#"{{"name": "probes", "action": "allow", "from": {{"unauthenticated": true}},
                "to": {{"paths": ["/healthz"]}}}},
               {{"name": "freeze", "action": "deny", "from": {from}}}"#
        ));
        assert_eq!(findings, [], "{from}");
    }
}

#[test]
fn deny_rule_for_anonymous_peers_shadows_no_allow_rule_for_authenticated_ones() {
    let findings = lint_json(
        r#"{"name": "reads", "action": "allow", "from": {"any": true},
            "to": {"paths": ["/healthz"]}},
           {"name": "no-anonymous", "action": "deny", "from": {"unauthenticated": true}}"#,
    );
    assert_eq!(findings, []);
}

#[test]
fn second_allow_rule_for_anonymous_peers_is_redundant() {
    let findings = lint_json(
        r#"{"name": "probes", "action": "allow", "from": {"unauthenticated": true},
            "to": {"paths": ["/healthz", "/readyz"]}},
           {"name": "health", "action": "allow", "from": {"unauthenticated": true},
            "to": {"methods": ["GET"], "paths": ["/healthz"]}}"#,
    );
    assert_eq!(kinds(&findings), [("health", &redundant("probes"))]);
}

#[test]
fn deny_rule_without_from_is_not_redundant_after_one_for_authenticated_peers() {
    // The first rule leaves anonymous peers alone; the second denies them too.
    let findings = lint_json(
        r#"{"name": "freeze", "action": "deny", "from": {"any": true}},
           {"name": "no-admin", "action": "deny", "to": {"paths": ["/admin/**"]}}"#,
    );
    assert_eq!(findings, []);
}

#[test]
fn allow_rule_without_from_is_not_redundant_after_one_for_anonymous_peers() {
    let findings = lint_json(
        r#"{"name": "probes", "action": "allow", "from": {"unauthenticated": true}},
           {"name": "everyone", "action": "allow", "to": {"paths": ["/healthz"]}}"#,
    );
    assert_eq!(findings, []);
}
