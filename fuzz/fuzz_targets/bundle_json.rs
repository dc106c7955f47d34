//! SPIFFE bundle documents: never panic, agree with `from_pem_or_json`, and hold
//! exactly the entries the format selects.
#![no_main]

#[allow(dead_code)]
#[path = "../../zt-core/tests/properties/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: &[u8]| checks::bundle_json(input));
