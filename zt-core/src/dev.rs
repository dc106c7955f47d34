//! A development CA that mints X.509-SVIDs at run time. **Development only.**
//!
//! Its keys live in memory, its certificates follow the X509-SVID rules, and nothing
//! about it is fit for production: use SPIRE, cert-manager or another real issuer
//! there. Tests, examples and the quickstart use it so they need no files.
//!
//! ```
//! use zt_core::dev::DevCa;
//!
//! let ca = DevCa::new("example.org".parse()?)?;
//! let svid = ca.mint(&"spiffe://example.org/api".parse()?)?;
//! assert_eq!(svid.id().as_str(), "spiffe://example.org/api");
//! assert_eq!(ca.bundle().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!("the `dev` feature needs the `aws-lc-rs` or `ring` feature to generate keys");

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::bundle::{BundleSet, X509Bundle};
use crate::error::{Error, SvidError};
use crate::id::{SpiffeId, TrustDomain};
use crate::svid::X509Svid;

/// The default lifetime of a minted SVID.
pub const DEFAULT_SVID_TTL: Duration = Duration::from_secs(3600);

/// A CA of one trust domain that mints SVIDs. Development only.
pub struct DevCa {
    trust_domain: TrustDomain,
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    /// What follows a minted leaf in its chain: this CA and the intermediates above
    /// it, nearest first, without the root (which the bundle holds).
    chain_tail: Vec<CertificateDer<'static>>,
    bundle: X509Bundle,
}

/// Validity and names of an SVID to mint.
#[derive(Clone, Debug)]
pub struct SvidParams {
    /// The SPIFFE ID.
    pub id: SpiffeId,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Extra DNS SANs (allowed beside the URI SAN).
    pub dns_names: Vec<String>,
}

impl SvidParams {
    /// Valid from a minute ago for [`DEFAULT_SVID_TTL`].
    pub fn new(id: SpiffeId) -> Self {
        let now = SystemTime::now();
        Self {
            id,
            not_before: now - Duration::from_secs(60),
            not_after: now + DEFAULT_SVID_TTL,
            dns_names: Vec::new(),
        }
    }

    /// Sets the validity to end `ttl` from now.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.not_after = SystemTime::now() + ttl;
        self
    }
}

// === impl DevCa ===

impl DevCa {
    /// A new self-signed root CA for `trust_domain` with a fresh P-256 key, valid for
    /// a day. Its bundle holds this root.
    ///
    /// # Errors
    ///
    /// When key generation or signing fails.
    pub fn new(trust_domain: TrustDomain) -> Result<Self, Error> {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let params = ca_params(&trust_domain, "root", &key)?;
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        let der = cert.der().clone();
        let bundle = X509Bundle::new(trust_domain.clone(), vec![der.clone()])?;
        Ok(Self {
            trust_domain,
            issuer: Issuer::new(params, key),
            cert: der,
            chain_tail: Vec::new(),
            bundle,
        })
    }

    /// A root CA saved earlier with [`DevCa::cert_pem`] and [`DevCa::key_pem`], so
    /// that later runs of a development tool issue more SVIDs under the same
    /// bundle. **Development only**: a CA key on disk is a CA anyone who reads the
    /// file can use.
    ///
    /// # Errors
    ///
    /// When the PEM does not parse, the key is not the certificate's, the
    /// certificate is not this trust domain's dev root CA, or it has expired.
    pub fn from_pem(
        trust_domain: TrustDomain,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Self, Error> {
        use rustls_pki_types::pem::PemObject as _;
        let key = KeyPair::from_pem(key_pem).map_err(rcgen_error)?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| Error::Svid(SvidError::Pem(e.to_string())))?
            .into_owned();
        let params = ca_params(&trust_domain, "root", &key)?;
        let bundle = X509Bundle::new(trust_domain.clone(), vec![der.clone()])?;
        let ca = Self {
            trust_domain: trust_domain.clone(),
            issuer: Issuer::new(params, key),
            cert: der,
            chain_tail: Vec::new(),
            bundle,
        };
        // The key must be the certificate's and the names must chain: an SVID
        // minted now must verify against the saved certificate.
        let probe_id = SpiffeId::new(&format!("{}/zt-dev-ca-probe", trust_domain.id()))
            .map_err(|e| Error::Svid(SvidError::InvalidSpiffeId(e)))?;
        let probe = ca.mint(&probe_id)?;
        let provider = crate::default_provider()?;
        probe.verify(
            &BundleSet::new().with(ca.bundle()),
            &provider,
            SystemTime::now(),
        )?;
        Ok(ca)
    }

    /// This CA's private key, PKCS#8 PEM, for [`DevCa::from_pem`]. **Development
    /// only**: write it where only you can read it, and never near production.
    pub fn key_pem(&self) -> String {
        pem_block("PRIVATE KEY", &self.issuer.key().serialize_der())
    }

