//! `to.upgrades`: an upgrade is admitted only by an allow rule that names it;
//! deny rules on a path deny its upgrades too; what a policy with `upgrades`
//! refuses to load, and what lint makes of it.

use zt_core::Upgrade;

use super::*;

fn websocket(path: &str) -> Request<'_> {
    get(path).with_upgrade(Upgrade::WebSocket)
}

#[test]
fn allow_rule_without_upgrades_never_admits_an_upgrade() {
    let policy = yaml(
        "rules:\n  - name: ws-route\n    action: allow\n    from: { any: true }\n    to: { methods: [GET], paths: [/ws] }\n  - name: everyone\n    action: allow\n    from: { any: true }\n",
    );
    let peer = id("spiffe://example.org/a");
    assert!(policy.decide(&peer, &get("/ws")).is_allowed());
    let decision = policy.decide(&peer, &websocket("/ws"));
    assert!(!decision.is_allowed());
    assert_eq!(decision.rule(), None);
}

#[test]
fn allow_rule_with_upgrades_admits_only_the_upgrade() {
    let policy = yaml(
        "rules:\n  - name: ws\n    action: allow\n    from: { any: true }\n    to: { paths: [/ws], upgrades: [websocket] }\n",
    );
    let peer = id("spiffe://example.org/a");
    let decision = policy.decide(&peer, &websocket("/ws"));
    assert!(decision.is_allowed());
    assert_eq!(decision.rule(), Some("ws"));
    // The same rule is no allow rule for the plain request, nor for another path.
    assert!(!policy.decide(&peer, &get("/ws")).is_allowed());
    assert!(!policy.decide(&peer, &websocket("/other")).is_allowed());
}

#[test]
fn deny_rule_without_upgrades_denies_the_upgrade_of_its_path() {
    let policy = yaml(
        "rules:\n  - name: ws\n    action: allow\n    from: { any: true }\n    to: { paths: [/ws], upgrades: [websocket] }\n  - name: no-ws-for-b\n    action: deny\n    from: { ids: [spiffe://example.org/b] }\n    to: { paths: [/ws] }\n",
    );
    assert!(
        policy
            .decide(&id("spiffe://example.org/a"), &websocket("/ws"))
            .is_allowed()
    );
    let decision = policy.decide(&id("spiffe://example.org/b"), &websocket("/ws"));
    assert!(!decision.is_allowed());
    assert_eq!(decision.rule(), Some("no-ws-for-b"));
}

#[test]
fn deny_rule_with_upgrades_denies_only_upgrades() {
    let policy = yaml(
        "rules:\n  - name: all\n    action: allow\n    from: { any: true }\n  - name: ws\n    action: allow\n    from: { any: true }\n    to: { upgrades: [websocket] }\n  - name: no-upgrades-for-b\n    action: deny\n    from: { ids: [spiffe://example.org/b] }\n    to: { upgrades: [websocket] }\n",
    );
    let b = id("spiffe://example.org/b");
    assert!(policy.decide(&b, &get("/ws")).is_allowed());
    assert_eq!(
        policy.decide(&b, &websocket("/ws")).rule(),
        Some("no-upgrades-for-b")
    );
    assert!(
        policy
            .decide(&id("spiffe://example.org/a"), &websocket("/ws"))
            .is_allowed()
    );
}

#[test]
fn websocket_upgrade_is_decided_as_a_get() {
    let policy = yaml(
        "rules:\n  - name: ws\n    action: allow\n    from: { any: true }\n    to: { methods: [GET], upgrades: [websocket] }\n",
    );
    let peer = id("spiffe://example.org/a");
    assert!(policy.decide(&peer, &websocket("/ws")).is_allowed());
    // Integrations never build a CONNECT view of an upgrade; one that did
    // would not be admitted by a GET rule.
    let connect = Request::new("CONNECT", "/ws").with_upgrade(Upgrade::WebSocket);
    assert!(!policy.decide(&peer, &connect).is_allowed());
}

#[test]
fn unknown_upgrade_name_is_rejected() {
    let (message, _) = invalid(
        "rules:\n  - name: r\n    action: allow\n    from: { any: true }\n    to: { upgrades: [h2c] }\n",
        Format::Yaml,
    );
    assert!(
        message.contains("\"h2c\" is not an upgrade zt governs: the only one is websocket"),
        "{message}"
    );
}

#[test]
fn upgrade_name_in_another_case_is_rejected() {
    let (message, _) = invalid(
        "rules:\n  - name: r\n    action: allow\n    from: { any: true }\n    to: { upgrades: [WebSocket] }\n",
        Format::Yaml,
    );
    assert!(
        message.contains("upgrade names are lower case: write websocket"),
        "{message}"
    );
}

#[test]
fn empty_upgrades_list_is_rejected() {
    let (message, _) = invalid(
        "rules:\n  - name: r\n    action: allow\n    from: { any: true }\n    to: { upgrades: [] }\n",
        Format::Yaml,
    );
    assert!(message.contains("empty list"), "{message}");
}

#[test]
fn upgrades_with_methods_without_get_are_rejected() {
    let (message, _) = invalid(
        "rules:\n  - name: r\n    action: allow\n    from: { any: true }\n    to: { methods: [POST], upgrades: [websocket] }\n",
        Format::Yaml,
    );
    assert!(
        message.contains("upgrades can never match: an upgrade is decided as a GET request"),
        "{message}"
    );
    let (message, _) = invalid(
        "rules:\n  - name: r\n    action: allow\n    from: { any: true }\n    to: { not_methods: [GET], upgrades: [websocket] }\n",
        Format::Yaml,
    );
    assert!(message.contains("not_methods excludes GET"), "{message}");
}

#[test]
fn lint_finds_an_upgrade_rule_shadowed_by_a_deny_without_upgrades() {
    let policy = yaml(
        "rules:\n  - name: no-ws-path\n    action: deny\n    from: { any: true }\n    to: { paths: [/ws] }\n  - name: ws\n    action: allow\n    from: { any: true }\n    to: { paths: [/ws], upgrades: [websocket] }\n",
    );
    let findings = policy.lint();
    assert!(findings.iter().any(|f| f.rule() == "ws"), "{findings:?}");
}

#[test]
fn lint_keeps_an_upgrade_rule_beside_a_plain_allow_rule() {
    // The plain rule admits no upgrade, so the upgrade rule is not redundant,
    // and the upgrade rule admits no plain request, so neither is the other.
    let policy = yaml(
        "rules:\n  - name: plain\n    action: allow\n    from: { any: true }\n    to: { paths: [/ws] }\n  - name: ws\n    action: allow\n    from: { any: true }\n    to: { paths: [/ws], upgrades: [websocket] }\n",
    );
    let findings = policy.lint();
    assert!(findings.is_empty(), "{findings:?}");
}
