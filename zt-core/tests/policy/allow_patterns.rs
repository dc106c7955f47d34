//! `Policy::allow_patterns`: a policy from a list of ID patterns.

use super::*;

#[test]
fn allow_patterns_allow_every_request_from_matching_ids() {
    let policy = Policy::allow_patterns([
        "spiffe://example.org/frontend/**",
        "spiffe://example.org/billing",
        "spiffe://example.org/billing",
    ])
    .unwrap();
    assert_eq!(policy.rule_count(), 2);
    let web = policy.decide(
        &id("spiffe://example.org/frontend/web"),
        &Request::grpc("/pkg.S/M"),
    );
    assert!(web.is_allowed());
    assert_eq!(web.rule(), Some("spiffe://example.org/frontend/**"));
    let billing = policy.decide(&id("spiffe://example.org/billing"), &get("/x"));
    assert_eq!(billing.rule(), Some("spiffe://example.org/billing"));
    assert!(
        !policy
            .decide(&id("spiffe://example.org/billing/x"), &get("/x"))
            .is_allowed()
    );
}

#[test]
fn allow_patterns_reports_the_invalid_pattern() {
    let err =
        Policy::allow_patterns(["spiffe://example.org/a", "spiffe://example.org/a*"]).unwrap_err();
    assert!(
        matches!(&err, PolicyError::InvalidPattern { pattern, .. } if pattern == "spiffe://example.org/a*"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid allow pattern \"spiffe://example.org/a*\": a wildcard must be a whole path segment, either * or **"
    );
}

#[test]
fn allow_patterns_without_patterns_allows_nothing() {
    let policy = Policy::allow_patterns(Vec::<String>::new()).unwrap();
    assert!(
        !policy
            .decide(&id("spiffe://example.org/a"), &get("/"))
            .is_allowed()
    );
}
