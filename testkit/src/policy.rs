//! Generated policy documents, for tests and benchmarks of zt's policy at scale.
//!
//! ```
//! let json = zt_testkit::policy::policy_json(12);
//! assert_eq!(json.matches("\"name\"").count(), 12);
//! ```

/// A policy of `n` rules mixing every kind the index distinguishes: exact-ID
/// rules with method and path conditions (`svc-{i}` may `GET /svc-{i}/*` for
/// `i % 10` in 0..=5), pattern rules with a literal first segment and gRPC
/// conditions, deny rules, trust-domain rules, plus one pattern starting with a
/// wildcard and one any-peer rule.
pub fn policy_json(n: usize) -> String {
    let mut rules = Vec::with_capacity(n);
    for i in 0..n.saturating_sub(2) {
        rules.push(match i % 10 {
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
        });
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
