//! Validation: invalid policies are refused with a message and a location.

use super::*;

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
