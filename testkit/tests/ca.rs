#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The test CA makes what it says, read back with x509-parser (not with zt, which
//! the certificates exist to test): each defect changes exactly its field.

use std::time::{Duration, SystemTime};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use zt_testkit::ca::{Defect, LeafSpec, TestCa, self_signed_leaf};

const ID: &str = "spiffe://example.org/api";

/// What a leaf says, in the terms of the X.509-SVID rules.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    uris: Vec<String>,
    dns_names: Vec<String>,
    is_ca: bool,
    digital_signature: bool,
    key_cert_sign: bool,
    crl_sign: bool,
    has_key_usage: bool,
    server_auth: bool,
    client_auth: bool,
    valid_now: bool,
}

fn shape(der: &[u8]) -> Shape {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let (mut uris, mut dns_names) = (Vec::new(), Vec::new());
    if let Some(san) = cert.subject_alternative_name().unwrap() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                _ => {}
            }
        }
    }
    let key_usage = cert.key_usage().unwrap().map(|ku| *ku.value);
    let eku = cert
        .extended_key_usage()
        .unwrap()
        .map(|eku| eku.value.clone());
    Shape {
        uris,
        dns_names,
        is_ca: cert.is_ca(),
        digital_signature: key_usage.as_ref().is_some_and(|ku| ku.digital_signature()),
        key_cert_sign: key_usage.as_ref().is_some_and(|ku| ku.key_cert_sign()),
        crl_sign: key_usage.as_ref().is_some_and(|ku| ku.crl_sign()),
        has_key_usage: key_usage.is_some(),
        server_auth: eku.as_ref().is_some_and(|eku| eku.server_auth),
        client_auth: eku.as_ref().is_some_and(|eku| eku.client_auth),
        valid_now: cert.validity().is_valid(),
    }
}

fn valid_shape() -> Shape {
    Shape {
        uris: vec![ID.to_owned()],
        dns_names: Vec::new(),
        is_ca: false,
        digital_signature: true,
        key_cert_sign: false,
        crl_sign: false,
        has_key_usage: true,
        server_auth: true,
        client_auth: true,
        valid_now: true,
    }
}

#[test]
fn valid_leaf_is_an_x509_svid_chained_to_its_root() {
    let ca = TestCa::new("example.org");
    let credential = ca.valid(ID);
    assert_eq!(shape(credential.leaf()), valid_shape());
    assert_eq!(credential.chain.len(), 1, "the root is not sent");
    let (_, leaf) = X509Certificate::from_der(credential.leaf()).unwrap();
    let (_, root) = X509Certificate::from_der(ca.root_cert()).unwrap();
    assert_eq!(leaf.issuer(), root.subject());
}

/// How a defect changes a valid leaf's shape.
type Change = fn(&mut Shape);

#[test]
fn each_defect_changes_exactly_its_field() {
    let ca = TestCa::new("example.org");
    let cases: [(Defect, Change); 13] = [
        (Defect::NoUriSan, |s| {
            s.uris.clear();
            s.dns_names = vec!["localhost".to_owned()];
        }),
        (Defect::TwoUriSans, |s| {
            s.uris.push("spiffe://example.org/second".to_owned());
        }),
        (Defect::NonSpiffeScheme, |s| {
            s.uris = vec!["https://example.org/api".to_owned()];
        }),
        (Defect::RootPath, |s| {
            s.uris = vec!["spiffe://example.org".to_owned()];
        }),
        (Defect::CaLeaf, |s| s.is_ca = true),
        (Defect::KeyCertSign, |s| s.key_cert_sign = true),
        (Defect::CrlSign, |s| s.crl_sign = true),
        (Defect::NoDigitalSignature, |s| s.digital_signature = false),
        (Defect::NoKeyUsage, |s| {
            s.digital_signature = false;
            s.has_key_usage = false;
        }),
        (Defect::Expired, |s| s.valid_now = false),
        (Defect::NotYetValid, |s| s.valid_now = false),
        (Defect::ServerAuthOnly, |s| s.client_auth = false),
        (Defect::ClientAuthOnly, |s| s.server_auth = false),
    ];
    for (defect, change) in cases {
        let mut expected = valid_shape();
        change(&mut expected);
        assert_eq!(
            shape(ca.defective(ID, defect).leaf()),
            expected,
            "{defect:?}"
        );
    }
}

#[test]
fn intermediate_chain_is_leaf_then_intermediates_without_the_root() {
    let root = TestCa::new("example.org");
    let first = root.intermediate();
    let second = first.intermediate();
    let credential = second.valid(ID);
    assert_eq!(credential.chain.len(), 3);
    assert_eq!(&credential.chain[1], second.cert());
    assert_eq!(&credential.chain[2], first.cert());
    assert_eq!(second.root_cert(), root.cert());
    let (_, weak) = X509Certificate::from_der(root.intermediate_without_key_cert_sign().cert())
        .map(|(rest, cert)| (rest, shape_of_ca(&cert)))
        .unwrap();
    assert_eq!(weak, (true, false, true));
}

/// `(cA, keyCertSign, cRLSign)` of a CA certificate.
fn shape_of_ca(cert: &X509Certificate<'_>) -> (bool, bool, bool) {
    let ku = *cert.key_usage().unwrap().unwrap().value;
    (cert.is_ca(), ku.key_cert_sign(), ku.crl_sign())
}

#[test]
fn same_name_and_named_cas_share_the_subject_and_new_ones_do_not() {
    let ca = TestCa::new("example.org");
    let subject = |der: &[u8]| {
        X509Certificate::from_der(der)
            .unwrap()
            .1
            .subject()
            .to_string()
    };
    assert_eq!(
        subject(TestCa::same_name_as(&ca).cert()),
        subject(ca.cert())
    );
    assert_ne!(
        subject(TestCa::new("example.org").cert()),
        subject(ca.cert())
    );
    assert_eq!(
        subject(TestCa::named("example.org", "shared").cert()),
        subject(TestCa::named("example.org", "shared").cert())
    );
}

#[test]
fn reissued_ca_keeps_name_and_key_with_the_chosen_validity() {
    let ca = TestCa::new("example.org");
    let hour = Duration::from_secs(3600);
    let now = SystemTime::now();
    let copy = ca.reissued(now - 2 * hour, now - hour);
    let (_, copy) = X509Certificate::from_der(&copy).unwrap();
    let (_, original) = X509Certificate::from_der(ca.cert()).unwrap();
    assert_eq!(copy.subject(), original.subject());
    assert_eq!(copy.public_key(), original.public_key());
    assert!(!copy.validity().is_valid());
}

#[test]
fn pem_output_round_trips_to_the_der() {
    let credential = self_signed_leaf(&LeafSpec::valid(ID));
    let chain_pem = credential.chain_pem();
    let blocks: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(chain_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].label, "CERTIFICATE");
    assert_eq!(blocks[0].contents, credential.leaf().as_ref());
    let (_, key) = x509_parser::pem::parse_x509_pem(credential.key_pem().as_bytes()).unwrap();
    assert_eq!(key.label, "PRIVATE KEY");
    assert_eq!(key.contents, credential.key_der());
}
