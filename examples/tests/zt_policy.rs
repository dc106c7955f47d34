//! The zt-policy example as CI runs it: one policy file, one question, and an exit
//! code for each outcome (0 allow / clean, 1 deny / findings, 2 usage or load
//! error).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Output;

use common::*;

const POLICY: &str = r#"
rules:
  - name: frontend-reads-orders
    action: allow
    from: { patterns: ["spiffe://example.org/frontend/**"] }
    to: { methods: [GET], paths: ["/orders/**"] }
  - name: no-legacy
    action: deny
    from: { ids: ["spiffe://example.org/frontend/legacy"] }
  - name: ledger
    action: allow
    from: { ids: ["spiffe://example.org/billing"] }
    to: { grpc: ["ledger.v1.Ledger/*"] }
  - name: tenant-acme
    action: allow
    from: { ids: ["spiffe://example.org/partner"] }
    when: [{ header: x-tenant, values: [acme] }]
  - name: watch-writes
    action: audit
    to: { not_methods: [GET, HEAD] }
"#;

const WEB: &str = "spiffe://example.org/frontend/web";

async fn zt_policy(args: &[&str]) -> (Option<i32>, String, Output) {
    let output = run(&example("zt-policy"), args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code(), stdout, output)
}

fn policy_file(dir: &TempDir, name: &str, text: &str) -> String {
    s(&dir.write_atomic(name, text)).to_owned()
}

#[tokio::test]
async fn check_of_allowed_request_exits_0_and_names_the_rule() {
    let dir = TempDir::new("policy-allow");
    let policy = policy_file(&dir, "policy.yaml", POLICY);
    let (code, stdout, output) = zt_policy(&[
        "check",
        &policy,
        "--peer",
        WEB,
        "--method",
        "GET",
        "--path",
        "/orders/42",
    ])
    .await;
    assert_eq!(code, Some(0), "{}", describe(&output));
    assert!(
        stdout.starts_with("allow: allowed by rule frontend-reads-orders\n"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("peer     {WEB}")), "{stdout}");
    assert!(stdout.contains("request  GET /orders/42"), "{stdout}");
}

