//! Test support for zt's own test suites:
//!
//! - [`ca`]: a test PKI built on rcgen directly (root CA per trust domain,
//!   intermediates, X.509-SVIDs and deliberately defective ones), independent of
//!   `zt_core::dev`, so zt is tested against certificates it did not make;
//! - [`TempDir`]: a scratch directory removed on drop;
//! - [`policy`]: generated policy documents of any size;
//! - [`jwt`]: JWT-SVIDs and JWT bundles minted by PyJWT, independent of zt;
//! - the gRPC services the tests run, generated from their `.proto` files with
//!   tonic's codegen (see `build.rs`), and a SPIFFE Workload API endpoint built on
//!   the generated server ([`workload`]).
//!
//! This crate depends on no zt crate, so every zt crate can use it in its tests;
//! tests convert its DER and PEM into zt types where they use them.

#![allow(clippy::expect_used, clippy::panic)]

/// `helloworld.Greeter` (`examples/proto/helloworld.proto`): messages, client and
/// server, as `tonic-prost-build` generates them.
pub mod greeter {
    #![allow(
        missing_docs,
        unreachable_pub,
        missing_debug_implementations,
        clippy::all,
        clippy::pedantic
    )]
    tonic::include_proto!("helloworld");
}

/// The SPIFFE Workload API (`proto/workload.proto`): messages, client and server,
/// as `tonic-prost-build` generates them.
pub mod workload_proto {
    #![allow(
        missing_docs,
        unreachable_pub,
        missing_debug_implementations,
        clippy::all,
        clippy::pedantic
    )]
    tonic::include_proto!("_");
}

pub mod ca;
pub mod jwt;
pub mod policy;
mod tempdir;
pub mod workload;

pub use tempdir::TempDir;
