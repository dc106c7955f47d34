//! Formats: one policy in YAML, TOML and JSON decides identically.

use super::*;

pub(crate) const SAME_YAML: &str = r#"
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

pub(crate) const SAME_TOML: &str = r#"
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

pub(crate) const SAME_JSON: &str = r#"{
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
