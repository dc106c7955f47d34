//! A test PKI built with rcgen directly, independent of zt's own development CA,
//! so that zt's verifier (and `zt_core::dev::DevCa`) are checked against
//! certificates zt did not make.
//!
//! [`TestCa`] is a root CA of one trust domain, or an intermediate below one. It
//! issues leaves as a [`LeafSpec`] says: [`LeafSpec::valid`] is a valid X.509-SVID
//! (one URI SAN, `cA=false`, key usage `digitalSignature`, validity around now), and
//! [`LeafSpec::with`] applies exactly one [`Defect`], so a negative test says which
//! X.509-SVID rule it exercises. Everything comes out as DER ([`Credential::chain`],
//! [`TestCa::cert`]) or PEM ([`Credential::chain_pem`], [`TestCa::root_pem`]).
//!
//! Every CA gets a subject name no other test CA has, unless a test asks for a
//! name ([`TestCa::named`], [`TestCa::same_name_as`]): path building matches issuers
//! by name, and tests that share a name by accident test something else.
//!
//! ```
//! use zt_testkit::ca::{Defect, TestCa};
//!
//! let ca = TestCa::new("example.org");
//! let svid = ca.valid("spiffe://example.org/api");
//! assert_eq!(svid.chain.len(), 1);
//! assert!(svid.chain_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
//! let expired = ca.defective("spiffe://example.org/api", Defect::Expired);
//! assert_ne!(expired.leaf(), svid.leaf());
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, SanType,
};
pub use rcgen::{CustomExtension, ExtendedKeyUsagePurpose, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const HOUR: Duration = Duration::from_secs(3600);

/// The organisation every test certificate names.
const ORGANIZATION: &str = "zt tests";

/// A certificate chain (leaf first, without the root) and the leaf's private key, as
/// a TLS endpoint presents them.
#[derive(Debug)]
pub struct Credential {
    /// Leaf first, then the intermediates up to (not including) the root.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Credential {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Credential {
    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        self.chain.first().expect("a credential has a leaf")
    }

    /// The chain as PEM `CERTIFICATE` blocks, leaf first.
    pub fn chain_pem(&self) -> String {
        self.chain.iter().map(|c| pem("CERTIFICATE", c)).collect()
    }

    /// The key as a PEM `PRIVATE KEY` block.
    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", self.key.secret_der())
    }

    /// The key as PKCS#8 DER.
    pub fn key_der(&self) -> &[u8] {
        self.key.secret_der()
    }
}

/// One defect a leaf certificate can have. [`LeafSpec::with`] applies exactly one to
/// an otherwise valid leaf, so each rejection test isolates one X.509-SVID rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// Only a DNS SAN (`localhost`), no URI SAN.
    NoUriSan,
    /// Two URI SANs, both valid SPIFFE IDs of the leaf's trust domain.
    TwoUriSans,
    /// One URI SAN with the `https` scheme.
    NonSpiffeScheme,
    /// The trust domain's root ID (`spiffe://example.org`), no path.
    RootPath,
    /// Basic constraints `cA=true`.
    CaLeaf,
    /// Key usage `digitalSignature` + `keyCertSign`.
    KeyCertSign,
    /// Key usage `digitalSignature` + `cRLSign`.
    CrlSign,
    /// Key usage `keyEncipherment` only.
    NoDigitalSignature,
    /// No key usage extension at all.
    NoKeyUsage,
    /// Validity ended an hour ago.
    Expired,
    /// Validity starts in an hour.
    NotYetValid,
    /// Extended key usage `serverAuth` only.
    ServerAuthOnly,
    /// Extended key usage `clientAuth` only.
    ClientAuthOnly,
}

/// What to put in a leaf certificate. [`LeafSpec::valid`] is a valid X.509-SVID.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    /// URI SANs, in order.
    pub uris: Vec<String>,
    /// DNS SANs, in order.
    pub dns_names: Vec<String>,
    /// Basic constraints `cA`.
    pub is_ca: bool,
    /// Key usage; empty: no key usage extension.
    pub key_usages: Vec<KeyUsagePurpose>,
    /// Extended key usage; empty: no extended key usage extension.
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Further extensions, added as they are.
    pub custom_extensions: Vec<CustomExtension>,
}

impl LeafSpec {
    /// A valid SVID for `id`: one URI SAN, no DNS SAN, `cA=false`, key usage
    /// `digitalSignature`, EKU `serverAuth` + `clientAuth`, valid from a minute ago
    /// for an hour. `id` is put in as it is, so it may be anything a test wants to
    /// present.
    pub fn valid(id: &str) -> Self {
        let now = SystemTime::now();
        Self {
            uris: vec![id.to_owned()],
            dns_names: Vec::new(),
            is_ca: false,
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            extended_key_usages: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            not_before: now - Duration::from_secs(60),
            not_after: now + HOUR,
            custom_extensions: Vec::new(),
        }
    }

