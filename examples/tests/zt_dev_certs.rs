//! The zt-dev-certs example: its files load with zt-core in both layouts, verify
//! with openssl, and serve the echo-server to curl.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use x509_parser::prelude::{FromDer, X509Certificate};
use zt_core::{FileLayout, FileSource, IdentitySource, X509Bundle, X509Svid};

use common::*;

const TD: &str = "example.org";
const API: &str = "spiffe://example.org/api";
const WEB: &str = "spiffe://example.org/frontend/web";

async fn dev_certs(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--trust-domain", TD, "--out", s(out)];
    args.extend_from_slice(extra);
    run(&example("zt-dev-certs"), &args).await
}

/// Writes SVIDs for `API` (also named `localhost`) and `WEB` into `dir/out`.
async fn write_api_and_web(dir: &TempDir) -> PathBuf {
    let out = dir.join("out");
    let output = dev_certs(
        &out,
        &[
            "--id",
            API,
            "--id",
            WEB,
            "--dns",
            "localhost",
            "--ttl",
            "30m",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    out
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn load(layout: FileLayout) -> zt_core::SpiffeId {
    let source = FileSource::builder(layout).start().unwrap();
    let snapshot = within("identity from the files", source.identity().ready()).await;
    snapshot.id().clone()
}

#[tokio::test]
async fn spiffe_helper_layout_loads_with_file_source() {
    let dir = TempDir::new("dev-certs-helper");
    let out = write_api_and_web(&dir).await;
    assert_eq!(
        load(FileLayout::spiffe_helper(out.join("frontend-web"))).await,
        id(WEB)
    );
    assert_eq!(
        load(FileLayout::spiffe_helper(out.join("api"))).await,
        id(API)
    );
}

#[tokio::test]
async fn kubernetes_tls_layout_loads_with_file_source() {
    let dir = TempDir::new("dev-certs-k8s");
    let out = write_api_and_web(&dir).await;
    assert_eq!(
        load(FileLayout::kubernetes_tls(out.join("frontend-web"))).await,
        id(WEB)
    );
}

#[tokio::test]
async fn bundle_json_holds_the_same_ca_as_bundle_pem() {
    let dir = TempDir::new("dev-certs-json");
    let out = write_api_and_web(&dir).await;
    let td: zt_core::TrustDomain = TD.parse().unwrap();
    let pem = X509Bundle::from_pem(td.clone(), &read(&out.join("bundle.pem"))).unwrap();
    let json = X509Bundle::from_spiffe_json(td, &read(&out.join("bundle.json"))).unwrap();
    assert_eq!(json.len(), 1);
    assert!(json.same_authorities(&pem));
    assert!(json.sequence().is_some_and(|s| s > 0));
}

#[tokio::test]
async fn bundle_json_key_is_the_ca_certificates_public_key() {
    let dir = TempDir::new("dev-certs-jwk");
    let out = write_api_and_web(&dir).await;
    let document: serde_json::Value =
        serde_json::from_slice(&read(&out.join("bundle.json"))).unwrap();
    let key = &document["keys"][0];
    assert_eq!(key["use"], "x509-svid");
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");

    let td: zt_core::TrustDomain = TD.parse().unwrap();
    let pem = X509Bundle::from_pem(td, &read(&out.join("bundle.pem"))).unwrap();
    let (_, ca) = X509Certificate::from_der(&pem.authorities()[0]).unwrap();
    let point = &*ca.public_key().subject_public_key.data;
    let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap();
    assert_eq!(point[0], 0x04);
    assert_eq!(x, point[1..33]);
    assert_eq!(y, point[33..65]);
}

#[tokio::test]
async fn openssl_verifies_every_svid_against_bundle_pem() {
    let dir = TempDir::new("dev-certs-openssl");
    let out = write_api_and_web(&dir).await;
    for svid in [
        "api/svid.pem",
        "frontend-web/svid.pem",
        "frontend-web/tls.crt",
    ] {
        let output = run(
            &tool("openssl"),
            &[
                "verify",
                "-CAfile",
                s(&out.join("bundle.pem")),
                s(&out.join(svid)),
            ],
        )
        .await;
        assert!(output.status.success(), "{svid}: {}", describe(&output));
        assert!(String::from_utf8_lossy(&output.stdout).ends_with(": OK\n"));
    }
}

#[cfg(unix)]
#[tokio::test]
async fn private_keys_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = TempDir::new("dev-certs-modes");
    let out = write_api_and_web(&dir).await;
    for key in [
        "api/svid_key.pem",
        "api/tls.key",
        "frontend-web/svid_key.pem",
    ] {
        let mode = std::fs::metadata(out.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}: {mode:o}");
    }
}

#[tokio::test]
async fn ttl_sets_the_svid_lifetime() {
    let dir = TempDir::new("dev-certs-ttl");
    let out = write_api_and_web(&dir).await;
    let svid = X509Svid::from_pem(
        &read(&out.join("api/svid.pem")),
        &read(&out.join("api/svid_key.pem")),
    )
    .unwrap();
    let remaining = svid.remaining(SystemTime::now());
    assert!(
        remaining <= Duration::from_secs(30 * 60) && remaining > Duration::from_secs(28 * 60),
        "{remaining:?}"
    );
}

#[tokio::test]
async fn output_lists_the_files_and_stderr_warns_development_only() {
    let dir = TempDir::new("dev-certs-output");
    let out = dir.join("out");
    let output = dev_certs(&out, &["--id", WEB]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(s(&out.join("bundle.pem"))), "{stdout}");
    assert!(stdout.contains(s(&out.join("bundle.json"))), "{stdout}");
    assert!(
        stdout.contains(&format!("{}/  svid.pem", s(&out.join("frontend-web")))),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DEVELOPMENT certificates"), "{stderr}");
}

#[tokio::test]
async fn id_outside_the_trust_domain_exits_2() {
    let dir = TempDir::new("dev-certs-foreign");
    let output = dev_certs(&dir.join("out"), &["--id", "spiffe://other.org/api"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not in trust domain example.org"));
    assert!(!dir.join("out").exists(), "nothing may be written");
}

#[tokio::test]
async fn ids_sharing_a_directory_name_exit_2() {
    let dir = TempDir::new("dev-certs-collision");
    let output = dev_certs(
        &dir.join("out"),
        &[
            "--id",
            "spiffe://example.org/a/b",
            "--id",
            "spiffe://example.org/a-b",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("would both be written to a-b/"));
}

#[tokio::test]
async fn ttl_beyond_the_ca_lifetime_exits_2() {
    let dir = TempDir::new("dev-certs-long-ttl");
    let output = dev_certs(&dir.join("out"), &["--id", WEB, "--ttl", "2d"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("at most 24h"));
}

#[tokio::test]
async fn echo_server_with_written_files_answers_curl_with_written_client_files() {
    let dir = TempDir::new("dev-certs-echo");
    let out = write_api_and_web(&dir).await;
    let server_files = SvidFiles {
        cert: out.join("api/svid.pem"),
        key: out.join("api/svid_key.pem"),
    };
    let server = EchoServer::start_with_files(
        &server_files,
        &out.join("api/svid_bundle.pem"),
        &["--allow", WEB],
    )
    .await;

    let resolve = format!("localhost:{}:127.0.0.1", server.addr.port());
    let output = run(
        &tool("curl"),
        &[
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--cert",
            s(&out.join("frontend-web/tls.crt")),
            "--key",
            s(&out.join("frontend-web/tls.key")),
            "--cacert",
            s(&out.join("bundle.pem")),
            "--resolve",
            &resolve,
            "--write-out",
            "\n%{http_code}",
            &server.url("/whoami"),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    assert_eq!(code, "200", "{}", describe(&output));
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json, serde_json::json!({ "spiffe_id": WEB }));
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlinked_identity_directory_is_refused_and_nothing_is_written_through_it() {
    let dir = TempDir::new("dev-certs-symlink");
    let out = dir.join("out");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    // `spiffe://example.org/api` is written to `out/api/`: plant a link there.
    std::os::unix::fs::symlink(&elsewhere, out.join("api")).unwrap();
    let output = dev_certs(&out, &["--id", API]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "files were written through the link"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_world_writable_output_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("dev-certs-world-writable");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = dev_certs(&out, &["--id", API]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("other users may write"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "something was written"
    );
}

#[tokio::test]
async fn ca_dir_keeps_the_ca_so_reissuing_one_id_leaves_the_others_valid() {
    let dir = TempDir::new("dev-certs-ca-dir");
    let out = dir.join("out");
    let ca_dir = dir.join("ca");
    let first = dev_certs(&out, &["--id", API, "--id", WEB, "--ca-dir", s(&ca_dir)]).await;
    assert!(first.status.success(), "{}", describe(&first));
    let web_before = read(&out.join("frontend-web/svid.pem"));
    let bundle_before = read(&out.join("bundle.pem"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(ca_dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the CA key is readable by others");
    }

    // Re-issue the API's SVID alone, under the kept CA.
    let second = dev_certs(&out, &["--id", API, "--ca-dir", s(&ca_dir)]).await;
    assert!(second.status.success(), "{}", describe(&second));
    assert_eq!(
        read(&out.join("bundle.pem")),
        bundle_before,
        "the bundle changed"
    );
    assert_eq!(read(&out.join("frontend-web/svid.pem")), web_before);

    // The web SVID of the first run still verifies against the bundle of the second.
    let td: zt_core::TrustDomain = TD.parse().unwrap();
    let bundle = X509Bundle::from_pem(td, &read(&out.join("bundle.pem"))).unwrap();
    let web = X509Svid::from_pem(
        &read(&out.join("frontend-web/svid.pem")),
        &read(&out.join("frontend-web/svid_key.pem")),
    )
    .unwrap();
    let api = X509Svid::from_pem(
        &read(&out.join("api/svid.pem")),
        &read(&out.join("api/svid_key.pem")),
    )
    .unwrap();
    let provider = zt_core::default_provider().unwrap();
    let bundles = zt_core::BundleSet::new().with(bundle);
    web.verify(&bundles, &provider, std::time::SystemTime::now())
        .unwrap();
    api.verify(&bundles, &provider, std::time::SystemTime::now())
        .unwrap();
}

#[tokio::test]
async fn ca_dir_of_another_trust_domain_is_refused() {
    let dir = TempDir::new("dev-certs-ca-dir-other");
    let ca_dir = dir.join("ca");
    let first = dev_certs(&dir.join("out"), &["--id", API, "--ca-dir", s(&ca_dir)]).await;
    assert!(first.status.success(), "{}", describe(&first));
    let output = run(
        &example("zt-dev-certs"),
        &[
            "--trust-domain",
            "other.org",
            "--out",
            s(&dir.join("out2")),
            "--id",
            "spiffe://other.org/api",
            "--ca-dir",
            s(&ca_dir),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot be used for other.org"), "{stderr}");
}
