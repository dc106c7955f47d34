//! The rule index against a linear, rule-by-rule reference.

use super::*;
use zt_core::{PeerIdentity, Verdict};

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
    Some(match rng.next(9) {
        0 => format!("{{ ids: [\"{id}\"] }}"),
        1 => format!("{{ trust_domains: [{td}] }}"),
        2 => format!("{{ patterns: [\"spiffe://{td}/{}/*\"] }}", rng.pick(FIRST)),
        3 => format!("{{ patterns: [\"spiffe://{td}/*/{}\"] }}", rng.pick(SECOND)),
        4 => format!("{{ patterns: [\"spiffe://{td}/**\"], not_ids: [\"{id}\"] }}"),
        5 => format!("{{ not_trust_domains: [{td}] }}"),
        6 => "{ any: true }".to_owned(),
        // Anonymous peers alone: never a verified peer, wherever it is indexed.
        7 => "{ unauthenticated: true }".to_owned(),
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

/// A policy of up to 45 random rules: its text and each rule's text.
fn random_policy(rng: &mut Lcg) -> (String, Vec<String>) {
    let mut rules = Vec::new();
    for n in 0..(5 + rng.next(40)) {
        let (from, to) = (random_from(rng), random_to(rng));
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
    (format!("rules:\n{}", rules.concat()), rules)
}

/// Every ID the random rules name, a root ID and an ID of another trust domain.
fn peers() -> Vec<SpiffeId> {
    TDS.iter()
        .flat_map(|td| {
            FIRST.iter().flat_map(move |f| {
                SECOND
                    .iter()
                    .map(move |s| id(&format!("spiffe://{td}/{f}/{s}")))
            })
        })
        .chain([id("spiffe://a.org"), id("spiffe://c.org/x/p")])
        .collect()
}

fn requests() -> [Request<'static>; 4] {
    [
        get("/x/1"),
        Request::new("POST", "/y/1"),
        Request::grpc("/p.S/A"),
        Request::grpc("/p.S/B"),
    ]
}

#[test]
fn indexed_decisions_agree_with_rule_by_rule_evaluation() {
    let mut rng = Lcg(0x5eed);
    let peers = peers();
    let requests = requests();
    for round in 0..40 {
        let (text, rules) = random_policy(&mut rng);
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
fn decisions_on_a_connections_preselected_rules_equal_indexed_decisions() {
    let mut rng = Lcg(0x5eed);
    // A root ID is never a peer's: an SVID's ID has a path.
    let connections: Vec<PeerIdentity> = peers()
        .iter()
        .filter(|peer| !peer.path().is_empty())
        .map(connection)
        .collect();
    let requests = requests();
    let mut previous: Option<(String, Policy)> = None;
    for round in 0..40 {
        let (text, _) = random_policy(&mut rng);
        let policy = yaml(&text);
        for peer in &connections {
            for request in &requests {
                let expected = policy.decide(peer.id(), request);
                let context = format!("round {round}, {}, {request:?}\n{text}", peer.id());
                // The first decision selects the peer's rules, the second reuses them.
                assert_eq!(policy.decide_peer(peer, request), expected, "{context}");
                assert_eq!(policy.decide_peer(peer, request), expected, "{context}");
                // The previous policy, on the same connection: a selection of its own
                // again, never this one's.
                if let Some((text, previous)) = &previous {
                    assert_eq!(
                        previous.decide_peer(peer, request),
                        previous.decide(peer.id(), request),
                        "previous policy, {context}\nprevious:\n{text}"
                    );
                }
            }
        }
        previous = Some((text, policy));
    }
}

#[test]
fn a_peer_whose_from_matches_hundreds_of_rules_is_decided_as_the_index_decides() {
    // 200 rules for every peer: more than a connection keeps selected.
    let mut text = String::from("rules:\n");
    for n in 0..200 {
        text.push_str(&format!(
            "  - name: any-{n}\n    action: allow\n    from: {{ any: true }}\n    to: {{ paths: [/p/{n}] }}\n"
        ));
    }
    text.push_str(
        "  - name: no-x\n    action: deny\n    from: { trust_domains: [a.org] }\n    to: { paths: [/p/199] }\n",
    );
    let policy = yaml(&text);
    let peer = connection(&id("spiffe://a.org/x/p"));
    for path in ["/p/0", "/p/150", "/p/199", "/p/200"] {
        let request = get(path);
        for _ in 0..2 {
            assert_eq!(
                policy.decide_peer(&peer, &request),
                policy.decide(peer.id(), &request),
                "{path}"
            );
        }
    }
    assert_eq!(
        policy.decide_peer(&peer, &get("/p/150")).rule(),
        Some("any-150")
    );
    assert_eq!(
        policy.decide_peer(&peer, &get("/p/199")).rule(),
        Some("no-x")
    );
}