    /// This spec valid from `not_before` to `not_after` instead.
    #[must_use]
    pub fn valid_between(mut self, not_before: SystemTime, not_after: SystemTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// This spec with `defect` applied; everything else stays valid. The defects
    /// about the ID need the first URI SAN to be a SPIFFE ID.
    #[must_use]
    pub fn with(mut self, defect: Defect) -> Self {
        let now = SystemTime::now();
        match defect {
            Defect::NoUriSan => {
                self.uris.clear();
                self.dns_names = vec!["localhost".to_owned()];
            }
            Defect::TwoUriSans => {
                let (trust_domain, _) = self.first_id();
                let second = format!("spiffe://{trust_domain}/second");
                self.uris.push(second);
            }
            Defect::NonSpiffeScheme => {
                let (trust_domain, path) = self.first_id();
                self.uris = vec![format!("https://{trust_domain}{path}")];
            }
            Defect::RootPath => {
                let (trust_domain, _) = self.first_id();
                self.uris = vec![format!("spiffe://{trust_domain}")];
            }
            Defect::CaLeaf => self.is_ca = true,
            Defect::KeyCertSign => {
                self.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                ];
            }
            Defect::CrlSign => {
                self.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
            }
            Defect::NoDigitalSignature => self.key_usages = vec![KeyUsagePurpose::KeyEncipherment],
            Defect::NoKeyUsage => self.key_usages.clear(),
            Defect::Expired => {
                self.not_before = now - 2 * HOUR;
                self.not_after = now - HOUR;
            }
            Defect::NotYetValid => {
                self.not_before = now + HOUR;
                self.not_after = now + 2 * HOUR;
            }
            Defect::ServerAuthOnly => {
                self.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            Defect::ClientAuthOnly => {
                self.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        self
    }

    /// The trust domain and path of the first URI SAN, a SPIFFE ID.
    fn first_id(&self) -> (String, String) {
        let first = self.uris.first().expect("the spec has a URI SAN");
        let rest = first
            .strip_prefix("spiffe://")
            .unwrap_or_else(|| panic!("{first:?} is not a SPIFFE ID"));
        let (trust_domain, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        (trust_domain.to_owned(), path.to_owned())
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("leaf #{}", next_serial()));
        for uri in &self.uris {
            let uri = uri.clone().try_into().expect("URI SAN is IA5");
            params.subject_alt_names.push(SanType::URI(uri));
        }
        for dns in &self.dns_names {
            let dns = dns.clone().try_into().expect("DNS SAN is IA5");
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params.is_ca = if self.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages.clone_from(&self.key_usages);
        params
            .extended_key_usages
            .clone_from(&self.extended_key_usages);
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
        params.custom_extensions.clone_from(&self.custom_extensions);
        params.use_authority_key_identifier_extension = true;
        params
    }
}

/// Distinct numbers for certificate names, so no two test CAs share a subject by
/// accident.
fn next_serial() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A CA certificate's parameters: `cA=true`, key usage `keyCertSign` + `cRLSign`,
/// the trust domain's ID as URI SAN, valid from an hour ago for a day.
fn ca_params(trust_domain: &str, common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    let uri = format!("spiffe://{trust_domain}")
        .try_into()
        .expect("trust domain ID is IA5");
    params.subject_alt_names.push(SanType::URI(uri));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    params.not_before = (now - HOUR).into();
    params.not_after = (now + 24 * HOUR).into();
    params.use_authority_key_identifier_extension = true;
    params
}

fn generate_key() -> KeyPair {
    KeyPair::generate().expect("P-256 key generation")
}

fn pkcs8(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// A CA of one trust domain: a self-signed root, or an intermediate below one.
pub struct TestCa {
    trust_domain: String,
    params: CertificateParams,
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    /// The root this CA chains to (itself for a root).
    root: CertificateDer<'static>,
    /// Certificates that follow a leaf this CA issues: this CA and the intermediates
    /// above it, nearest first, never the root.
    chain_tail: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed root CA (P-256) for `trust_domain` (a name such as
    /// `example.org`), with a name no other test CA has.
    pub fn new(trust_domain: &str) -> Self {
        Self::named(
            trust_domain,
            &format!("root CA {trust_domain} #{}", next_serial()),
        )
    }

    /// A new self-signed root CA for `trust_domain` named `common_name`: two CAs
    /// made with the same name have the same subject.
    pub fn named(trust_domain: &str, common_name: &str) -> Self {
        Self::root_with(trust_domain, ca_params(trust_domain, common_name))
    }

    /// A different root CA (fresh key) with exactly the same subject name as `other`,
    /// as two independently deployed CAs with a default subject would have.
    pub fn same_name_as(other: &Self) -> Self {
        let mut params = ca_params(&other.trust_domain, "");
        params
            .distinguished_name
            .clone_from(&other.params.distinguished_name);
        Self::root_with(&other.trust_domain, params)
    }

    fn root_with(trust_domain: &str, params: CertificateParams) -> Self {
        let key = generate_key();
        let cert = params.self_signed(&key).expect("self-signing the root");
        let der = cert.der().clone();
        Self {
            trust_domain: trust_domain.to_owned(),
            issuer: Issuer::new(params.clone(), key),
            params,
            cert: der.clone(),
            root: der,
            chain_tail: Vec::new(),
        }
    }

    /// A valid intermediate CA signed by this one (`cA=true`, key usage `keyCertSign`
    /// + `cRLSign`).
    pub fn intermediate(&self) -> Self {
        let name = format!("intermediate CA {} #{}", self.trust_domain, next_serial());
        self.intermediate_named(&name)
    }

    /// A valid intermediate CA signed by this one, named `common_name`.
    pub fn intermediate_named(&self, common_name: &str) -> Self {
        let params = ca_params(&self.trust_domain, common_name);
        self.intermediate_with(params)
    }

    /// A valid intermediate CA signed by this one, valid from `not_before` to
    /// `not_after` (leaves it issues keep their own validity, which may outlast it).
    pub fn intermediate_valid_between(
        &self,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Self {
        let name = format!("intermediate CA {} #{}", self.trust_domain, next_serial());
        let mut params = ca_params(&self.trust_domain, &name);
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        self.intermediate_with(params)
    }

    /// An intermediate CA signed by this one whose key usage lacks `keyCertSign`
    /// (`cRLSign` only); otherwise exactly like [`TestCa::intermediate`].
    pub fn intermediate_without_key_cert_sign(&self) -> Self {
        let name = format!("intermediate CA {} #{}", self.trust_domain, next_serial());
        let mut params = ca_params(&self.trust_domain, &name);
        params.key_usages = vec![KeyUsagePurpose::CrlSign];
        self.intermediate_with(params)
    }

    fn intermediate_with(&self, params: CertificateParams) -> Self {
        let key = generate_key();
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing the intermediate");
        let mut chain_tail = vec![cert.der().clone()];
        chain_tail.extend(self.chain_tail.iter().cloned());
        Self {
            trust_domain: self.trust_domain.clone(),
            issuer: Issuer::new(params.clone(), key),
            params,
            cert: cert.der().clone(),
            root: self.root.clone(),
            chain_tail,
        }
    }

    /// Another certificate for this CA, same subject and key, valid from `not_before`
    /// to `not_after` (self-signed for a root, signed by nothing else): what a CA
    /// that renewed its certificate, or one that expired, presents.
    pub fn reissued(
        &self,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> CertificateDer<'static> {
        let mut params = self.params.clone();
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params
            .self_signed(self.issuer.key())
            .expect("self-signing the copy")
            .der()
            .clone()
    }

    /// The trust domain name.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// This CA's own certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The root certificate this CA chains to.
    pub fn root_cert(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The root certificate this CA chains to, as a PEM `CERTIFICATE` block: a
    /// bundle file of this trust domain.
    pub fn root_pem(&self) -> String {
        pem("CERTIFICATE", &self.root)
    }

    /// Issues a leaf as `spec` says, chained through this CA's intermediates.
    pub fn issue(&self, spec: &LeafSpec) -> Credential {
        let key = generate_key();
        let cert = spec
            .params()
            .signed_by(&key, &self.issuer)
            .expect("signing the leaf");
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain_tail.iter().cloned());
        Credential {
            chain,
            key: pkcs8(&key),
        }
    }

    /// A valid leaf credential for `id`.
    pub fn valid(&self, id: &str) -> Credential {
        self.issue(&LeafSpec::valid(id))
    }

    /// A valid leaf for `id` with `defect` applied.
    pub fn defective(&self, id: &str, defect: Defect) -> Credential {
        self.issue(&LeafSpec::valid(id).with(defect))
    }
}

/// A leaf as `spec` says, signed with its own key (not issued by any CA), with a
/// subject name of its own.
pub fn self_signed_leaf(spec: &LeafSpec) -> Credential {
    let key = generate_key();
    let cert = spec
        .params()
        .self_signed(&key)
        .expect("self-signing the leaf");
    Credential {
        chain: vec![cert.der().clone()],
        key: pkcs8(&key),
    }
}

/// `names.len()` self-signed CA certificates of `trust_domain`, one per name, all
/// with one key (generating a key each would dominate a test that needs thousands;
/// each is still a valid, distinct authority).
pub fn authorities(
    trust_domain: &str,
    names: impl IntoIterator<Item = String>,
) -> Vec<CertificateDer<'static>> {
    let key = generate_key();
    names
        .into_iter()
        .map(|name| {
            ca_params(trust_domain, &name)
                .self_signed(&key)
                .expect("self-signing an authority")
                .der()
                .clone()
        })
        .collect()
}

/// `der` as one PEM block labelled `label` (`CERTIFICATE`, `PRIVATE KEY`, …).
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// `true` when `needle` occurs anywhere in the DER of `cert`.
pub fn der_contains(cert: &CertificateDer<'_>, needle: &[u8]) -> bool {
    cert.as_ref().windows(needle.len()).any(|w| w == needle)
}
