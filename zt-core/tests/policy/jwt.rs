//! `from.jwt`: one rule decides on the mTLS peer and the subject of the request's
//! JWT-SVID together ("orders-api from the gateway on behalf of frontend").

use zt_core::{Policy, Request};

use super::{id, invalid, yaml};

const GATEWAY_POLICY: &str = r#"
rules:
  - name: gateway-for-frontend
    action: allow
    from:
      ids: [spiffe://example.org/gateway]
      jwt: { ids: [spiffe://example.org/frontend] }
    to: { paths: [/orders/**] }
  - name: no-batch-through-anyone
    action: deny
    from:
      jwt: { patterns: [spiffe://example.org/batch/**] }
"#;

fn orders() -> Request<'static> {
    Request::new("GET", "/orders/7")
}

#[test]
fn gateway_with_a_frontend_token_is_allowed() {
    let policy = yaml(GATEWAY_POLICY);
    let frontend = id("spiffe://example.org/frontend");
    let decision = policy.decide(
        &id("spiffe://example.org/gateway"),
        &orders().with_jwt_subject(&frontend),
    );
    assert!(decision.is_allowed(), "{decision}");
    assert_eq!(decision.rule(), Some("gateway-for-frontend"));
}

#[test]
fn gateway_with_a_batch_token_is_denied() {
    let policy = yaml(GATEWAY_POLICY);
    let batch = id("spiffe://example.org/batch/nightly");
    let decision = policy.decide(
        &id("spiffe://example.org/gateway"),
        &orders().with_jwt_subject(&batch),
    );
    assert!(!decision.is_allowed());
    assert_eq!(decision.rule(), Some("no-batch-through-anyone"));
}

#[test]
fn frontend_directly_with_its_own_token_is_denied_when_the_rule_requires_the_gateway() {
    let policy = yaml(GATEWAY_POLICY);
    let frontend = id("spiffe://example.org/frontend");
    let decision = policy.decide(&frontend, &orders().with_jwt_subject(&frontend));
    assert!(!decision.is_allowed());
    assert_eq!(decision.rule(), None, "denied by default");
}

#[test]
fn gateway_without_a_token_is_denied() {
    let policy = yaml(GATEWAY_POLICY);
    let decision = policy.decide(&id("spiffe://example.org/gateway"), &orders());
    assert!(!decision.is_allowed());
}

/// An allow rule that names tokens by exclusion still needs a token; a deny rule
/// that excludes some tokens denies requests without one too.
#[test]
fn a_missing_token_never_meets_an_allow_rule_and_always_meets_a_negative_deny_rule() {
    let policy = yaml(
        r#"
rules:
  - name: any-token-but-batch
    action: allow
    from: { jwt: { not_ids: [spiffe://example.org/batch] } }
  - name: only-frontend-tokens-on-admin
    action: deny
    from: { jwt: { not_ids: [spiffe://example.org/frontend] } }
    to: { paths: [/admin] }
"#,
    );
    let gateway = id("spiffe://example.org/gateway");
    let frontend = id("spiffe://example.org/frontend");
    let batch = id("spiffe://example.org/batch");
    let get = |path| Request::new("GET", path);
    assert!(!policy.decide(&gateway, &get("/orders")).is_allowed());
    assert!(
        policy
            .decide(&gateway, &get("/orders").with_jwt_subject(&frontend))
            .is_allowed()
    );
    assert!(
        !policy
            .decide(&gateway, &get("/orders").with_jwt_subject(&batch))
            .is_allowed()
    );
    assert!(
        policy
            .decide(&gateway, &get("/admin").with_jwt_subject(&frontend))
            .is_allowed()
    );
    let denied = policy.decide(&gateway, &get("/admin").with_jwt_subject(&batch));
    assert_eq!(denied.rule(), Some("only-frontend-tokens-on-admin"));
    // Without a token, /admin meets the deny rule, not merely the default.
    let denied = policy.decide(&gateway, &get("/admin"));
    assert_eq!(denied.rule(), Some("only-frontend-tokens-on-admin"));
}

#[test]
fn jwt_any_requires_some_valid_token() {
    let policy = yaml(
        r#"
rules:
  - name: any-caller-with-a-token
    action: allow
    from: { trust_domains: [example.org], jwt: { any: true } }
"#,
    );
    let peer = id("spiffe://example.org/gateway");
    let partner = id("spiffe://partner.org/app");
    assert!(!policy.decide(&peer, &orders()).is_allowed());
    assert!(
        policy
            .decide(&peer, &orders().with_jwt_subject(&partner))
            .is_allowed()
    );
}

#[test]
fn anonymous_peers_are_never_admitted_by_a_jwt_rule() {
    let policy = yaml(GATEWAY_POLICY);
    let frontend = id("spiffe://example.org/frontend");
    let decision = policy.decide_anonymous(&orders().with_jwt_subject(&frontend));
    assert!(!decision.is_allowed());
}

#[test]
fn malformed_jwt_clauses_are_refused_at_load() {
    let cases = [
        (
            r#"{"rules": [{"name": "r", "action": "allow", "from": {"jwt": {}}}]}"#,
            "jwt: {any: true}",
        ),
        (
            r#"{"rules": [{"name": "r", "action": "allow", "from": {"jwt": {"unauthenticated": true}}}]}"#,
            "from.jwt takes",
        ),
        (
            r#"{"rules": [{"name": "r", "action": "allow", "from": {"jwt": {"jwt": {"any": true}}}}]}"#,
            "from.jwt takes",
        ),
        (
            r#"{"rules": [{"name": "r", "action": "allow", "from": {"unauthenticated": true, "jwt": {"any": true}}}]}"#,
            "cannot be combined",
        ),
        (
            r#"{"rules": [{"name": "r", "action": "allow", "from": {"jwt": {"ids": ["spiffe://a/x"], "not_ids": ["spiffe://a/x"]}}}]}"#,
            "from.jwt:",
        ),
        (
            r#"{"rules": [{"name": "r", "action": "allow", "from": {"jwt": {"id": ["spiffe://a/x"]}}}]}"#,
            "unknown field",
        ),
    ];
    for (json, words) in cases {
        let (message, _) = invalid(json, zt_core::Format::Json);
        assert!(message.contains(words), "{json}: {message}");
    }
}

/// Lint must not call a rule redundant because of a rule that asks for a token:
/// whether a request carries one is known per request only.
#[test]
fn lint_does_not_count_a_jwt_rule_as_covering_another() {
    let policy = Policy::parse(
        r#"{"rules": [
            {"name": "deny-batch-tokens", "action": "deny", "from": {"jwt": {"ids": ["spiffe://example.org/batch"]}}},
            {"name": "web", "action": "allow", "from": {"ids": ["spiffe://example.org/web"]}}
        ]}"#,
        zt_core::Format::Json,
    )
    .unwrap();
    assert!(policy.lint().is_empty(), "{:?}", policy.lint());
}
