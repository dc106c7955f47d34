//! The `FetchX509SVID` call of the SPIFFE Workload API, on the wire.
//!
//! The `spiffe` crate's `X509Context` merges an update's per-SVID bundles and its
//! `federated_bundles` into one set, and lets a federated entry for the workload's
//! own trust domain replace the workload's own bundle. zt must tell the two apart
//! to refuse such an entry (as the file source does), so it reads the update as
//! sent. The crate still provides the connection (`spiffe::transport::connect`);
//! only the messages of `workload.proto` zt needs are declared here, the JWT calls'
//! among them (feature `jwt`).

use std::collections::HashMap;

use rustls_pki_types::CertificateDer;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

/// `message X509SVIDRequest {}`
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct X509SvidRequest {}

/// `message X509SVIDResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct X509SvidResponse {
    /// `repeated X509SVID svids = 1;`
    #[prost(message, repeated, tag = "1")]
    pub(super) svids: Vec<X509SvidEntry>,
    /// `repeated bytes crl = 2;`
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub(super) crl: Vec<Vec<u8>>,
    /// `map<string, bytes> federated_bundles = 3;`: trust domain (as a SPIFFE ID)
    /// to its authorities' DER, concatenated.
    #[prost(map = "string, bytes", tag = "3")]
    pub(super) federated_bundles: HashMap<String, Vec<u8>>,
}

/// `message X509SVID`
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct X509SvidEntry {
    /// `string spiffe_id = 1;`
    #[prost(string, tag = "1")]
    pub(super) spiffe_id: String,
    /// `bytes x509_svid = 2;`: the chain's DER, leaf first, concatenated.
    #[prost(bytes = "vec", tag = "2")]
    pub(super) x509_svid: Vec<u8>,
    /// `bytes x509_svid_key = 3;`: the PKCS#8 DER private key.
    #[prost(bytes = "vec", tag = "3")]
    pub(super) x509_svid_key: Vec<u8>,
    /// `bytes bundle = 4;`: the own trust domain's authorities' DER, concatenated.
    #[prost(bytes = "vec", tag = "4")]
    pub(super) bundle: Vec<u8>,
    /// `string hint = 5;`
    #[prost(string, tag = "5")]
    pub(super) hint: String,
}

/// The gRPC path of `SpiffeWorkloadAPI.FetchX509SVID`.
const FETCH_X509_SVID: &str = "/SpiffeWorkloadAPI/FetchX509SVID";

/// Opens the `FetchX509SVID` stream on `channel`, with the metadata every
/// Workload API call carries (SPIFFE Workload Endpoint §5: `workload.spiffe.io:
/// true`).
pub(super) async fn fetch_x509_svid(
    channel: Channel,
) -> Result<Streaming<X509SvidResponse>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|err| Status::unavailable(format!("Workload API not ready: {err}")))?;
    let request = workload_request(X509SvidRequest {});
    let codec = tonic_prost::ProstCodec::<X509SvidRequest, X509SvidResponse>::default();
    let response = grpc
        .server_streaming(request, PathAndQuery::from_static(FETCH_X509_SVID), codec)
        .await?;
    Ok(response.into_inner())
}

/// `message JWTSVIDRequest`
#[cfg(feature = "jwt")]
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct JwtSvidRequest {
    /// `repeated string audience = 1;`
    #[prost(string, repeated, tag = "1")]
    pub(super) audience: Vec<String>,
    /// `string spiffe_id = 2;`: only this ID's token; empty for all.
    #[prost(string, tag = "2")]
    pub(super) spiffe_id: String,
}

/// `message JWTSVIDResponse`
#[cfg(feature = "jwt")]
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct JwtSvidResponse {
    /// `repeated JWTSVID svids = 1;`
    #[prost(message, repeated, tag = "1")]
    pub(super) svids: Vec<JwtSvidEntry>,
}

/// `message JWTSVID`
#[cfg(feature = "jwt")]
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct JwtSvidEntry {
    /// `string spiffe_id = 1;`
    #[prost(string, tag = "1")]
    pub(super) spiffe_id: String,
    /// `string svid = 2;`: the token.
    #[prost(string, tag = "2")]
    pub(super) svid: String,
    /// `string hint = 3;`
    #[prost(string, tag = "3")]
    pub(super) hint: String,
}

/// `message JWTBundlesRequest {}`
#[cfg(feature = "jwt")]
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct JwtBundlesRequest {}

/// `message JWTBundlesResponse`
#[cfg(feature = "jwt")]
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct JwtBundlesResponse {
    /// `map<string, bytes> bundles = 1;`: trust domain (as a SPIFFE ID) to its
    /// bundle document (a JWK Set).
    #[prost(map = "string, bytes", tag = "1")]
    pub(super) bundles: HashMap<String, Vec<u8>>,
}

/// A Workload API request with the security metadata every call carries.
fn workload_request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    request
}

/// Calls `FetchJWTSVID` for `audience` on `channel`.
#[cfg(feature = "jwt")]
pub(super) async fn fetch_jwt_svid(
    channel: Channel,
    audience: &str,
) -> Result<JwtSvidResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|err| Status::unavailable(format!("Workload API not ready: {err}")))?;
    let request = workload_request(JwtSvidRequest {
        audience: vec![audience.to_owned()],
        spiffe_id: String::new(),
    });
    let codec = tonic_prost::ProstCodec::<JwtSvidRequest, JwtSvidResponse>::default();
    let response = grpc
        .unary(
            request,
            PathAndQuery::from_static("/SpiffeWorkloadAPI/FetchJWTSVID"),
            codec,
        )
        .await?;
    Ok(response.into_inner())
}

/// Opens the `FetchJWTBundles` stream on `channel`.
#[cfg(feature = "jwt")]
pub(super) async fn fetch_jwt_bundles(
    channel: Channel,
) -> Result<Streaming<JwtBundlesResponse>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|err| Status::unavailable(format!("Workload API not ready: {err}")))?;
    let request = workload_request(JwtBundlesRequest {});
    let codec = tonic_prost::ProstCodec::<JwtBundlesRequest, JwtBundlesResponse>::default();
    let response = grpc
        .server_streaming(
            request,
            PathAndQuery::from_static("/SpiffeWorkloadAPI/FetchJWTBundles"),
            codec,
        )
        .await?;
    Ok(response.into_inner())
}

/// Splits concatenated DER certificates (how the Workload API carries chains and
/// bundles) into one `CertificateDer` each.
pub(super) fn split_der(mut der: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    while !der.is_empty() {
        let (rest, _) = x509_parser::parse_x509_certificate(der)
            .map_err(|err| format!("certificate {} is not DER X.509: {err}", certs.len()))?;
        let used = der.len().saturating_sub(rest.len());
        let (cert, tail) = der.split_at(used);
        certs.push(CertificateDer::from(cert.to_vec()));
        der = tail;
    }
    Ok(certs)
}
