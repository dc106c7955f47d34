//! SPIFFE IDs, trust domains and ID patterns: every entry point agrees, valid IDs
//! round-trip, patterns made from an ID match it, and a line `pattern\nid` is matched
//! as a naive reference matcher says.
#![no_main]

#[allow(dead_code)]
#[path = "../../zt-core/tests/properties/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: &str| {
    checks::spiffe_id(input);
    if let Some((pattern, id)) = input.split_once('\n') {
        checks::spiffe_id(pattern);
        checks::spiffe_id(id);
        checks::pattern_against_id(pattern, id);
    }
});
