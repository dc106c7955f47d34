//! Every example explains itself: `--help` and `-h` print its flags and exit 0,
//! `--version` prints its version, and a mistake exits 2 naming the flag.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;

const EXAMPLES: &[&str] = &[
    "echo-server",
    "echo-client",
    "greeter-server",
    "greeter-client",
    "zt-dev-certs",
    "zt-policy",
];

#[tokio::test]
async fn every_example_prints_its_help_and_version() {
    for name in EXAMPLES {
        for flag in ["--help", "-h"] {
            let output = run(&example(name), &[flag]).await;
            assert_eq!(
                output.status.code(),
                Some(0),
                "{name} {flag}: {}",
                describe(&output)
            );
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(stdout.contains("Usage:"), "{name} {flag}: {stdout}");
        }
        let output = run(&example(name), &["--version"]).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{name}: {}",
            describe(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")),
            "{name}: {}",
            describe(&output)
        );
    }
}

#[tokio::test]
async fn zt_dev_certs_help_lists_the_files_it_writes() {
    let output = run(&example("zt-dev-certs"), &["--help"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    for file in [
        "bundle.pem",
        "svid_key.pem",
        "tls.key",
        "ca.key",
        "--ttl",
        "--ca-dir",
    ] {
        assert!(stdout.contains(file), "{file} missing from:\n{stdout}");
    }
}

#[tokio::test]
async fn an_unknown_flag_exits_2_and_names_it() {
    for name in EXAMPLES {
        let output = run(&example(name), &["--no-such-flag"]).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{name}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--no-such-flag"), "{name}: {stderr}");
    }
}
