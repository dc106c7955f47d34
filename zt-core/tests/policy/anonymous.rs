//! Anonymous peers (no client certificate): admitted only by `allow` rules with
//! `from: {unauthenticated: true}`, matched by `deny` and `audit` rules without
//! a positive `from` field, never by anything else.

use super::*;

const PROBES: &str = "rules:
  - name: probes
    action: allow
    from: { unauthenticated: true }
    to: { methods: [GET], paths: [/healthz] }
  - name: web
    action: allow
    from: { trust_domains: [example.org] }
";

#[test]
fn unauthenticated_rule_admits_an_anonymous_peer_to_its_route_only() {
    let policy = yaml(PROBES);
    let probe = policy.decide_anonymous(&get("/healthz"));
    assert!(probe.is_allowed());
    assert_eq!(probe.rule(), Some("probes"));
    assert!(!policy.decide_anonymous(&get("/whoami")).is_allowed());
    assert!(
        !policy
            .decide_anonymous(&Request::new("POST", "/healthz"))
            .is_allowed()
    );
}

#[test]
fn unauthenticated_rule_never_matches_a_verified_peer() {
    let policy =
        yaml("rules:\n  - name: probes\n    action: allow\n    from: { unauthenticated: true }\n");
    let decision = policy.decide(&id("spiffe://example.org/web"), &get("/healthz"));
    assert!(!decision.is_allowed());
    assert_eq!(decision.rule(), None);
}

#[test]
fn allow_rules_without_unauthenticated_never_admit_an_anonymous_peer() {
    for from in [
        None,
        Some("{ any: true }"),
        Some("{ not_ids: [spiffe://example.org/evil] }"),
        Some("{ not_trust_domains: [example.net] }"),
        Some("{ not_patterns: [\"spiffe://example.org/**\"] }"),
        Some("{ trust_domains: [example.org] }"),
    ] {
        let from = from.map_or(String::new(), |f| format!("    from: {f}\n"));
        let policy = yaml(&format!(
            "rules:\n  - name: r\n    action: allow\n{from}    to: {{ paths: [\"/**\"] }}\n"
        ));
        let decision = policy.decide_anonymous(&get("/healthz"));
        assert!(!decision.is_allowed(), "{from}");
        assert_eq!(decision.rule(), None, "{from}");
    }
}

#[test]
fn deny_rule_without_a_positive_from_denies_an_anonymous_peer() {
    for from in [
        String::new(),
        "    from: { not_ids: [spiffe://example.org/ops] }\n".to_owned(),
        "    from: { unauthenticated: true }\n".to_owned(),
    ] {
        let policy = yaml(&format!(
            "{PROBES}  - name: no-health\n    action: deny\n{from}    to: {{ paths: [/healthz] }}\n"
        ));
        let decision = policy.decide_anonymous(&get("/healthz"));
        assert!(!decision.is_allowed(), "{from}");
        assert_eq!(decision.rule(), Some("no-health"), "{from}");
    }
}

#[test]
fn deny_rule_with_a_positive_from_or_any_leaves_an_anonymous_peer_alone() {
    for from in [
        "{ any: true }",
        "{ trust_domains: [example.org] }",
        "{ ids: [spiffe://example.org/web] }",
    ] {
        let policy = yaml(&format!(
            "{PROBES}  - name: freeze\n    action: deny\n    from: {from}\n"
        ));
        assert!(
            policy.decide_anonymous(&get("/healthz")).is_allowed(),
            "{from}"
        );
    }
}

#[test]
fn audit_rule_without_from_reports_an_anonymous_request() {
    let policy = yaml(&format!(
        "{PROBES}  - name: watch\n    action: audit\n    to: {{ paths: [\"/**\"] }}\n"
    ));
    let decision = policy.decide_anonymous(&get("/healthz"));
    assert!(decision.is_allowed());
    assert_eq!(decision.audit_rules().collect::<Vec<_>>(), ["watch"]);
}

#[test]
fn policy_without_an_unauthenticated_rule_denies_every_anonymous_request() {
    let policy = yaml(
        "rules:
  - name: everyone
    action: allow
    from: { any: true }
  - name: paths
    action: allow
    to: { paths: [\"/**\"] }
",
    );
    for (method, path) in [("GET", "/healthz"), ("GET", "/"), ("POST", "/whoami")] {
        let decision = policy.decide_anonymous(&Request::new(method, path));
        assert!(!decision.is_allowed(), "{method} {path}");
    }
    assert!(
        !Policy::deny_all()
            .decide_anonymous(&get("/healthz"))
            .is_allowed()
    );
}

#[test]
fn dry_run_does_not_let_an_anonymous_request_through() {
    let policy = yaml(&format!("mode: dry-run\n{PROBES}"));
    let decision = policy.decide_anonymous(&get("/whoami"));
    assert!(!decision.is_allowed());
    assert!(!decision.dry_run());
    // Authenticated peers are still let through by the dry run.
    assert!(
        policy
            .decide(&id("spiffe://example.net/x"), &get("/whoami"))
            .is_allowed()
    );
}

#[test]
fn unauthenticated_combined_with_another_from_field_is_refused() {
    for field in [
        "any: true",
        "ids: [spiffe://example.org/a]",
        "trust_domains: [example.org]",
        "patterns: [\"spiffe://example.org/**\"]",
        "not_ids: [spiffe://example.org/a]",
        "not_trust_domains: [example.org]",
        "not_patterns: [\"spiffe://example.org/**\"]",
    ] {
        let (message, location) = invalid(
            &format!(
                "rules:\n  - name: r\n    action: allow\n    from: {{ unauthenticated: true, {field} }}\n"
            ),
            Format::Yaml,
        );
        assert!(
            message.contains(
                "rule \"r\": from.unauthenticated: true cannot be combined with any other from field"
            ),
            "{field}: {message}"
        );
        assert!(location.is_some(), "{field}");
    }
}

#[test]
fn unauthenticated_false_is_refused() {
    let (message, _) = invalid(
        "rules:\n  - name: r\n    action: allow\n    from: { unauthenticated: false }\n",
        Format::Yaml,
    );
    assert!(
        message.contains("from.unauthenticated: false has no meaning: remove it"),
        "{message}"
    );
}

#[test]
fn unauthenticated_rules_read_the_same_in_every_format() {
    let json = Policy::parse(
        r#"{"rules": [{"name": "probes", "action": "allow",
            "from": {"unauthenticated": true}, "to": {"paths": ["/healthz"]}}]}"#,
        Format::Json,
    )
    .unwrap();
    let toml = Policy::parse(
        "[[rules]]\nname = \"probes\"\naction = \"allow\"\nfrom = { unauthenticated = true }\nto = { paths = [\"/healthz\"] }\n",
        Format::Toml,
    )
    .unwrap();
    for policy in [json, toml] {
        assert!(policy.decide_anonymous(&get("/healthz")).is_allowed());
        assert!(!policy.decide_anonymous(&get("/other")).is_allowed());
    }
}