    /// An intermediate CA signed by this one; SVIDs it mints carry the intermediate
    /// in their chain and verify against this CA's bundle.
    ///
    /// # Errors
    ///
    /// When key generation or signing fails.
    pub fn intermediate(&self) -> Result<Self, Error> {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let params = ca_params(&self.trust_domain, "intermediate", &key)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        let mut chain_tail = vec![cert.der().clone()];
        chain_tail.extend(self.chain_tail.iter().cloned());
        Ok(Self {
            trust_domain: self.trust_domain.clone(),
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
            chain_tail,
            bundle: self.bundle.clone(),
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// This CA's certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// This CA's certificate, PEM.
    pub fn cert_pem(&self) -> String {
        pem_cert(&self.cert)
    }

    /// The bundle that vouches for SVIDs this CA mints.
    pub fn bundle(&self) -> X509Bundle {
        self.bundle.clone()
    }

    /// PEM of the bundle's authorities.
    pub fn bundle_pem(&self) -> String {
        self.bundle.authorities().iter().map(pem_cert).collect()
    }

    /// Mints an SVID for `id`, valid from a minute ago for [`DEFAULT_SVID_TTL`].
    ///
    /// # Errors
    ///
    /// When `id` is not in this CA's trust domain or has no path, or signing fails.
    pub fn mint(&self, id: &SpiffeId) -> Result<X509Svid, Error> {
        self.mint_with(SvidParams::new(id.clone()))
    }

    /// Mints an SVID with explicit parameters.
    ///
    /// # Errors
    ///
    /// As [`DevCa::mint`].
    pub fn mint_with(&self, params: SvidParams) -> Result<X509Svid, Error> {
        let (chain, key) = self.mint_der(params)?;
        Ok(X509Svid::from_der(chain, key)?)
    }

    /// Mints an SVID and returns `(chain PEM, PKCS#8 key PEM)`, as files hold them.
    ///
    /// # Errors
    ///
    /// As [`DevCa::mint`].
    pub fn mint_pem(&self, params: SvidParams) -> Result<(String, String), Error> {
        let (chain, key) = self.mint_der(params)?;
        let chain_pem = chain.iter().map(pem_cert).collect();
        let key_pem = match &key {
            PrivateKeyDer::Pkcs8(k) => pem_block("PRIVATE KEY", k.secret_pkcs8_der()),
            _ => String::new(),
        };
        Ok((chain_pem, key_pem))
    }

    fn mint_der(
        &self,
        params: SvidParams,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
        if params.id.trust_domain() != &self.trust_domain {
            return Err(Error::NoOwnBundle(params.id.trust_domain().clone()));
        }
        if params.id.is_root() {
            return Err(SvidError::RootId(params.id).into());
        }
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let mut cert_params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "zt development");
        cert_params.distinguished_name = dn;
        let uri = params
            .id
            .as_str()
            .to_owned()
            .try_into()
            .map_err(|e: rcgen::Error| rcgen_error(e))?;
        cert_params.subject_alt_names.push(SanType::URI(uri));
        for dns in params.dns_names {
            let name = dns.try_into().map_err(|e: rcgen::Error| rcgen_error(e))?;
            cert_params.subject_alt_names.push(SanType::DnsName(name));
        }
        cert_params.is_ca = IsCa::ExplicitNoCa;
        cert_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        cert_params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        cert_params.not_before = params.not_before.into();
        cert_params.not_after = params.not_after.into();
        cert_params.use_authority_key_identifier_extension = true;
        let cert = cert_params
            .signed_by(&key, &self.issuer)
            .map_err(rcgen_error)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain_tail.iter().cloned());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((chain, key))
    }
}

impl fmt::Debug for DevCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevCa")
            .field("trust_domain", &self.trust_domain.as_str())
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn ca_params(
    trust_domain: &TrustDomain,
    kind: &str,
    key: &KeyPair,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "zt development");
    // A name of its own per CA: RFC 5280 treats a certificate whose issuer and
    // subject names are equal as self-issued, and path building matches issuers
    // by name first.
    let tag: String = key
        .public_key_raw()
        .iter()
        .rev()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    dn.push(
        DnType::CommonName,
        format!("zt dev {kind} CA {trust_domain} {tag}"),
    );
    params.distinguished_name = dn;
    let uri = trust_domain
        .id()
        .as_str()
        .to_owned()
        .try_into()
        .map_err(|e: rcgen::Error| rcgen_error(e))?;
    params.subject_alt_names.push(SanType::URI(uri));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(24 * 3600)).into();
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn rcgen_error(err: rcgen::Error) -> Error {
    Error::Svid(SvidError::UnusableKey(format!("dev CA: {err}")))
}

fn pem_cert(der: &CertificateDer<'_>) -> String {
    pem_block("CERTIFICATE", der.as_ref())
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
