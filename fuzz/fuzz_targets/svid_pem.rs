//! X.509-SVID PEM: `from_pem` (chain, NUL, key) and `from_combined_pem` never panic,
//! agree with each other, and what they accept round-trips.
#![no_main]

#[allow(dead_code)]
#[path = "../../zt-core/tests/properties/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: &[u8]| checks::svid_pem(input));
