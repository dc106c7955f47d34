//! `from`: which peers a rule matches (IDs, trust domains, patterns, exclusions).

use super::*;

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
