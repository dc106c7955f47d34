//! PEM bundles: never panic, agree with `from_pem_or_json`, and what they accept
//! round-trips through PEM and the SPIFFE bundle format.
#![no_main]

#[allow(dead_code)]
#[path = "../../zt-core/tests/properties/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: &[u8]| checks::bundle_pem(input));
