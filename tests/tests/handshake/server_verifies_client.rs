//! A zt server refuses a bad client: one X.509-SVID defect, or one chain defect,
//! per test.

use super::*;

#[tokio::test]
async fn client_without_certificate_is_rejected() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let attempt = connect_and_echo(server.addr, plain_client_config(None, ALL_VERSIONS)).await;
    assert!(
        attempt.is_err(),
        "a client without a certificate must not exchange bytes"
    );
    let err = server.expect_refused().await;
    assert_eq!(err, rustls::Error::NoCertificatesPresented);
}

#[tokio::test]
async fn client_without_uri_san_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::NoUriSan);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::NoUriSan);
}

#[tokio::test]
async fn client_with_two_uri_sans_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::TwoUriSans);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::MultipleUriSans(2));
}

#[tokio::test]
async fn client_with_non_spiffe_uri_san_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::NonSpiffeScheme);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(
        svid_error(&err),
        SvidError::InvalidSpiffeId(IdError::WrongScheme)
    );
}

#[tokio::test]
async fn client_with_root_spiffe_id_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::RootPath);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(
        svid_error(&err),
        SvidError::RootId(id("spiffe://example.org"))
    );
}

#[tokio::test]
async fn client_with_ca_leaf_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::CaLeaf);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::LeafIsCa);
}

#[tokio::test]
async fn client_leaf_with_key_cert_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::KeyCertSign);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::LeafKeyCertSign);
}

#[tokio::test]
async fn client_leaf_with_crl_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::CrlSign);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::LeafCrlSign);
}

#[tokio::test]
async fn client_leaf_without_digital_signature_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::NoDigitalSignature);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::NoDigitalSignature);
}

#[tokio::test]
async fn client_leaf_without_key_usage_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::NoKeyUsage);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::MissingKeyUsage);
}

#[tokio::test]
async fn client_with_expired_svid_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::Expired);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_certificate_error(&err, &CertificateError::Expired);
}

#[tokio::test]
async fn client_with_not_yet_valid_svid_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::NotYetValid);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_certificate_error(&err, &CertificateError::NotValidYet);
}

#[tokio::test]
async fn client_signed_by_unknown_ca_of_same_trust_domain_is_rejected() {
    let ca = TestCa::new(TD);
    let unknown = TestCa::new(TD);
    let client = unknown.valid(CLIENT_ID);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn client_signed_by_unknown_ca_named_like_the_trusted_ca_is_rejected() {
    // Path building finds the trusted root by name, then the leaf's signature does not
    // verify under the root's key; zt reports that as an unknown issuer.
    let ca = TestCa::new(TD);
    let impostor = TestCa::same_name_as(&ca);
    let client = impostor.valid(CLIENT_ID);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn client_claiming_trust_domain_other_than_its_signers_is_rejected() {
    // example.org's CA signs a partner.org ID; partner.org's bundle is trusted too, but
    // only partner.org's bundle may vouch for a partner.org ID.
    let ca = TestCa::new(TD);
    let partner = TestCa::new(PARTNER_TD);
    let client = ca.valid(PARTNER_CLIENT_ID);
    let bundles = BundleSet::new().with(ca.bundle()).with(partner.bundle());
    let err = zt_server_refusal(&ca, bundles, &client).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn client_from_federated_ca_claiming_our_trust_domain_is_rejected() {
    // partner.org's CA, trusted for partner.org, signs an example.org ID.
    let ca = TestCa::new(TD);
    let partner = TestCa::new(PARTNER_TD);
    let client = partner.valid(CLIENT_ID);
    let bundles = BundleSet::new().with(ca.bundle()).with(partner.bundle());
    let err = zt_server_refusal(&ca, bundles, &client).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn client_with_self_signed_leaf_is_rejected() {
    let ca = TestCa::new(TD);
    let client = self_signed_leaf(&LeafSpec::valid(CLIENT_ID));
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn client_with_server_only_eku_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::ServerAuthOnly);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(rejection(&err), Rejection::WrongUsage);
}

#[tokio::test]
async fn client_with_client_only_eku_is_accepted() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::ClientAuthOnly);
    let accepted = zt_server_acceptance(&ca, ca.bundle_set(), &client).await;
    assert_eq!(accepted.peer.expect("peer identity").id(), &id(CLIENT_ID));
}

#[tokio::test]
async fn client_chain_through_intermediate_without_key_cert_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.intermediate_without_key_cert_sign().valid(CLIENT_ID);
    assert_eq!(client.chain.len(), 2);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(
        svid_error(&err),
        SvidError::IntermediateNoKeyCertSign { index: 1 }
    );
}

#[tokio::test]
async fn client_chain_through_valid_intermediate_is_accepted() {
    // Control for the test above: the same construction with keyCertSign set.
    let ca = TestCa::new(TD);
    let client = ca.intermediate().valid(CLIENT_ID);
    let accepted = zt_server_acceptance(&ca, ca.bundle_set(), &client).await;
    assert_eq!(accepted.peer_chain, client.chain);
    assert_eq!(accepted.peer.expect("peer identity").id(), &id(CLIENT_ID));
}

#[tokio::test]
async fn client_chain_through_dev_ca_intermediate_is_accepted() {
    let root = DevCa::new(td(TD)).expect("dev CA");
    let intermediate = root.intermediate().expect("dev intermediate");
    let bundles = || BundleSet::new().with(root.bundle());
    let client_svid = intermediate.mint(&id(CLIENT_ID)).expect("mint");
    assert_eq!(client_svid.chain().len(), 2, "leaf and intermediate");
    let server_identity = publisher(root.mint(&id(SERVER_ID)).expect("mint"), bundles());
    let client_identity = publisher(client_svid.clone(), bundles());
    let mut server = TestServer::zt(&server_identity.identity()).await;

    connect_and_echo(
        server.addr,
        zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID))),
    )
    .await
    .expect("client with an intermediate in its chain is accepted");

    let accepted = server.expect_accepted().await;
    assert_eq!(accepted.peer_chain, client_svid.chain());
    assert_eq!(accepted.peer.expect("peer identity").id(), &id(CLIENT_ID));
}

#[tokio::test]
async fn zt_server_refuses_a_mesh_of_same_named_authorities_before_path_building() {
    let ca = TestCa::new(TD);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &mesh_credential(&ca, CLIENT_ID)).await;
    assert!(
        matches!(svid_error(&err), SvidError::UnlinkedChain { .. }),
        "{err:?}"
    );
}
