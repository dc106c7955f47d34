//! JWT-SVID tokens as a peer sends them: reading and validating never panic,
//! nothing validates without a signature by a trusted key, and no error repeats
//! the token.
#![no_main]

use std::sync::OnceLock;

use zt_core::jwt::{JwtBundle, JwtBundleSet, JwtBundles, JwtSvid, JwtValidator};

/// A validator trusting one P-256 key (RFC 7518 appendix C's public key), whose
/// private key the fuzzer does not have.
fn validator() -> &'static JwtValidator {
    static VALIDATOR: OnceLock<JwtValidator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let bundle = JwtBundle::from_spiffe_json(
            "example.org".parse().expect("trust domain"),
            br#"{"keys": [{"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256",
                "x": "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
                "y": "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps"}]}"#,
        )
        .expect("bundle");
        JwtValidator::new(JwtBundles::new(JwtBundleSet::new().with(bundle)), "fuzz")
            .expect("validator")
    })
}

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let Ok(token) = std::str::from_utf8(input) else {
        return;
    };
    if let Ok(svid) = JwtSvid::parse(token) {
        assert_eq!(svid.token(), token.trim());
    }
    match validator().validate(token) {
        Ok(peer) => panic!("an unsigned input validated as {peer:?}"),
        Err(err) => {
            let message = err.to_string();
            for part in token.split('.').filter(|part| part.len() > 64) {
                assert!(!message.contains(part), "the error repeats the token: {message}");
            }
        }
    }
});
