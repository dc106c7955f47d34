//! Thin helpers over x509-parser shared by the SVID and bundle code.

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// `Some(true)` when basic constraints say `cA=true`, `Some(false)` when they say
/// `cA=false` or are absent; `Err` when the extension is malformed or duplicated.
pub(crate) fn is_ca(cert: &X509Certificate<'_>) -> Result<bool, String> {
    cert.basic_constraints()
        .map(|bc| bc.is_some_and(|bc| bc.value.ca))
        .map_err(|e| e.to_string())
}

/// The serial number in upper-case hexadecimal without leading zero bytes (`00`
/// for zero), as OpenSSL prints it.
pub(crate) fn serial_hex(cert: &X509Certificate<'_>) -> String {
    use std::fmt::Write;

    let raw = cert.raw_serial();
    let significant = match raw.iter().position(|&b| b != 0) {
        Some(first) => raw.get(first..).unwrap_or_default(),
        None => &[0],
    };
    significant.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02X}");
        hex
    })
}

/// Seconds since the Unix epoch of the certificate's `notAfter`.
pub(crate) fn not_after_unix(cert: &X509Certificate<'_>) -> i64 {
    cert.validity().not_after.timestamp()
}

/// Seconds since the Unix epoch of the certificate's `notBefore`.
pub(crate) fn not_before_unix(cert: &X509Certificate<'_>) -> i64 {
    cert.validity().not_before.timestamp()
}
