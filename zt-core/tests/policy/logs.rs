//! Text from files never forges logs: errors escape and do not echo values.

use super::*;

#[test]
fn unknown_field_with_a_newline_is_escaped_in_the_error() {
    let text = "{\"rules\": [{\"name\": \"r\", \"action\": \"allow\", \"from\": {\"any\": true}, \
                \"x\\n2026-12-04T00:00:00Z INFO zt::authz: request allowed\": 1}]}";
    let err = Policy::parse(text, Format::Json).unwrap_err().to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(
        err.contains("\\n2026-12-04"),
        "the field name is shown escaped: {err}"
    );
}

#[test]
fn string_values_of_a_wrong_file_do_not_appear_in_the_error() {
    let text = r#"{"rules": "AKIA-secret-do-not-log"}"#;
    let err = Policy::parse(text, Format::Json).unwrap_err().to_string();
    assert!(!err.contains("AKIA"), "{err}");
    assert!(err.contains("a string of 22 bytes"), "{err}");
    #[cfg(feature = "policy-yaml")]
    {
        let err = Policy::parse("rules: AKIA-secret-do-not-log\n", Format::Yaml)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("AKIA"), "{err}");
    }
}
