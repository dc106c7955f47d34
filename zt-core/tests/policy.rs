#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Authorization policies through the public API: semantics, validation,
//! formats, the store, and a policy of 100,000 rules.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use zt_core::policy::{Location, MAX_POLICY_BYTES};
use zt_core::{Format, Mode, Policy, PolicyError, PolicyStore, Request, SpiffeId, Verdict};

#[track_caller]
fn id(s: &str) -> SpiffeId {
    s.parse()
        .unwrap_or_else(|err| panic!("{s:?} should parse: {err}"))
}

#[track_caller]
fn yaml(text: &str) -> Policy {
    Policy::parse(text, Format::Yaml).unwrap_or_else(|err| panic!("policy should load: {err}"))
}

#[track_caller]
fn invalid(text: &str, format: Format) -> (String, Option<Location>) {
    match Policy::parse(text, format) {
        Err(PolicyError::Invalid {
            message, location, ..
        }) => (message, location),
        Err(other) => panic!("expected an invalid-policy error, got {other:?}"),
        Ok(policy) => panic!("expected an error, got {policy:?}"),
    }
}

fn get(path: &str) -> Request<'_> {
    Request::new("GET", path)
}

// === outcomes ===

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

// === from ===

/// One allow rule with `from` set to `from`, asked about each peer.
#[track_caller]
fn check_from(from: &str, cases: &[(&str, bool)]) {
    let policy = yaml(&format!(
        "rules:\n  - name: r\n    action: allow\n    from: {from}\n"
    ));
    for &(peer, expected) in cases {
        let decision = policy.decide(&id(peer), &get("/"));
        assert_eq!(decision.is_allowed(), expected, "from {from}, peer {peer}");
    }
}

#[test]
fn from_ids_match_exact_ids_only() {
    check_from(
        "{ ids: [spiffe://example.org/a, spiffe://example.org/b] }",
        &[
            ("spiffe://example.org/a", true),
            ("spiffe://example.org/b", true),
            ("spiffe://example.org/a/b", false),
            ("spiffe://example.org/ab", false),
            ("spiffe://example.net/a", false),
        ],
    );
}

#[test]
fn from_not_ids_excludes_listed_ids() {
    check_from(
        "{ trust_domains: [example.org], not_ids: [spiffe://example.org/a] }",
        &[
            ("spiffe://example.org/a", false),
            ("spiffe://example.org/b", true),
            ("spiffe://example.net/b", false),
        ],
    );
    check_from(
        "{ not_ids: [spiffe://example.org/a] }",
        &[
            ("spiffe://example.org/a", false),
            ("spiffe://example.net/a", true),
        ],
    );
}

#[test]
fn from_trust_domains_match_whole_names() {
    check_from(
        "{ trust_domains: [example.org] }",
        &[
            ("spiffe://example.org", true),
            ("spiffe://example.org/a/b", true),
            ("spiffe://sub.example.org/a", false),
            ("spiffe://example.org.evil/a", false),
        ],
    );
}

#[test]
fn from_not_trust_domains_excludes_whole_domains() {
    check_from(
        "{ not_trust_domains: [evil.org] }",
        &[
            ("spiffe://evil.org/a", false),
            ("spiffe://example.org/a", true),
            ("spiffe://evil.org.example/a", true),
        ],
    );
}

#[test]
fn from_pattern_single_star_matches_exactly_one_segment() {
    check_from(
        "{ patterns: [\"spiffe://example.org/ns/*/sa/api\"] }",
        &[
            ("spiffe://example.org/ns/prod/sa/api", true),
            ("spiffe://example.org/ns/dev/sa/api", true),
            ("spiffe://example.org/ns/sa/api", false),
            ("spiffe://example.org/ns/a/b/sa/api", false),
            ("spiffe://example.net/ns/prod/sa/api", false),
        ],
    );
}

#[test]
fn from_pattern_double_star_matches_one_or_more_trailing_segments() {
    check_from(
        "{ patterns: [\"spiffe://example.org/frontend/**\"] }",
        &[
            ("spiffe://example.org/frontend/web", true),
            ("spiffe://example.org/frontend/web/v2", true),
            ("spiffe://example.org/frontend", false),
            ("spiffe://example.org/frontends/web", false),
        ],
    );
}

#[test]
fn from_pattern_starting_with_a_wildcard_matches_across_first_segments() {
    check_from(
        "{ patterns: [\"spiffe://example.org/*/api\", \"spiffe://example.org/jobs/**\"] }",
        &[
            ("spiffe://example.org/prod/api", true),
            ("spiffe://example.org/jobs/api", true),
            ("spiffe://example.org/jobs/nightly", true),
            ("spiffe://example.org/prod/web", false),
        ],
    );
}

#[test]
fn from_not_patterns_excludes_matching_ids() {
    check_from(
        "{ trust_domains: [example.org], not_patterns: [\"spiffe://example.org/test/**\"] }",
        &[
            ("spiffe://example.org/test/a", false),
            ("spiffe://example.org/prod/a", true),
        ],
    );
}