#[tokio::test]
async fn check_of_request_matching_deny_rule_exits_1_and_names_it() {
    let dir = TempDir::new("policy-deny");
    let policy = policy_file(&dir, "policy.yaml", POLICY);
    let (code, stdout, output) = zt_policy(&[
        "check",
        &policy,
        "--peer",
        "spiffe://example.org/frontend/legacy",
        "--method",
        "GET",
        "--path",
        "/orders/42",
    ])
    .await;
    assert_eq!(code, Some(1), "{}", describe(&output));
    assert!(
        stdout.starts_with("deny: denied by rule no-legacy\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_of_request_no_rule_allows_exits_1_with_default_deny() {
    let dir = TempDir::new("policy-default");
    let policy = policy_file(&dir, "policy.yaml", POLICY);
    let (code, stdout, output) = zt_policy(&[
        "check",
        &policy,
        "--peer",
        WEB,
        "--method",
        "DELETE",
        "--path",
        "/orders/42",
    ])
    .await;
    assert_eq!(code, Some(1), "{}", describe(&output));
    assert!(
        stdout.starts_with("deny: no allow rule matched (default deny)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("audit    matched audit rule watch-writes"),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_of_grpc_call_is_decided_by_grpc_rules() {
    let dir = TempDir::new("policy-grpc");
    let policy = policy_file(&dir, "policy.yaml", POLICY);
    let (code, stdout, output) = zt_policy(&[
        "check",
        &policy,
        "--peer",
        "spiffe://example.org/billing",
        "--grpc",
        "ledger.v1.Ledger/Post",
    ])
    .await;
    assert_eq!(code, Some(0), "{}", describe(&output));
    assert!(
        stdout.starts_with("allow: allowed by rule ledger\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("request  POST /ledger.v1.Ledger/Post\n  gRPC     ledger.v1.Ledger/Post\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_decides_and_prints_the_canonical_request() {
    let dir = TempDir::new("policy-canonical");
    let policy = policy_file(
        &dir,
        "policy.yaml",
        "rules:\n  - name: all\n    action: allow\n    from: { any: true }\n  \
         - name: no-admin\n    action: deny\n    from: { any: true }\n    \
         to: { paths: [/users/admin], hosts: [admin.internal] }\n",
    );
    let (code, stdout, output) = zt_policy(&[
        "check",
        &policy,
        "--peer",
        "spiffe://example.org/web",
        "--method",
        "HEAD",
        "--path",
        "/users/%61dmin?x=1",
        "--host",
        "ADMIN.Internal.:443",
    ])
    .await;
    assert_eq!(code, Some(1), "{}", describe(&output));
    assert!(
        stdout.starts_with("deny: denied by rule no-admin\n"),
        "{stdout}"
    );
    assert!(stdout.contains("request  HEAD /users/admin\n"), "{stdout}");
    assert!(stdout.contains("host     admin.internal\n"), "{stdout}");
}

#[tokio::test]
async fn check_with_header_meets_the_when_condition() {
    let dir = TempDir::new("policy-header");
    let policy = policy_file(&dir, "policy.yaml", POLICY);
    let peer = "spiffe://example.org/partner";
    let request = ["--method", "GET", "--path", "/anything"];
    let mut with_header = vec!["check", &policy, "--peer", peer];
    with_header.extend(request);
    let mut without_header = with_header.clone();
    with_header.extend(["--header", "X-Tenant=acme"]);

    let (code, stdout, output) = zt_policy(&with_header).await;
    assert_eq!(code, Some(0), "{}", describe(&output));
    assert!(stdout.contains("allowed by rule tenant-acme"), "{stdout}");

    without_header.extend(["--header", "x-tenant=other"]);
    let (code, _, output) = zt_policy(&without_header).await;
    assert_eq!(code, Some(1), "{}", describe(&output));
}

#[tokio::test]
async fn check_in_dry_run_exits_on_the_verdict_and_says_it_is_not_enforced() {
    let dir = TempDir::new("policy-dry-run");
    let policy = policy_file(
        &dir,
        "policy.json",
        r#"{"mode": "dry-run", "rules": [{"name": "web", "action": "allow",
            "from": {"ids": ["spiffe://example.org/frontend/web"]}}]}"#,
    );
    let (code, stdout, output) = zt_policy(&[
        "check",
        &policy,
        "--peer",
        "spiffe://example.org/batch",
        "--method",
        "GET",
        "--path",
        "/",
    ])
    .await;
    assert_eq!(code, Some(1), "{}", describe(&output));
    assert!(
        stdout.starts_with("deny: no allow rule matched (default deny) (dry run, not enforced)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("dry-run mode"), "{stdout}");
}

#[tokio::test]
async fn check_without_a_request_exits_2_with_usage() {
    let dir = TempDir::new("policy-usage");
    let policy = policy_file(&dir, "policy.yaml", POLICY);
    let (code, _, output) = zt_policy(&["check", &policy, "--peer", WEB]).await;
    assert_eq!(code, Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--method and --path, or with --grpc"),
        "{stderr}"
    );
    assert!(stderr.contains("Usage: zt-policy"), "{stderr}");
}

#[tokio::test]
async fn unknown_command_exits_2() {
    let (code, _, output) = zt_policy(&["decide", "policy.yaml"]).await;
    assert_eq!(code, Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unrecognized subcommand 'decide'"),
        "{stderr}"
    );
}

#[tokio::test]
async fn lint_of_clean_policy_exits_0() {
    let dir = TempDir::new("lint-clean");
    let policy = policy_file(&dir, "policy.yaml", POLICY);
    let (code, stdout, output) = zt_policy(&["lint", &policy]).await;
    assert_eq!(code, Some(0), "{}", describe(&output));
    assert!(stdout.contains("5 rules, mode enforce"), "{stdout}");
    assert!(stdout.ends_with("no findings\n"), "{stdout}");
}

#[tokio::test]
async fn lint_notes_rules_whose_meaning_changed_without_failing() {
    let dir = TempDir::new("lint-notes");
    let policy = policy_file(
        &dir,
        "policy.yaml",
        "rules:\n  - name: no-admin\n    action: deny\n    from: { any: true }\n    \
         to: { paths: [\"/admin/**\"] }\n",
    );
    let (code, stdout, output) = zt_policy(&["lint", &policy]).await;
    assert_eq!(code, Some(0), "{}", describe(&output));
    assert!(
        stdout.contains("note: rule \"no-admin\" (rule 1): also matches gRPC calls"),
        "{stdout}"
    );
    assert!(stdout.ends_with("no findings\n"), "{stdout}");
}

#[tokio::test]
async fn lint_of_toml_policy_exits_0() {
    let dir = TempDir::new("lint-toml");
    let policy = policy_file(
        &dir,
        "policy.toml",
        r#"
[[rules]]
name = "web"
action = "allow"
from.ids = ["spiffe://example.org/frontend/web"]
"#,
    );
    let (code, stdout, output) = zt_policy(&["lint", &policy]).await;
    assert_eq!(code, Some(0), "{}", describe(&output));
    assert!(stdout.contains("1 rule, mode enforce"), "{stdout}");
}

#[tokio::test]
async fn lint_reports_shadowed_and_never_matching_rules_and_exits_1() {
    let dir = TempDir::new("lint-findings");
    let policy = policy_file(
        &dir,
        "policy.yaml",
        r#"
rules:
  - name: legacy-reads
    action: allow
    from: { ids: ["spiffe://example.org/frontend/legacy"] }
    to: { methods: [GET] }
  - name: no-legacy
    action: deny
    from: { patterns: ["spiffe://example.org/frontend/legacy/**", "spiffe://example.org/frontend/legacy"] }
  - name: api
    action: allow
    from:
      patterns: ["spiffe://example.org/ns/*/sa/api"]
      not_patterns: ["spiffe://example.org/ns/**"]
"#,
    );
    let (code, stdout, output) = zt_policy(&["lint", &policy]).await;
    assert_eq!(code, Some(1), "{}", describe(&output));
    assert!(
        stdout.contains(
            "rule \"legacy-reads\" (rule 1): never allows anything: deny rule \"no-legacy\" \
             matches every request it matches, and deny wins"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "rule \"api\" (rule 3): pattern spiffe://example.org/ns/*/sa/api can never match"
        ),
        "{stdout}"
    );
    assert!(stdout.ends_with("3 findings\n"), "{stdout}");
}

#[tokio::test]
async fn lint_of_invalid_policy_exits_2_with_the_location() {
    let dir = TempDir::new("lint-invalid");
    let policy = policy_file(
        &dir,
        "policy.yaml",
        "rules:\n  - name: a\n    action: allow\n    from: { idz: [x] }\n",
    );
    let (code, _, output) = zt_policy(&["lint", &policy]).await;
    assert_eq!(code, Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("invalid YAML policy {policy} at line 4, column")),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `idz`"), "{stderr}");
}

#[tokio::test]
async fn lint_of_missing_file_exits_2() {
    let dir = TempDir::new("lint-missing");
    let missing = dir.join("absent.yaml");
    let (code, _, output) = zt_policy(&["lint", s(&missing)]).await;
    assert_eq!(code, Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read policy file"));
}

const PROBES: &str = r#"
rules:
  - name: probes
    action: allow
    from: { unauthenticated: true }
    to: { methods: [GET], paths: [/healthz] }
  - name: everyone-else
    action: allow
    from: { any: true }
"#;

#[tokio::test]
async fn check_as_anonymous_peer_exits_0_for_the_route_an_unauthenticated_rule_opens() {
    let dir = TempDir::new("policy-anonymous-allow");
    let policy = policy_file(&dir, "policy.yaml", PROBES);
    let (code, stdout, output) = zt_policy(&[
        "check",
        &policy,
        "--anonymous",
        "--method",
        "GET",
        "--path",
        "/healthz",
    ])
    .await;
    assert_eq!(code, Some(0), "{}", describe(&output));
    assert!(
        stdout.starts_with("allow: allowed by rule probes\n"),
        "{stdout}"
    );
    assert!(stdout.contains("peer     anonymous"), "{stdout}");
}

#[tokio::test]
async fn check_as_anonymous_peer_exits_1_where_only_authenticated_peers_are_allowed() {
    let dir = TempDir::new("policy-anonymous-deny");
    let policy = policy_file(&dir, "policy.yaml", PROBES);
    let (code, stdout, output) = zt_policy(&[
        "check",
        &policy,
        "--anonymous",
        "--method",
        "GET",
        "--path",
        "/whoami",
    ])
    .await;
    assert_eq!(code, Some(1), "{}", describe(&output));
    assert!(stdout.starts_with("deny: "), "{stdout}");
    // The same request from any verified peer is allowed.
    let (code, _, output) = zt_policy(&[
        "check", &policy, "--peer", WEB, "--method", "GET", "--path", "/whoami",
    ])
    .await;
    assert_eq!(code, Some(0), "{}", describe(&output));
}

#[tokio::test]
async fn check_with_both_peer_and_anonymous_is_a_usage_error() {
    let dir = TempDir::new("policy-anonymous-usage");
    let policy = policy_file(&dir, "policy.yaml", PROBES);
    for args in [
        &[
            "check",
            &policy,
            "--anonymous",
            "--peer",
            WEB,
            "--method",
            "GET",
            "--path",
            "/",
        ][..],
        &["check", &policy, "--method", "GET", "--path", "/"][..],
    ] {
        let (code, _, output) = zt_policy(args).await;
        assert_eq!(code, Some(2), "{args:?}: {}", describe(&output));
    }
}

#[tokio::test]
async fn check_with_jwt_sub_decides_on_the_peer_and_the_token_subject_together() {
    let dir = TempDir::new("zt-policy-jwt");
    let policy = policy_file(
        &dir,
        "policy.yaml",
        r#"
rules:
  - name: gateway-for-frontend
    action: allow
    from:
      ids: ["spiffe://example.org/gateway"]
      jwt: { ids: ["spiffe://example.org/frontend"] }
"#,
    );
    let base = [
        "check",
        &policy,
        "--peer",
        "spiffe://example.org/gateway",
        "--method",
        "GET",
        "--path",
        "/orders",
    ];
    let with = |sub: &'static str| {
        let mut args = base.to_vec();
        args.extend(["--jwt-sub", sub]);
        args
    };
    let (code, stdout, output) = zt_policy(&with("spiffe://example.org/frontend")).await;
    assert_eq!(code, Some(0), "{}", describe(&output));
    assert!(stdout.contains("gateway-for-frontend"), "{stdout}");
    assert!(
        stdout.contains("jwt      spiffe://example.org/frontend"),
        "{stdout}"
    );
    let (code, _, output) = zt_policy(&with("spiffe://example.org/batch")).await;
    assert_eq!(code, Some(1), "{}", describe(&output));
    let (code, _, output) = zt_policy(&base).await;
    assert_eq!(code, Some(1), "without a token: {}", describe(&output));
}

const WS_POLICY: &str = r#"
rules:
  - name: web-chat
    action: allow
    from: { ids: ["spiffe://example.org/frontend/web"] }
    to: { paths: ["/chat"], upgrades: [websocket] }
  - name: web-reads
    action: allow
    from: { ids: ["spiffe://example.org/frontend/web"] }
    to: { methods: [GET], paths: ["/**"] }
"#;

#[tokio::test]
async fn check_of_websocket_upgrade_needs_a_rule_naming_the_upgrade() {
    let dir = TempDir::new("policy-upgrade");
    let policy = policy_file(&dir, "policy.yaml", WS_POLICY);
    let ask = |path: &'static str| {
        let policy = policy.clone();
        async move {
            zt_policy(&[
                "check",
                &policy,
                "--peer",
                WEB,
                "--method",
                "GET",
                "--path",
                path,
                "--upgrade",
                "websocket",
            ])
            .await
        }
    };
    let (code, stdout, output) = ask("/chat").await;
    assert_eq!(code, Some(0), "{}", describe(&output));
    assert!(
        stdout.starts_with("allow: allowed by rule web-chat\n"),
        "{stdout}"
    );
    assert!(stdout.contains("upgrade  websocket"), "{stdout}");
    // web-reads allows GET on every path, but names no upgrade.
    let (code, stdout, output) = ask("/orders").await;
    assert_eq!(code, Some(1), "{}", describe(&output));
    assert!(stdout.starts_with("deny: "), "{stdout}");
}

#[tokio::test]
async fn check_with_unknown_upgrade_exits_2_with_usage() {
    let dir = TempDir::new("policy-upgrade-usage");
    let policy = policy_file(&dir, "policy.yaml", WS_POLICY);
    let (code, _, output) = zt_policy(&[
        "check",
        &policy,
        "--peer",
        WEB,
        "--method",
        "GET",
        "--path",
        "/chat",
        "--upgrade",
        "h2c",
    ])
    .await;
    assert_eq!(code, Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("the only upgrade zt governs is websocket"),
        "{}",
        describe(&output)
    );
}
