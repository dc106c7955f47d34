//! Generates the greeter's gRPC code from `proto/helloworld.proto`, as a tonic
//! application does: `tonic-prost-build` writes the messages, the client and the
//! server trait into `OUT_DIR`, and `src/greeter.rs` includes them.
//!
//! The `.proto` is compiled by protox, a protobuf compiler written in Rust, so
//! building needs no `protoc` on the machine. With `protoc` installed, the usual
//! `tonic_prost_build::compile_protos("proto/helloworld.proto")` does the same.

use std::error::Error;

const PROTO: &str = "proto/helloworld.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