#[test]
fn from_fields_are_anded_and_values_ored() {
    check_from(
        "{ patterns: [\"spiffe://example.org/ns/*/sa/api\", \"spiffe://example.net/**\"], \
         not_ids: [spiffe://example.org/ns/test/sa/api] }",
        &[
            ("spiffe://example.org/ns/prod/sa/api", true),
            ("spiffe://example.net/anything", true),
            ("spiffe://example.org/ns/test/sa/api", false),
        ],
    );
}

#[test]
fn from_any_matches_every_authenticated_peer() {
    check_from(
        "{ any: true }",
        &[
            ("spiffe://example.org/a", true),
            ("spiffe://other.net", true),
        ],
    );
}

// === to ===

/// One allow rule for any peer with `to` set to `to`, asked about each request.
#[track_caller]
fn check_to(to: &str, cases: &[(Request<'_>, bool)]) {
    let policy = yaml(&format!(
        "rules:\n  - name: r\n    action: allow\n    from: {{ any: true }}\n    to: {to}\n"
    ));
    let peer = id("spiffe://example.org/a");
    for (request, expected) in cases {
        let decision = policy.decide(&peer, request);
        assert_eq!(decision.is_allowed(), *expected, "to {to}, {request:?}");
    }
}

#[test]
fn to_methods_are_case_sensitive_http_methods() {
    check_to(
        "{ methods: [GET, HEAD] }",
        &[
            (get("/x"), true),
            (Request::new("HEAD", "/x"), true),
            (Request::new("POST", "/x"), false),
            (Request::new("get", "/x"), false),
        ],
    );
}

#[test]
fn to_not_methods_excludes_listed_methods() {
    check_to(
        "{ not_methods: [DELETE] }",
        &[(get("/x"), true), (Request::new("DELETE", "/x"), false)],
    );
}

#[test]
fn to_paths_match_exact_single_star_and_double_star() {
    check_to(
        "{ paths: [/healthz, /v1/items/*, /static/**] }",
        &[
            (get("/healthz"), true),
            (get("/healthz/"), false),
            (get("/healthzz"), false),
            (get("/v1/items/42"), true),
            (get("/v1/items/42?verbose=1"), true),
            (get("/v1/items"), false),
            (get("/v1/items/42/parts"), false),
            (get("/static/css/site.css"), true),
            (get("/static/"), true),
            (get("/static"), false),
        ],
    );
}

#[test]
fn to_not_paths_excludes_matching_paths() {
    check_to(
        "{ not_paths: [/admin/**] }",
        &[(get("/admin/users"), false), (get("/users"), true)],
    );
}

#[test]
fn ambiguous_paths_never_match_allow_rules() {
    check_to(
        "{ paths: [/public/**] }",
        &[
            (get("/public/a"), true),
            (get("/public/../admin"), false),
            (get("/public//a"), false),
            (get("/public/%2e%2e/admin"), false),
            (get("/public/a%2fb"), false),
        ],
    );
}

#[test]
fn ambiguous_paths_match_deny_rules() {
    let policy = yaml(
        "
rules:
  - name: everyone
    action: allow
    from: { any: true }
  - name: no-admin
    action: deny
    from: { any: true }
    to: { paths: [/admin/**] }
",
    );
    let peer = id("spiffe://example.org/a");
    assert!(policy.decide(&peer, &get("/public/x")).is_allowed());
    for path in [
        "/admin/x",
        "/public/../admin/x",
        "/admin//x",
        "/%2e%2e/admin/x",
    ] {
        let decision = policy.decide(&peer, &get(path));
        assert_eq!(decision.rule(), Some("no-admin"), "{path}");
    }
}

#[test]
fn to_grpc_matches_methods_and_whole_services() {
    check_to(
        "{ grpc: [pkg.Items/Get, /pkg.Admin/*] }",
        &[
            (Request::grpc("/pkg.Items/Get"), true),
            (Request::grpc("/pkg.Items/Delete"), false),
            (Request::grpc("/pkg.Admin/Reset"), true),
            (Request::grpc("/pkg.Admin"), false),
            (Request::grpc("/other.Items/Get"), false),
        ],
    );
}

#[test]
fn to_not_grpc_excludes_methods() {
    check_to(
        "{ not_grpc: [pkg.Items/Delete] }",
        &[
            (Request::grpc("/pkg.Items/Get"), true),
            (Request::grpc("/pkg.Items/Delete"), false),
        ],
    );
}

#[test]
fn grpc_fields_match_by_path_shape_whatever_the_method() {
    check_to(
        "{ grpc: [pkg.Items/Get] }",
        &[
            (Request::new("POST", "/pkg.Items/Get"), true),
            (Request::new("GET", "/pkg.Items/Get"), true),
            (Request::new("GET", "/pkg.Items/%47et"), true),
            (Request::grpc("/pkg.Items/Get/x"), false),
        ],
    );
    // `not_grpc` restricts to gRPC-shaped paths too.
    check_to(
        "{ not_grpc: [pkg.Items/Delete] }",
        &[
            (get("/anything"), false),
            (get("/a/b/c"), false),
            (get("/a/b"), true),
        ],
    );
}

#[test]
fn http_fields_match_grpc_calls_on_their_path() {
    check_to(
        "{ paths: [\"/pkg.Items/*\"], methods: [POST] }",
        &[
            (Request::grpc("/pkg.Items/Get"), true),
            (Request::new("POST", "/pkg.Items/Get"), true),
            (Request::new("PUT", "/pkg.Items/Get"), false),
        ],
    );
    check_to(
        "{ not_paths: [/admin/**] }",
        &[
            (Request::grpc("/pkg.Items/Get"), true),
            (Request::grpc("/admin/x"), false),
        ],
    );
}

#[test]
fn methods_and_grpc_in_one_to_are_anded() {
    check_to(
        "{ methods: [POST], grpc: [pkg.Items/*] }",
        &[
            (Request::grpc("/pkg.Items/Get"), true),
            (Request::new("GET", "/pkg.Items/Get"), false),
            (Request::grpc("/pkg.Other/Get"), false),
        ],
    );
}

#[test]
fn a_rule_naming_get_covers_head_in_both_fields() {
    check_to(
        "{ methods: [GET] }",
        &[(get("/x"), true), (Request::new("HEAD", "/x"), true)],
    );
    check_to(
        "{ not_methods: [GET] }",
        &[
            (Request::new("HEAD", "/x"), false),
            (Request::new("POST", "/x"), true),
        ],
    );
    check_to(
        "{ methods: [HEAD] }",
        &[(get("/x"), false), (Request::new("HEAD", "/x"), true)],
    );
}

#[test]
fn hosts_match_the_canonical_host_and_fail_closed_without_one() {
    check_to(
        "{ hosts: [api.example.org, \"*.internal\"] }",
        &[
            (get("/").with_host("API.example.org"), true),
            (get("/").with_host("api.example.org.:443"), true),
            (get("/").with_host("admin.internal"), true),
            (get("/").with_host("other.org"), false),
            (get("/"), false),
        ],
    );
    let policy = yaml(
        "
rules:
  - name: all
    action: allow
    from: { any: true }
  - name: no-admin-host
    action: deny
    from: { any: true }
    to: { hosts: [admin.internal] }
",
    );
    let peer = id("spiffe://example.org/a");
    for host in [
        "admin.internal",
        "ADMIN.INTERNAL",
        "admin.internal.",
        "admin.internal:443",
    ] {
        let decision = policy.decide(&peer, &get("/").with_host(host));
        assert_eq!(decision.rule(), Some("no-admin-host"), "{host}");
    }
    // No host, or a malformed one, is ambiguous: the deny rule matches.
    assert_eq!(
        policy.decide(&peer, &get("/")).rule(),
        Some("no-admin-host")
    );
    let malformed = get("/").with_host("a@admin.internal");
    assert_eq!(
        policy.decide(&peer, &malformed).rule(),
        Some("no-admin-host")
    );
    assert_eq!(
        policy
            .decide(&peer, &get("/").with_host("api.internal"))
            .rule(),
        Some("all")
    );
}

#[test]
fn rule_without_to_matches_http_and_grpc() {
    let policy = yaml(
        "rules:\n  - name: r\n    action: allow\n    from: { ids: [spiffe://example.org/a] }\n",
    );
    let peer = id("spiffe://example.org/a");
    assert!(policy.decide(&peer, &get("/x")).is_allowed());
    assert!(
        policy
            .decide(&peer, &Request::grpc("/pkg.Items/Get"))
            .is_allowed()
    );
}

#[test]
fn ambiguous_grpc_path_matches_deny_rules_but_not_allow_rules() {
    let policy = yaml(
        "
rules:
  - name: items
    action: allow
    from: { any: true }
    to: { grpc: [pkg.Items/*] }
  - name: no-admin
    action: deny
    from: { any: true }
    to: { grpc: [pkg.Admin/*] }
",
    );
    let peer = id("spiffe://example.org/a");
    assert!(
        policy
            .decide(&peer, &Request::grpc("/pkg.Items/Get"))
            .is_allowed()
    );
    let odd = policy.decide(&peer, &Request::grpc("/pkg.Items/Get/.."));
    assert!(!odd.is_allowed());
    assert_eq!(odd.rule(), Some("no-admin"));
    // Three segments are no gRPC call: neither rule matches.
    let extra = policy.decide(&peer, &Request::grpc("/pkg.Items/Get/extra"));
    assert!(!extra.is_allowed());
    assert_eq!(extra.rule(), None);
}

// === when ===

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

// === validation ===

/// Each invalid document, the message it must produce, and the line the
/// parser must point at.
const INVALID_YAML: &[(&str, &str, usize)] = &[
    (
        "rules:\n  - name: r\n    action: allow\n    from: { idz: [spiffe://example.org/a] }\n",
        "unknown field `idz`",
        4,
    ),
    ("mode: audit\nrules: []\n", "unknown variant `audit`", 1),
    ("rules: []\nextra: 1\n", "unknown field `extra`", 2),
    ("mode: enforce\n", "missing field `rules`", 1),
    (
        "rules:\n  - name: r\n    action: permit\n    from: { any: true }\n",
        "unknown variant `permit`",
        3,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from:\n      ids: [\"spiffe://example.org/a/\"]\n",
        "invalid SPIFFE ID \"spiffe://example.org/a/\": path cannot have a trailing slash",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from:\n      trust_domains: [\"spiffe://example.org\"]\n",
        "invalid trust domain \"spiffe://example.org\"",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from:\n      patterns: [\"spiffe://*.example.org/a\"]\n",
        "trust domain cannot contain wildcards",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from:\n      patterns: [\"spiffe://example.org/**/a\"]\n",
        "** is only allowed as the last path segment",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to:\n      paths: [v1/items]\n",
        "invalid path \"v1/items\": a path starts with /",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to:\n      paths: [/v1/../admin]\n",
        "paths cannot contain . or .. segments",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to:\n      paths: [\"/v1/item*\"]\n",
        "a wildcard is a whole segment",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to:\n      paths: [\"/v1?x=1\"]\n",
        "without the query string",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to:\n      paths: [\"/a%2Fb\"]\n",
        "an encoded '.', '/' or '\\' never matches",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to:\n      grpc: [pkg.Items]\n",
        "invalid gRPC name \"pkg.Items\": write pkg.Service/Method or pkg.Service/*",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to:\n      grpc: [\"pkg.*/Get\"]\n",
        "spelled out in full",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to:\n      methods: [get]\n",
        "methods are case-sensitive: write GET",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to:\n      methods: [\"*\"]\n",
        "methods take no wildcards",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { any: true }\n    when:\n      - header: \":authority\"\n        values: [x]\n",
        "is not an HTTP header name",
        6,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { any: true }\n    when:\n      - header: x\n        values: [\"a*b\"]\n",
        "one * goes at the start or the end",
        7,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from:\n      ids: []\n",
        "empty list",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from:\n      ids:\n",
        "expected sequence",
        5,
    ),
    (
        "rules:\n  - name: \"has space\"\n    action: allow\n    from: { any: true }\n",
        "rule name \"has space\" may only contain",
        2,
    ),
    (
        "rules:\n  - name: lonely\n    action: allow\n",
        "rule \"lonely\": empty rule",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    when: [{ header: x, values: [y] }]\n",
        "rule \"r\": empty rule",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: {}\n",
        "rule \"r\": from is empty",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to: {}\n",
        "rule \"r\": to is empty",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { any: false }\n",
        "rule \"r\": from.any: false would match nobody",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { any: true, ids: [spiffe://example.org/a] }\n",
        "rule \"r\": from.any: true cannot be combined",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { ids: [spiffe://example.org/a], not_ids: [spiffe://example.org/a] }\n",
        "rule \"r\": \"spiffe://example.org/a\" is in both ids and not_ids",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { trust_domains: [a.org], not_trust_domains: [a.org] }\n",
        "rule \"r\": \"a.org\" is in both trust_domains and not_trust_domains",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { patterns: [\"spiffe://a.org/*\"], not_patterns: [\"spiffe://a.org/*\"] }\n",
        "rule \"r\": \"spiffe://a.org/*\" is in both patterns and not_patterns",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { ids: [spiffe://a.org/x], trust_domains: [b.org] }\n",
        "rule \"r\": id spiffe://a.org/x can never match: its trust domain is not in trust_domains",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { ids: [spiffe://a.org/x], not_patterns: [\"spiffe://a.org/*\"] }\n",
        "rule \"r\": id spiffe://a.org/x can never match: it matches not_patterns",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { patterns: [\"spiffe://a.org/*\"], not_trust_domains: [a.org] }\n",
        "its trust domain is in not_trust_domains",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to: { methods: [GET], not_methods: [GET] }\n",
        "rule \"r\": \"GET\" is in both methods and not_methods",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to: { paths: [/a/b], not_paths: [\"/a/*\"] }\n",
        "rule \"r\": path /a/b can never match: not_paths excludes it with /a/*",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to: { grpc: [p.S/Get], not_grpc: [\"p.S/*\"] }\n",
        "rule \"r\": gRPC method p.S/Get can never match: not_grpc excludes it with p.S/*",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    to: { hosts: [\"a.org:443\"] }\n",
        "hosts compare without the port",
        4,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { any: true }\n    when: [{ header: host, values: [\"a.org:443\"] }]\n",
        "hosts compare without the port",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { any: true }\n    when: [{ header: x }]\n",
        "when condition on header x needs values or not_values",
        2,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { any: true }\n    when: [{ header: x, values: [a], not_values: [\"a*\"] }]\n",
        "value \"a\" can never match: not_values excludes it with \"a*\"",
        2,
    ),
    (
        "rules:\n  - name: twice\n    action: allow\n    from: { any: true }\n  - name: twice\n    action: deny\n    from: { any: true }\n",
        "rule \"twice\": duplicate rule name (rules 1 and 2)",
        5,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    action: deny\n    from: { any: true }\n",
        "duplicate",
        4,
    ),
    (
        "rules:\n  - name: r\n    action: allow\n    from: { any: yes }\n",
        "invalid boolean",
        4,
    ),
];

#[test]
fn invalid_yaml_policies_are_rejected_with_message_and_location() {
    for &(text, expected, line) in INVALID_YAML {
        let (message, location) = invalid(text, Format::Yaml);
        assert!(
            message.contains(expected),
            "{text}\nmessage {message:?} should contain {expected:?}"
        );
        let location = location.unwrap_or_else(|| panic!("{text}\nno location for {message}"));
        assert_eq!(location.line, line, "{text}\n{message}");
    }
}

#[test]
fn json_errors_carry_line_and_column() {
    let text = "{\"rules\": [\n  {\"name\": \"r\", \"action\": \"allow\",\n   \"from\": {\"ids\": [\"spiffe://EXAMPLE.org/a\"]}}\n]}";
    let (message, location) = invalid(text, Format::Json);
    assert!(
        message.contains("invalid SPIFFE ID \"spiffe://EXAMPLE.org/a\""),
        "{message}"
    );
    assert_eq!(
        location,
        Some(Location {
            line: 3,
            column: 44
        })
    );
}

#[test]
fn toml_errors_carry_line_and_column() {
    let text = "[[rules]]\nname = \"r\"\naction = \"allow\"\n\n[rules.to]\nmethods = [\"GET\"]\nnot_methods = [\"get\"]\n";
    let (message, location) = invalid(text, Format::Toml);
    assert!(message.contains("methods are case-sensitive"), "{message}");
    assert_eq!(location.map(|l| l.line), Some(7));
}

#[test]
fn syntax_errors_are_reported_for_every_format() {
    for (text, format) in [
        ("rules: [\n", Format::Yaml),
        ("[[rules]\n", Format::Toml),
        ("{\"rules\": [", Format::Json),
    ] {
        let (_, location) = invalid(text, format);
        assert!(location.is_some(), "{format}");
    }
}

#[test]
fn error_display_names_format_file_location_and_rule() {
    let err = Policy::parse(
        "rules:\n  - name: lonely\n    action: allow\n",
        Format::Yaml,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid YAML policy at line 2, column 5: rule \"lonely\": empty rule: give it from or \
         to (to match every request from any authenticated peer, write from: {any: true})"
    );
}

// === formats ===

const SAME_YAML: &str = r#"
mode: enforce
rules:
  - name: frontend-reads
    action: allow
    from:
      patterns: ["spiffe://example.org/frontend/**"]
      not_ids: ["spiffe://example.org/frontend/legacy"]
    to:
      methods: [GET, HEAD]
      paths: ["/v1/items/*", "/static/**"]
  - name: billing-grpc
    action: allow
    from:
      ids: ["spiffe://example.org/billing"]
    to:
      grpc: ["pkg.Ledger/*"]
      not_grpc: ["pkg.Ledger/Purge"]
  - name: partner-tenant
    action: allow
    from:
      trust_domains: [partner.net]
    to:
      paths: ["/partner/**"]
    when:
      - header: x-tenant
        values: ["acme", "team-*"]
  - name: no-admin
    action: deny
    from:
      any: true
    to:
      paths: ["/admin/**"]
  - name: watch-writes
    action: audit
    to:
      not_methods: [GET, HEAD]
"#;

const SAME_TOML: &str = r#"
mode = "enforce"

[[rules]]
name = "frontend-reads"
action = "allow"
from.patterns = ["spiffe://example.org/frontend/**"]
from.not_ids = ["spiffe://example.org/frontend/legacy"]
to.methods = ["GET", "HEAD"]
to.paths = ["/v1/items/*", "/static/**"]

[[rules]]
name = "billing-grpc"
action = "allow"
from.ids = ["spiffe://example.org/billing"]
to.grpc = ["pkg.Ledger/*"]
to.not_grpc = ["pkg.Ledger/Purge"]

[[rules]]
name = "partner-tenant"
action = "allow"
from.trust_domains = ["partner.net"]
to.paths = ["/partner/**"]
when = [{ header = "x-tenant", values = ["acme", "team-*"] }]

[[rules]]
name = "no-admin"
action = "deny"
from.any = true
to.paths = ["/admin/**"]

[[rules]]
name = "watch-writes"
action = "audit"
to.not_methods = ["GET", "HEAD"]
"#;

const SAME_JSON: &str = r#"{
  "mode": "enforce",
  "rules": [
    { "name": "frontend-reads", "action": "allow",
      "from": { "patterns": ["spiffe://example.org/frontend/**"],
                "not_ids": ["spiffe://example.org/frontend/legacy"] },
      "to": { "methods": ["GET", "HEAD"], "paths": ["/v1/items/*", "/static/**"] } },
    { "name": "billing-grpc", "action": "allow",
      "from": { "ids": ["spiffe://example.org/billing"] },
      "to": { "grpc": ["pkg.Ledger/*"], "not_grpc": ["pkg.Ledger/Purge"] } },
    { "name": "partner-tenant", "action": "allow",
      "from": { "trust_domains": ["partner.net"] },
      "to": { "paths": ["/partner/**"] },
      "when": [{ "header": "x-tenant", "values": ["acme", "team-*"] }] },
    { "name": "no-admin", "action": "deny",
      "from": { "any": true },
      "to": { "paths": ["/admin/**"] } },
    { "name": "watch-writes", "action": "audit",
      "to": { "not_methods": ["GET", "HEAD"] } }
  ]
}"#;

#[test]
fn same_policy_in_yaml_toml_and_json_decides_identically() {
    let policies = [
        Policy::parse(SAME_YAML, Format::Yaml).unwrap(),
        Policy::parse(SAME_TOML, Format::Toml).unwrap(),
        Policy::parse(SAME_JSON, Format::Json).unwrap(),
    ];
    let peers = [
        "spiffe://example.org/frontend/web",
        "spiffe://example.org/frontend/legacy",
        "spiffe://example.org/billing",
        "spiffe://partner.net/app",
        "spiffe://example.org/other",
    ];
    let acme = [("x-tenant", "acme")];
    let team = [("x-tenant", "team-red")];
    let requests = [
        get("/v1/items/1"),
        Request::new("HEAD", "/static/app.js"),
        Request::new("POST", "/v1/items/1"),
        get("/admin/x"),
        Request::grpc("/pkg.Ledger/Post"),
        Request::grpc("/pkg.Ledger/Purge"),
        get("/partner/x").with_headers(&acme),
        get("/partner/x").with_headers(&team),
        get("/partner/x"),
    ];
    let mut allowed = 0;
    for peer in peers.map(id) {
        for request in &requests {
            let decisions = policies.each_ref().map(|p| p.decide(&peer, request));
            assert_eq!(
                decisions[0], decisions[1],
                "YAML vs TOML, {peer} {request:?}"
            );
            assert_eq!(
                decisions[0], decisions[2],
                "YAML vs JSON, {peer} {request:?}"
            );
            allowed += usize::from(decisions[0].is_allowed());
        }
    }
    // frontend/web: 2 reads; billing: 1 call; partner: 2 tenant requests.
    assert_eq!(allowed, 5);
    assert_eq!(
        policies
            .each_ref()
            .map(|p| p.rule_names().collect::<Vec<_>>().join(",")),
        ["frontend-reads,billing-grpc,partner-tenant,no-admin,watch-writes"; 3]
    );
}

// === allow_patterns ===

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

// === files and the store ===

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "zt-policy-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ALLOW_A: &str =
    "rules:\n  - name: a\n    action: allow\n    from: { ids: [spiffe://example.org/a] }\n";
const ALLOW_B: &str =
    "rules:\n  - name: b\n    action: allow\n    from: { ids: [spiffe://example.org/b] }\n";

#[test]
fn load_picks_the_format_from_the_extension() {
    let dir = TempDir::new();
    let peer = id("spiffe://example.org/frontend/web");
    for (name, text) in [
        ("p.yaml", SAME_YAML),
        ("p.yml", SAME_YAML),
        ("p.toml", SAME_TOML),
        ("p.json", SAME_JSON),
    ] {
        let policy = Policy::load(dir.write(name, text)).unwrap();
        assert_eq!(policy.rule_count(), 5, "{name}");
        assert!(
            policy.decide(&peer, &get("/v1/items/1")).is_allowed(),
            "{name}"
        );
    }
}

#[test]
fn load_refuses_an_unknown_extension() {
    let dir = TempDir::new();
    let path = dir.write("policy.txt", ALLOW_A);
    let err = Policy::load(&path).unwrap_err();
    assert!(
        matches!(&err, PolicyError::UnknownFormat { path: p } if *p == path),
        "{err:?}"
    );
}

#[test]
fn load_errors_name_the_file() {
    let dir = TempDir::new();
    let path = dir.write("bad.yaml", "rules:\n  - name: r\n    action: allow\n");
    let err = Policy::load(&path).unwrap_err();
    let PolicyError::Invalid {
        path: Some(reported),
        location: Some(location),
        ..
    } = &err
    else {
        panic!("expected an invalid-policy error with path and location, got {err:?}");
    };
    assert_eq!(reported, &path);
    assert_eq!(location.line, 2);
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
}

#[test]
fn load_refuses_a_missing_file() {
    let dir = TempDir::new();
    let err = Policy::load(dir.0.join("absent.json")).unwrap_err();
    assert!(matches!(err, PolicyError::Io { .. }), "{err:?}");
}

#[test]
fn load_refuses_a_file_over_the_size_limit() {
    let dir = TempDir::new();
    let mut big = String::from("{\"rules\": []}");
    big.push_str(&" ".repeat(MAX_POLICY_BYTES));
    let err = Policy::load(dir.write("big.json", big)).unwrap_err();
    assert!(
        matches!(err, PolicyError::TooLarge { limit, .. } if limit == MAX_POLICY_BYTES),
        "{err:?}"
    );
}

#[test]
fn load_refuses_a_file_that_is_not_utf8() {
    let dir = TempDir::new();
    let err = Policy::load(dir.write("bin.json", b"{\"rules\": [\xff]}")).unwrap_err();
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
}

/// Waits, bounded, for the next change notification.
async fn next_change(changes: &mut zt_core::policy::PolicyChanges) {
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("no change notification within 5 s")
        .then_some(())
        .expect("store gone");
}

#[tokio::test]
async fn reload_of_a_good_file_swaps_the_policy_and_notifies() {
    let dir = TempDir::new();
    let path = dir.write("policy.yaml", ALLOW_A);
    let store = PolicyStore::new(Policy::load(&path).unwrap());
    let mut changes = store.changes();
    let (a, b) = (id("spiffe://example.org/a"), id("spiffe://example.org/b"));
    assert!(store.decide(&a, &get("/")).is_allowed());
    assert_eq!(store.status().generation(), 1);

    dir.write("policy.yaml", ALLOW_B);
    store.reload_from(&path).unwrap();
    next_change(&mut changes).await;

    let status = changes.status();
    assert_eq!(status.generation(), 2);
    assert_eq!(status.last_error(), None);
    assert!(!store.decide(&a, &get("/")).is_allowed());
    assert!(store.load().decide(&b, &get("/")).is_allowed());
}

#[tokio::test]
async fn reload_of_a_bad_file_keeps_the_current_policy() {
    let dir = TempDir::new();
    let path = dir.write("policy.yaml", ALLOW_A);
    let store = PolicyStore::new(Policy::load(&path).unwrap());
    let mut changes = store.changes();
    let a = id("spiffe://example.org/a");

    // A half-written file, then one with a bad rule: neither may replace it.
    for bad in [
        "rules:\n  - name: a\n    action: allow\n    from: { ids: [spiffe://exa",
        "rules:\n  - name: a\n    action: allow\n",
    ] {
        dir.write("policy.yaml", bad);
        let err = store.reload_from(&path).unwrap_err();
        next_change(&mut changes).await;
        let status = changes.status();
        assert_eq!(status.generation(), 1, "{bad}");
        assert_eq!(status.last_error(), Some(err.to_string().as_str()));
        assert!(store.decide(&a, &get("/")).is_allowed(), "{bad}");
    }

    dir.write("policy.yaml", ALLOW_B);
    store.reload_from(&path).unwrap();
    next_change(&mut changes).await;
    assert_eq!(changes.status().generation(), 2);
    assert_eq!(changes.status().last_error(), None);
}

#[tokio::test]
async fn store_of_a_policy_built_in_code_notifies_every_clone() {
    let store = PolicyStore::new(Policy::deny_all());
    let clone = store.clone();
    let mut changes = clone.changes();
    store.store(Policy::allow_patterns(["spiffe://example.org/**"]).unwrap());
    next_change(&mut changes).await;
    assert_eq!(changes.status().rule_count(), 1);
    assert!(
        clone
            .decide(&id("spiffe://example.org/a"), &get("/"))
            .is_allowed()
    );
    let held = clone.load_full();
    store.store(Policy::deny_all());
    assert_eq!(held.rule_count(), 1, "a loaded policy is immutable");
}

#[test]
fn store_reports_dry_run_mode() {
    let store = PolicyStore::new(yaml("mode: dry-run\nrules: []\n"));
    assert_eq!(store.status().mode(), Mode::DryRun);
    let decision = store.decide(&id("spiffe://example.org/a"), &get("/"));
    assert!(decision.is_allowed() && decision.dry_run());
}

// === scale ===

/// 100,000 rules of every kind the index distinguishes: exact IDs, patterns
/// with a literal first segment, patterns starting with a wildcard, trust
/// domains, any-peer rules, and deny rules that must win over all of them.
fn big_policy_json(services: usize) -> String {
    let mut rules = Vec::with_capacity(services);
    for i in 0..services {
        let rule = match i % 10 {
            0..=5 => format!(
                r#"{{"name":"svc-{i}","action":"allow","from":{{"ids":["spiffe://example.org/svc-{i}"]}},"to":{{"methods":["GET"],"paths":["/svc-{i}/*"]}}}}"#
            ),
            6 | 7 => format!(
                r#"{{"name":"ns-{i}","action":"allow","from":{{"patterns":["spiffe://example.org/ns-{i}/*/sa/**"]}},"to":{{"grpc":["pkg.Svc{i}/*"]}}}}"#
            ),
            8 => format!(
                r#"{{"name":"deny-{i}","action":"deny","from":{{"ids":["spiffe://example.org/svc-{}"]}},"to":{{"paths":["/svc-{}/secret"]}}}}"#,
                i - 8,
                i - 8
            ),
            _ => format!(
                r#"{{"name":"td-{i}","action":"allow","from":{{"trust_domains":["td-{i}.example"]}},"to":{{"paths":["/td/{i}"]}}}}"#
            ),
        };
        rules.push(rule);
    }
    rules.push(
        r#"{"name":"wild","action":"allow","from":{"patterns":["spiffe://example.org/*/batch"]},"to":{"paths":["/batch"]}}"#
            .to_owned(),
    );
    rules.push(
        r#"{"name":"health","action":"allow","from":{"any":true},"to":{"paths":["/healthz"]}}"#
            .to_owned(),
    );
    format!("{{\"rules\":[{}]}}", rules.join(",\n"))
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

// === the index against a linear reference ===

/// A small deterministic generator, so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).unwrap() % bound
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next(items.len())]
    }
}

const TDS: &[&str] = &["a.org", "b.org"];
const FIRST: &[&str] = &["x", "y", "z"];
const SECOND: &[&str] = &["p", "q"];
const ACTIONS: &[&str] = &["allow", "allow", "deny", "audit"];

fn random_from(rng: &mut Lcg) -> Option<String> {
    let td = rng.pick(TDS);
    let id = format!("spiffe://{td}/{}/{}", rng.pick(FIRST), rng.pick(SECOND));
    Some(match rng.next(8) {
        0 => format!("{{ ids: [\"{id}\"] }}"),
        1 => format!("{{ trust_domains: [{td}] }}"),
        2 => format!("{{ patterns: [\"spiffe://{td}/{}/*\"] }}", rng.pick(FIRST)),
        3 => format!("{{ patterns: [\"spiffe://{td}/*/{}\"] }}", rng.pick(SECOND)),
        4 => format!("{{ patterns: [\"spiffe://{td}/**\"], not_ids: [\"{id}\"] }}"),
        5 => format!("{{ not_trust_domains: [{td}] }}"),
        6 => "{ any: true }".to_owned(),
        _ => return None,
    })
}

fn random_to(rng: &mut Lcg) -> Option<String> {
    Some(match rng.next(5) {
        0 => "{ methods: [GET] }".to_owned(),
        1 => format!("{{ paths: [\"/{}/**\"] }}", rng.pick(FIRST)),
        2 => "{ not_methods: [GET] }".to_owned(),
        3 => format!("{{ grpc: [\"p.S/{}\"] }}", rng.pick(&["A", "*"])),
        _ => return None,
    })
}

#[test]
fn indexed_decisions_agree_with_rule_by_rule_evaluation() {
    let mut rng = Lcg(0x5eed);
    let peers: Vec<SpiffeId> = TDS
        .iter()
        .flat_map(|td| {
            FIRST.iter().flat_map(move |f| {
                SECOND
                    .iter()
                    .map(move |s| id(&format!("spiffe://{td}/{f}/{s}")))
            })
        })
        .chain([id("spiffe://a.org"), id("spiffe://c.org/x/p")])
        .collect();
    let requests = [
        get("/x/1"),
        Request::new("POST", "/y/1"),
        Request::grpc("/p.S/A"),
        Request::grpc("/p.S/B"),
    ];
    for round in 0..40 {
        let mut rules = Vec::new();
        for n in 0..(5 + rng.next(40)) {
            let (from, to) = (random_from(&mut rng), random_to(&mut rng));
            if from.is_none() && to.is_none() {
                continue;
            }
            let mut rule = format!("  - name: r{n}\n    action: {}\n", rng.pick(ACTIONS));
            if let Some(from) = from {
                rule.push_str(&format!("    from: {from}\n"));
            }
            if let Some(to) = to {
                rule.push_str(&format!("    to: {to}\n"));
            }
            rules.push(rule);
        }
        let text = format!("rules:\n{}", rules.concat());
        let policy = yaml(&text);
        // Each rule alone, as an allow rule: it "matches" exactly when it allows.
        let singles: Vec<(String, &str, Policy)> = rules
            .iter()
            .map(|rule| {
                let action = ["allow", "deny", "audit"]
                    .into_iter()
                    .find(|a| rule.contains(&format!("action: {a}\n")))
                    .unwrap();
                let name = rule.split_whitespace().nth(2).unwrap().to_owned();
                let as_allow = rule.replace(&format!("action: {action}"), "action: allow");
                (name, action, yaml(&format!("rules:\n{as_allow}")))
            })
            .collect();
        for peer in &peers {
            for request in &requests {
                let matching: Vec<(&str, &str)> = singles
                    .iter()
                    .filter(|(_, _, single)| single.decide(peer, request).is_allowed())
                    .map(|(name, action, _)| (name.as_str(), *action))
                    .collect();
                let first = |kind: &str| matching.iter().find(|(_, a)| *a == kind).map(|(n, _)| *n);
                let expected_rule = first("deny").or(first("allow"));
                let expected_verdict = if first("deny").is_none() && first("allow").is_some() {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                };
                let audits: Vec<&str> = matching
                    .iter()
                    .filter(|(_, a)| *a == "audit")
                    .map(|(n, _)| *n)
                    .collect();

                let decision = policy.decide(peer, request);
                let context = format!("round {round}, {peer}, {request:?}\n{text}");
                assert_eq!(decision.verdict(), expected_verdict, "{context}");
                assert_eq!(decision.rule(), expected_rule, "{context}");
                assert_eq!(
                    decision.audit_rules().collect::<Vec<_>>(),
                    audits,
                    "{context}"
                );
            }
        }
    }
}

#[test]
fn tempdir_helper_cleans_up() {
    let path: PathBuf;
    {
        let dir = TempDir::new();
        path = dir.write("x.json", "{}");
        assert!(Path::new(&path).exists());
    }
    assert!(!path.exists());
}

// === text from files never forges logs ===

#[test]
fn unknown_field_with_a_newline_is_escaped_in_the_error() {
    let text = "{\"rules\": [{\"name\": \"r\", \"action\": \"allow\", \"from\": {\"any\": true}, \
                \"x\\n2026-12-04T00:00:00Z INFO zt::authz: request allowed\": 1}]}";
    let err = Policy::parse(text, Format::Json).unwrap_err().to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(
        err.contains("\\n2026-12-04"),
        "the field name is shown escaped: {err}"
    );
}

#[test]
fn string_values_of_a_wrong_file_do_not_appear_in_the_error() {
    let text = r#"{"rules": "AKIA-secret-do-not-log"}"#;
    let err = Policy::parse(text, Format::Json).unwrap_err().to_string();
    assert!(!err.contains("AKIA"), "{err}");
    assert!(err.contains("a string of 22 bytes"), "{err}");
    #[cfg(feature = "policy-yaml")]
    {
        let err = Policy::parse("rules: AKIA-secret-do-not-log\n", Format::Yaml)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("AKIA"), "{err}");
    }
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
