//! A zt client refuses a bad server: one X.509-SVID defect, or one chain defect,
//! per test.

use super::*;

#[tokio::test]
async fn server_without_uri_san_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::NoUriSan);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::NoUriSan);
}

#[tokio::test]
async fn server_with_two_uri_sans_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::TwoUriSans);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::MultipleUriSans(2));
}

#[tokio::test]
async fn server_with_non_spiffe_uri_san_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::NonSpiffeScheme);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(
        svid_error(&err),
        SvidError::InvalidSpiffeId(IdError::WrongScheme)
    );
}

#[tokio::test]
async fn server_with_root_spiffe_id_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::RootPath);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(
        svid_error(&err),
        SvidError::RootId(id("spiffe://example.org"))
    );
}

#[tokio::test]
async fn server_with_ca_leaf_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::CaLeaf);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::LeafIsCa);
}

#[tokio::test]
async fn server_leaf_with_key_cert_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::KeyCertSign);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::LeafKeyCertSign);
}

#[tokio::test]
async fn server_leaf_with_crl_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::CrlSign);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::LeafCrlSign);
}

#[tokio::test]
async fn server_leaf_without_digital_signature_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::NoDigitalSignature);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::NoDigitalSignature);
}

#[tokio::test]
async fn server_leaf_without_key_usage_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::NoKeyUsage);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::MissingKeyUsage);
}

#[tokio::test]
async fn server_with_expired_svid_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::Expired);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_certificate_error(&err, &CertificateError::Expired);
}

#[tokio::test]
async fn server_with_not_yet_valid_svid_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::NotYetValid);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_certificate_error(&err, &CertificateError::NotValidYet);
}

#[tokio::test]
async fn server_signed_by_unknown_ca_of_same_trust_domain_is_rejected() {
    let ca = TestCa::new(TD);
    let unknown = TestCa::new(TD);
    let server = unknown.valid(SERVER_ID);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn server_signed_by_unknown_ca_named_like_the_trusted_ca_is_rejected() {
    let ca = TestCa::new(TD);
    let impostor = TestCa::same_name_as(&ca);
    let server = impostor.valid(SERVER_ID);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn server_claiming_trust_domain_other_than_its_signers_is_rejected() {
    let ca = TestCa::new(TD);
    let partner = TestCa::new(PARTNER_TD);
    let server = ca.valid("spiffe://partner.org/server");
    let bundles = BundleSet::new().with(ca.bundle()).with(partner.bundle());
    let err = zt_client_refusal(&ca, bundles, &server).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn server_from_federated_ca_claiming_our_trust_domain_is_rejected() {
    let ca = TestCa::new(TD);
    let partner = TestCa::new(PARTNER_TD);
    let server = partner.valid(SERVER_ID);
    let bundles = BundleSet::new().with(ca.bundle()).with(partner.bundle());
    let err = zt_client_refusal(&ca, bundles, &server).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn server_with_self_signed_leaf_is_rejected() {
    let ca = TestCa::new(TD);
    let server = self_signed_leaf(&LeafSpec::valid(SERVER_ID));
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn server_with_client_only_eku_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::ClientAuthOnly);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(rejection(&err), Rejection::WrongUsage);
}

#[tokio::test]
async fn server_with_server_only_eku_is_accepted() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::ServerAuthOnly);
    let seen = zt_client_acceptance(&ca, ca.bundle_set(), &server).await;
    assert_eq!(&seen, server.leaf());
}

#[tokio::test]
async fn server_chain_through_intermediate_without_key_cert_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.intermediate_without_key_cert_sign().valid(SERVER_ID);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(
        svid_error(&err),
        SvidError::IntermediateNoKeyCertSign { index: 1 }
    );
}

#[tokio::test]
async fn server_chain_through_valid_intermediate_is_accepted() {
    let ca = TestCa::new(TD);
    let server = ca.intermediate().valid(SERVER_ID);
    let seen = zt_client_acceptance(&ca, ca.bundle_set(), &server).await;
    assert_eq!(&seen, server.leaf());
}

#[tokio::test]
async fn server_chain_through_dev_ca_intermediate_is_accepted() {
    let root = DevCa::new(td(TD)).expect("dev CA");
    let intermediate = root.intermediate().expect("dev intermediate");
    let bundles = || BundleSet::new().with(root.bundle());
    let server_svid = intermediate.mint(&id(SERVER_ID)).expect("mint");
    let server_identity = publisher(server_svid.clone(), bundles());
    let client_identity = publisher(root.mint(&id(CLIENT_ID)).expect("mint"), bundles());
    let mut server = TestServer::zt(&server_identity.identity()).await;

    let stream = connect_and_echo(
        server.addr,
        zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID))),
    )
    .await
    .expect("server with an intermediate in its chain is accepted");

    assert_eq!(
        stream.get_ref().1.peer_certificates(),
        Some(server_svid.chain())
    );
    server.expect_accepted().await;
}

#[tokio::test]
async fn zt_client_refuses_a_server_presenting_a_mesh_of_same_named_authorities() {
    let ca = TestCa::new(TD);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &mesh_credential(&ca, SERVER_ID)).await;
    assert!(
        matches!(svid_error(&err), SvidError::UnlinkedChain { .. }),
        "{err:?}"
    );
}
