//! X.509-SVID DER chains cut from the input by their DER headers: parsing and
//! verification (against the real bundle, and against the input's last certificate as
//! the authority) never panic and agree on what they accept.
#![no_main]

#[allow(dead_code)]
#[path = "../../zt-core/tests/properties/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: &[u8]| checks::svid_der_chain(input));
