//! Test support for zt's own test suites: the gRPC services they run, generated
//! from their `.proto` files with tonic's codegen (see `build.rs`), and a SPIFFE
//! Workload API endpoint built on the generated server.
//!
//! This crate depends on no zt crate, so every zt crate can use it in its tests.

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

pub mod workload;
