//! The quickstart, as a newcomer runs it: it must exit 0 and tell the story it
//! promises.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;

/// The serial in a `client:` line: `(server certificate serial 4b2f37fe, ...`.
fn serial(line: &str) -> &str {
    let (_, rest) = line
        .split_once("server certificate serial ")
        .unwrap_or_else(|| panic!("no serial in {line:?}"));
    let serial = rest.split(',').next().unwrap();
    assert!(!serial.is_empty(), "empty serial in {line:?}");
    serial
}

#[tokio::test]
async fn quickstart_allows_denies_rotates_and_reauthorizes_then_exits_0() {
    let output = run(&example("quickstart"), &[]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    let line = |prefix: &str| -> &str {
        lines
            .iter()
            .copied()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}:\n{stdout}"))
    };

    // 1. The allowed and the denied client, with the server's decisions.
    line(
        "server: spiffe://example.org/frontend/web GET /orders/42 -> allow \
         (allowed by rule frontend-reads-orders)",
    );
    let first =
        line("client: frontend/web: 200 OK \"order 42 for spiffe://example.org/frontend/web\"");
    line(
        "server: spiffe://example.org/batch GET /orders/42 -> deny \
         (no allow rule matched (default deny))",
    );
    line("client: batch: 403 Forbidden");

    // 2. Rotation: the open connection keeps the old certificate, a new one gets the new.
    let open = line("client: frontend/web, open connection: 200 OK");
    let fresh = line("client: frontend/web, new connection: 200 OK");
    assert_eq!(serial(open), serial(first), "{stdout}");
    assert_ne!(serial(fresh), serial(first), "{stdout}");
    assert!(first.ends_with("expires in 60 min)"), "{first}");
    assert!(fresh.ends_with("expires in 120 min)"), "{fresh}");
    line("the open connection kept its certificate; the new handshake got the new one");

    // 3. The policy change refuses the next request on the same connection.
    line(
        "server: spiffe://example.org/frontend/web GET /orders/42 -> deny \
         (denied by rule web-is-retired)",
    );
    let refused = line("client: frontend/web, open connection: 403 Forbidden");
    assert_eq!(serial(refused), serial(first), "{stdout}");
    line("the same connection, re-authorized on its next request");

    line("server counted 3 allowed and 2 denied requests");

    // The decision counter, by label, as recorded through the `metrics` facade.
    line("metrics recorded (Prometheus text, decisions by label):");
    let decisions = |decision: &str| -> u64 {
        lines
            .iter()
            .filter(|l| l.starts_with("zt_authz_decisions_total{"))
            .filter(|l| l.contains(&format!("decision=\"{decision}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(decisions("allow"), 3, "{stdout}");
    assert_eq!(decisions("deny"), 2, "{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("zt_authz_decisions_total{")
                && l.contains("decision=\"deny\"")
                && l.contains("rule=\"web-is-retired\"")
                && l.ends_with(" 1")),
        "{stdout}"
    );
}
