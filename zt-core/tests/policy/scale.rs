//! Scale: policies of 100,000 rules and rules of 100,000 patterns load and decide.

use super::*;

/// `services` rules of every kind the index distinguishes (exact IDs, patterns
/// with a literal first segment, trust domains, deny rules that must win over
/// them) and two more: a pattern starting with a wildcard and an any-peer rule.
fn big_policy_json(services: usize) -> String {
    zt_testkit::policy::policy_json(services + 2)
}

#[cfg(feature = "policy-yaml")]
#[test]
fn policy_of_100k_rules_loads_as_yaml_within_the_parser_budget() {
    // JSON is YAML: the same document, read by the YAML parser, whose default
    // node budget once refused policies beyond about 25,000 rules.
    const SERVICES: usize = 100_000;
    let policy = Policy::parse(&big_policy_json(SERVICES), Format::Yaml).unwrap();
    assert_eq!(policy.rule_count(), SERVICES + 2);
}

#[test]
fn policy_of_100k_rules_loads_and_decides_correctly() {
    const SERVICES: usize = 100_000;
    let policy = Policy::parse(&big_policy_json(SERVICES), Format::Json).unwrap();
    assert_eq!(policy.rule_count(), SERVICES + 2);

    for i in (0..SERVICES).step_by(997) {
        let base = i - i % 10;
        let svc = id(&format!("spiffe://example.org/svc-{base}"));
        let ok = policy.decide(&svc, &get(&format!("/svc-{base}/x")));
        assert_eq!(ok.rule(), Some(format!("svc-{base}").as_str()), "{i}");
        assert!(ok.is_allowed());
        let secret = policy.decide(&svc, &get(&format!("/svc-{base}/secret")));
        assert_eq!(secret.rule(), Some(format!("deny-{}", base + 8).as_str()));
        assert!(!secret.is_allowed());
        let other = policy.decide(&svc, &get(&format!("/svc-{}/x", base + 10)));
        assert!(!other.is_allowed(), "{i}: another service's path");

        let ns = base + 6;
        let workload = id(&format!("spiffe://example.org/ns-{ns}/prod/sa/api"));
        let call = format!("/pkg.Svc{ns}/Get");
        assert_eq!(
            policy.decide(&workload, &Request::grpc(&call)).rule(),
            Some(format!("ns-{ns}").as_str())
        );
        let wrong_call = format!("/pkg.Svc{}/Get", ns + 1);
        assert!(
            !policy
                .decide(&workload, &Request::grpc(&wrong_call))
                .is_allowed()
        );
        let root = id(&format!("spiffe://example.org/ns-{ns}/prod/sa"));
        assert!(!policy.decide(&root, &Request::grpc(&call)).is_allowed());

        let td = base + 9;
        let foreign = id(&format!("spiffe://td-{td}.example/anything"));
        assert!(
            policy
                .decide(&foreign, &get(&format!("/td/{td}")))
                .is_allowed()
        );
        assert!(
            !policy
                .decide(&foreign, &get(&format!("/td/{base}")))
                .is_allowed()
        );
    }
    let batch = policy.decide(&id("spiffe://example.org/ns-6/batch"), &get("/batch"));
    assert_eq!(batch.rule(), Some("wild"));
    let health = policy.decide(&id("spiffe://nowhere.example/x"), &get("/healthz"));
    assert_eq!(health.rule(), Some("health"));
    assert!(
        !policy
            .decide(&id("spiffe://nowhere.example/x"), &get("/"))
            .is_allowed()
    );
}

#[test]
fn a_rule_with_100k_not_patterns_and_thousands_of_ids_loads_and_decides_by_index() {
    // Validation checks every listed ID against not_patterns, and every decision
    // matches the peer against them: both go through an index, so this size is
    // a hash lookup per ID rather than 2,000 × 100,000 comparisons.
    let ids: Vec<String> = (0..2_000)
        .map(|i| format!("\"spiffe://example.org/svc/{i}\""))
        .collect();
    let mut not_patterns: Vec<String> = (0..99_990)
        .map(|i| format!("\"spiffe://example.org/blocked/{i}\""))
        .collect();
    not_patterns.extend((0..10).map(|i| format!("\"spiffe://example.org/quarantine/{i}/**\"")));
    let text = format!(
        r#"{{"rules": [{{"name": "big", "action": "allow",
            "from": {{"trust_domains": ["example.org"], "not_patterns": [{}]}}}},
           {{"name": "listed", "action": "allow", "from": {{"ids": [{}]}}}}]}}"#,
        not_patterns.join(","),
        ids.join(",")
    );
    let policy = Policy::parse(&text, Format::Json).unwrap();
    let decide = |peer: &str| policy.decide(&id(peer), &get("/")).is_allowed();
    assert!(decide("spiffe://example.org/svc/7"));
    assert!(decide("spiffe://example.org/other"));
    assert!(!decide("spiffe://example.org/blocked/99989"));
    assert!(!decide("spiffe://example.org/quarantine/3/a/b"));
    assert!(decide("spiffe://example.org/quarantine/10/a"));
}
