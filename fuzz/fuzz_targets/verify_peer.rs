//! Structure-aware: the input is a list of edits (byte flips, inserts, truncations,
//! certificate reorders and swaps, SPIFFE ID rewrites, splices from another leaf)
//! applied to a real dev SVID chain, which is then verified against the real bundle.
//! An accepted chain must carry a leaf the CA signed, with that leaf's ID.
#![no_main]

#[allow(dead_code)]
#[path = "../../zt-core/tests/properties/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: &[u8]| checks::verify_edited(input));
