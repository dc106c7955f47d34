//! `to`: which requests a rule matches (methods, paths, gRPC services and methods,
//! hosts), and ambiguous paths failing closed.

use super::*;

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
