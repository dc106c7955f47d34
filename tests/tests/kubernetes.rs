//! The Kubernetes manifests of `docs/k8s/`: docs/kubernetes.md shows each one as it
//! is, they validate against the Kubernetes API schemas (`kubernetes-validate
//! --strict`, a Python tool installed with pip like grpcio), the `ClusterSPIFFEID`
//! custom resource (whose schema that tool does not have) has the shape the SPIRE
//! controller manager reads, and every zt policy they carry loads with zt's parser.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use zt_core::{Format, Policy};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every manifest under docs/k8s, relative to the workspace root, sorted.
fn manifests() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read docs/k8s") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let relative = path.strip_prefix(root).expect("under the root");
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let root = root();
    let mut out = Vec::new();
    walk(&root.join("docs/k8s"), &root, &mut out);
    out.sort();
    assert!(out.len() >= 5, "manifests missing: {out:?}");
    out
}

/// The documents of a multi-document YAML file.
fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(path)).expect("read manifest");
    text.split("\n---\n")
        .map(|doc| {
            serde_saphyr::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{path}: not YAML: {e}"))
        })
        .collect()
}

#[test]
fn the_kubernetes_guide_shows_every_manifest_as_it_is() {
    let guide = std::fs::read_to_string(root().join("docs/kubernetes.md")).expect("guide");
    let mut shown = Vec::new();
    for (index, _) in guide.match_indices("<!-- file: ") {
        let rest = &guide[index + "<!-- file: ".len()..];
        let (path, rest) = rest
            .split_once(" -->\n```yaml\n")
            .expect("marker then a yaml block");
        let (block, _) = rest.split_once("```\n").expect("the block ends");
        let file = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| {
            panic!("docs/kubernetes.md shows {path}, which is unreadable: {e}")
        });
        assert_eq!(
            block, file,
            "docs/kubernetes.md shows {path} differently from the file"
        );
        shown.push(path.to_owned());
    }
    shown.sort();
    assert_eq!(shown, manifests(), "every manifest is shown exactly once");
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let probe = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .output();
    let installed = probe.as_ref().is_ok_and(|out| out.status.success());
    assert!(
        installed,
        "kubernetes-validate is not installed; scripts/test installs it \
         (pip install kubernetes-validate): {probe:?}"
    );
    let files = manifests();
    let output = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(&files)
        .current_dir(root())
        .output()
        .expect("run kubernetes-validate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{report}");
    for line in stdout.lines() {
        // Only custom resources may go unchecked here; the next test checks them.
        if line.starts_with("WARN") {
            assert!(
                line.contains("Couldn't find schema for kind ClusterSPIFFEID with api version spire.spiffe.io/v1alpha1"),
                "unexpected warning: {line}"
            );
        } else {
            assert!(
                line.starts_with("INFO") && line.contains(" passed "),
                "{line}"
            );
        }
    }
    let passed = stdout.lines().filter(|l| l.contains(" passed ")).count();
    let resources: usize = files.iter().map(|f| documents(f).len()).sum::<usize>();
    assert_eq!(
        passed + 1,
        resources,
        "every resource but the ClusterSPIFFEID passed: {report}"
    );
}

#[test]
fn the_cluster_spiffe_id_has_the_shape_the_controller_manager_reads() {
    let docs = documents("docs/k8s/spire/clusterspiffeid.yaml");
    let [doc] = docs.as_slice() else {
        panic!("one document expected");
    };
    assert_eq!(doc["apiVersion"], "spire.spiffe.io/v1alpha1");
    assert_eq!(doc["kind"], "ClusterSPIFFEID");
    assert!(doc["metadata"]["name"].is_string());
    let spec = doc["spec"].as_object().expect("spec");
    // The fields of the ClusterSPIFFEID spec this file uses, and no others.
    for key in spec.keys() {
        assert!(
            [
                "spiffeIDTemplate",
                "namespaceSelector",
                "podSelector",
                "federatesWith",
                "hint"
            ]
            .contains(&key.as_str()),
            "unknown ClusterSPIFFEID field {key}"
        );
    }
    let template = spec["spiffeIDTemplate"].as_str().expect("template");
    assert!(
        template.starts_with("spiffe://{{ .TrustDomain }}/"),
        "{template}"
    );
    assert_eq!(
        template,
        "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"
    );
    for selector in ["namespaceSelector", "podSelector"] {
        assert!(
            spec[selector]["matchLabels"].is_object(),
            "{selector} is a label selector"
        );
    }
    // The Deployment's pods carry the label the ClusterSPIFFEID selects.
    let billing = documents("docs/k8s/spire/billing.yaml");
    let deployment = billing
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("deployment");
    for (label, value) in spec["podSelector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"][label], *value,
            "the pods lack {label}"
        );
    }
}

#[test]
fn every_zt_policy_in_the_manifests_loads() {
    let mut policies = 0;
    for file in manifests() {
        for doc in documents(&file) {
            if doc["kind"] != "ConfigMap" {
                continue;
            }
            for (name, value) in doc["data"].as_object().expect("data") {
                let format = match name.rsplit_once('.').map(|(_, ext)| ext) {
                    Some("yaml" | "yml") => Format::Yaml,
                    Some("json") => Format::Json,
                    Some("toml") => Format::Toml,
                    _ => continue,
                };
                let text = value.as_str().expect("policy text");
                let policy =
                    Policy::parse(text, format).unwrap_or_else(|e| panic!("{file}: {name}: {e}"));
                assert!(policy.rule_count() > 0, "{file}: {name} has no rules");
                assert!(
                    policy.lint().is_empty(),
                    "{file}: {name}: {:?}",
                    policy.lint()
                );
                policies += 1;
            }
        }
    }
    assert!(policies >= 1, "no policy found");
}
