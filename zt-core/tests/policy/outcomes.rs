//! Outcomes: deny beats allow, default deny, audit rules, dry run and enforce.

use super::*;
use zt_core::{Mode, Verdict};

#[test]
fn empty_policy_denies_everything_by_default() {
    let policy = yaml("rules: []");
    let decision = policy.decide(&id("spiffe://example.org/a"), &get("/"));
    assert!(!decision.is_allowed());
    assert_eq!(decision.verdict(), Verdict::Deny);
    assert_eq!(decision.rule(), None);
    assert_eq!(
        decision.reason().to_string(),
        "no allow rule matched (default deny)"
    );
    assert_eq!(policy.rule_count(), 0);
}

#[test]
fn deny_all_denies_every_peer_and_request() {
    let policy = Policy::deny_all();
    for (peer, request) in [
        ("spiffe://example.org/a", get("/")),
        ("spiffe://other.org/b", Request::grpc("/pkg.Svc/Get")),
    ] {
        let decision = policy.decide(&id(peer), &request);
        assert!(!decision.is_allowed(), "{peer} {request:?}");
        assert_eq!(decision.rule(), None);
    }
}

#[test]
fn deny_rule_beats_allow_rule_whatever_the_order() {
    for order in [["allow", "deny"], ["deny", "allow"]] {
        let rules: String = order
            .iter()
            .map(|action| {
                format!(
                    "  - name: {action}-a\n    action: {action}\n    from: {{ ids: [spiffe://example.org/a] }}\n"
                )
            })
            .collect();
        let policy = yaml(&format!("rules:\n{rules}"));
        let decision = policy.decide(&id("spiffe://example.org/a"), &get("/"));
        assert!(!decision.is_allowed(), "order {order:?}");
        assert_eq!(decision.rule(), Some("deny-a"));
        assert_eq!(decision.reason().to_string(), "denied by rule deny-a");
    }
}

#[test]
fn first_matching_allow_rule_in_policy_order_is_reported() {
    let policy = yaml(
        "
rules:
  - name: by-domain
    action: allow
    from: { trust_domains: [example.org] }
  - name: by-id
    action: allow
    from: { ids: [spiffe://example.org/a] }
",
    );
    let decision = policy.decide(&id("spiffe://example.org/a"), &get("/"));
    assert_eq!(decision.rule(), Some("by-domain"));
    assert_eq!(decision.reason().to_string(), "allowed by rule by-domain");
}

#[test]
fn audit_rules_are_reported_and_never_change_the_outcome() {
    let policy = yaml(
        "
rules:
  - name: watch-admin
    action: audit
    to: { paths: [/admin/**] }
  - name: watch-a
    action: audit
    from: { ids: [spiffe://example.org/a] }
  - name: a-reads
    action: allow
    from: { ids: [spiffe://example.org/a] }
    to: { methods: [GET] }
",
    );
    let a = id("spiffe://example.org/a");
    let allowed = policy.decide(&a, &get("/admin/users"));
    assert!(allowed.is_allowed());
    assert_eq!(allowed.rule(), Some("a-reads"));
    assert_eq!(
        allowed.audit_rules().collect::<Vec<_>>(),
        ["watch-admin", "watch-a"]
    );

    let denied = policy.decide(&a, &Request::new("DELETE", "/admin/users"));
    assert!(!denied.is_allowed());
    assert_eq!(denied.rule(), None);
    assert_eq!(
        denied.audit_rules().collect::<Vec<_>>(),
        ["watch-admin", "watch-a"]
    );

    let only_audit = policy.decide(&id("spiffe://example.org/b"), &get("/admin"));
    assert!(!only_audit.is_allowed());
    assert_eq!(only_audit.audit_rules().count(), 0);
}

#[test]
fn dry_run_lets_denied_requests_through_and_says_so() {
    let policy = yaml(
        "
mode: dry-run
rules:
  - name: no-b
    action: deny
    from: { ids: [spiffe://example.org/b] }
  - name: a
    action: allow
    from: { ids: [spiffe://example.org/a] }
",
    );
    assert_eq!(policy.mode(), Mode::DryRun);

    let explicit = policy.decide(&id("spiffe://example.org/b"), &get("/"));
    assert!(explicit.is_allowed());
    assert!(explicit.dry_run());
    assert_eq!(explicit.verdict(), Verdict::Deny);
    assert_eq!(
        explicit.reason().to_string(),
        "denied by rule no-b (dry run, not enforced)"
    );

    let default = policy.decide(&id("spiffe://example.org/c"), &get("/"));
    assert!(default.is_allowed());
    assert_eq!(default.verdict(), Verdict::Deny);
    assert_eq!(default.rule(), None);

    let allowed = policy.decide(&id("spiffe://example.org/a"), &get("/"));
    assert_eq!(allowed.verdict(), Verdict::Allow);
    assert_eq!(allowed.reason().to_string(), "allowed by rule a");
}

#[test]
fn enforce_is_the_default_mode() {
    let policy = yaml("rules: []");
    assert_eq!(policy.mode(), Mode::Enforce);
    assert!(
        !policy
            .decide(&id("spiffe://example.org/a"), &get("/"))
            .dry_run()
    );
}
