//! `when`: header conditions.

use super::*;

fn with_when(when: &str) -> Policy {
    yaml(&format!(
        "rules:\n  - name: r\n    action: allow\n    from: {{ any: true }}\n    when:\n{when}"
    ))
}

#[test]
fn when_values_match_exact_prefix_suffix_and_any() {
    let policy =
        with_when("      - header: X-Tenant\n        values: [acme, \"team-*\", \"*-test\"]\n");
    let peer = id("spiffe://example.org/a");
    for (value, expected) in [
        ("acme", true),
        ("team-blue", true),
        ("load-test", true),
        ("acme2", false),
        ("globex", false),
    ] {
        let headers = [("x-tenant", value)];
        let request = get("/").with_headers(&headers);
        assert_eq!(
            policy.decide(&peer, &request).is_allowed(),
            expected,
            "{value}"
        );
    }
    assert!(!policy.decide(&peer, &get("/")).is_allowed(), "absent");

    let any = with_when("      - header: x-tenant\n        values: [\"*\"]\n");
    let headers = [("X-TENANT", "")];
    assert!(
        any.decide(&peer, &get("/").with_headers(&headers))
            .is_allowed()
    );
    assert!(!any.decide(&peer, &get("/")).is_allowed());
}

#[test]
fn when_not_values_excludes_values_and_accepts_an_absent_header() {
    let policy = with_when("      - header: x-env\n        not_values: [\"prod*\"]\n");
    let peer = id("spiffe://example.org/a");
    let prod = [("x-env", "production")];
    let dev = [("x-env", "dev")];
    assert!(
        !policy
            .decide(&peer, &get("/").with_headers(&prod))
            .is_allowed()
    );
    assert!(
        policy
            .decide(&peer, &get("/").with_headers(&dev))
            .is_allowed()
    );
    assert!(policy.decide(&peer, &get("/")).is_allowed());
}

#[test]
fn when_conditions_are_anded() {
    let policy = with_when(
        "      - header: x-a\n        values: [\"1\"]\n      - header: x-b\n        values: [\"2\"]\n",
    );
    let peer = id("spiffe://example.org/a");
    let both = vec![
        ("x-a".to_owned(), "1".to_owned()),
        ("x-b".to_owned(), "2".to_owned()),
    ];
    let one = vec![("x-a".to_owned(), "1".to_owned())];
    assert!(
        policy
            .decide(&peer, &get("/").with_headers(&both))
            .is_allowed()
    );
    assert!(
        !policy
            .decide(&peer, &get("/").with_headers(&one))
            .is_allowed()
    );
}

#[test]
fn repeated_header_fails_allow_conditions_and_meets_deny_conditions() {
    let policy = yaml(
        "
rules:
  - name: tenant-acme
    action: allow
    from: { any: true }
    when: [{ header: x-tenant, values: [acme] }]
  - name: no-debug
    action: deny
    from: { any: true }
    when: [{ header: x-debug, values: [\"on\"] }]
",
    );
    let peer = id("spiffe://example.org/a");
    let single = [("x-tenant", "acme")];
    assert!(
        policy
            .decide(&peer, &get("/").with_headers(&single))
            .is_allowed()
    );

    let repeated = [("x-tenant", "acme"), ("x-tenant", "globex")];
    let decision = policy.decide(&peer, &get("/").with_headers(&repeated));
    assert!(!decision.is_allowed());
    assert_eq!(decision.rule(), None);

    let smuggled = [("x-tenant", "acme"), ("x-debug", "off"), ("x-debug", "on")];
    let decision = policy.decide(&peer, &get("/").with_headers(&smuggled));
    assert_eq!(decision.rule(), Some("no-debug"));
}
