//! Writes a small seed corpus for every fuzz target into `fuzz/corpus/<target>/`:
//! valid and near-valid SPIFFE IDs and patterns, a dev SVID as PEM and DER, edit lists
//! for the structure-aware verifier target, and bundles in both formats.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus`

#[allow(dead_code)]
#[path = "../../zt-core/tests/properties/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let fx = checks::fixture();

    let ids: &[&str] = &[
        "spiffe://example.org",
        "spiffe://example.org/ns/prod/sa/api",
        "spiffe://a.b-c_d.0/A/z/0/-/_/.../x.y",
        "spiffe://example.org/ns/*/sa/**",
        "spiffe://example.org/**",
        "spiffe://example.org/*",
        "spiffe://example.org/ns/../admin",
        "spiffe://example.org/a//b",
        "spiffe://example.org/a/",
        "spiffe://Example.org/a",
        "spiffe://user@example.org:443/a?q#f",
        "spiffe://example.org/a%2fb",
        "SPIFFE://example.org/a",
        "example.org",
        "spiffe:/example.org",
        "spiffe://example.org/ns/*/sa/**\nspiffe://example.org/ns/prod/sa/api",
        "spiffe://td/a/*\nspiffe://td/a/b",
        "spiffe://td/**\nspiffe://td",
        "spiffe://td/a\nspiffe://td/a/b",
    ];
    let dir = target_dir(&root, "spiffe_id")?;
    for (i, id) in ids.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), id)?;
    }
    let long_td = "t".repeat(255);
    let long_id = format!(
        "spiffe://{long_td}/{}",
        "a".repeat(2048 - 10 - long_td.len())
    );
    std::fs::write(dir.join("seed-max-len"), long_id)?;

    let dir = target_dir(&root, "svid_pem")?;
    std::fs::write(
        dir.join("seed-separate"),
        format!("{}\0{}", fx.chain_pem, fx.key_pem),
    )?;
    std::fs::write(
        dir.join("seed-combined"),
        format!("{}{}", fx.key_pem, fx.chain_pem),
    )?;
    std::fs::write(dir.join("seed-chain-only"), &fx.chain_pem)?;

    let dir = target_dir(&root, "svid_der_chain")?;
    let der = |certs: &[&[u8]]| certs.concat();
    let (leaf, intermediate, other) = (&fx.chain[0][..], &fx.chain[1][..], &fx.other_chain[0][..]);
    std::fs::write(
        dir.join("seed-leaf-int-root"),
        der(&[leaf, intermediate, &fx.root]),
    )?;
    std::fs::write(dir.join("seed-leaf-int"), der(&[leaf, intermediate]))?;
    std::fs::write(dir.join("seed-leaf"), leaf)?;
    std::fs::write(
        dir.join("seed-other-int-root"),
        der(&[other, intermediate, &fx.root]),
    )?;

    // Mode byte, then five-byte edits: op, certificate, position (LE), value.
    let dir = target_dir(&root, "verify_peer")?;
    let edits: &[&[u8]] = &[
        &[],
        &[1],
        &[2],
        &[6],
        &[0, 1, 0, 40, 0, 0xff],
        &[0, 11, 0, 23, 0, b'x'],
        &[0, 12, 0, 0, 0, 255, 12, 0, 255, 0, 255],
        &[0, 6, 1, 0, 0, 0],
        &[0, 7, 0, 0, 0, 0, 8, 0, 0, 0, 0],
        &[0, 9, 0, 0, 0, 0, 10, 1, 0, 0, 0],
        &[0, 4, 0, 200, 0, 0],
    ];
    for (i, input) in edits.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), input)?;
    }

    let dir = target_dir(&root, "bundle_json")?;
    std::fs::write(dir.join("seed-fixture"), &fx.bundle_json)?;
    std::fs::write(
        dir.join("seed-mixed"),
        serde_json::json!({
            "keys": [
                {"use": "jwt-svid", "kty": "EC", "kid": "k", "crv": "P-256", "x": "AA", "y": "AA"},
                {"use": "x509-svid", "kty": "oct", "x5c": ["AA=="]},
                serde_json::from_str::<serde_json::Value>(&fx.bundle_json).unwrap()["keys"][0],
            ],
            "spiffe_sequence": 42,
            "spiffe_refresh_hint": 300,
        })
        .to_string(),
    )?;
    std::fs::write(dir.join("seed-empty"), r#"{"keys": []}"#)?;

    let dir = target_dir(&root, "bundle_pem")?;
    std::fs::write(dir.join("seed-fixture"), &fx.bundle_pem)?;
    let two = format!(
        "# comment\n{}\n{}",
        fx.bundle_pem,
        checks::pem("CERTIFICATE", &fx.chain[1])
    );
    std::fs::write(dir.join("seed-two"), two)?;
    println!("seed corpus written to {}", root.display());
    Ok(())
}

fn target_dir(root: &Path, target: &str) -> std::io::Result<PathBuf> {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
