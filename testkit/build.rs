//! Generates the gRPC code of the test services from their `.proto` files with
//! protox (a protobuf compiler written in Rust), so no `protoc` is needed.

use std::error::Error;

const PROTOS: [&str; 2] = ["../examples/proto/helloworld.proto", "proto/workload.proto"];
const INCLUDES: [&str; 2] = ["../examples/proto", "proto"];

fn main() -> Result<(), Box<dyn Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, INCLUDES)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
