//! The `helloworld.Greeter` service of gRPC's examples, generated from
//! `proto/helloworld.proto` by `build.rs` with tonic's codegen:
//!
//! ```proto
//! service Greeter {
//!   rpc SayHello (HelloRequest) returns (HelloReply) {}
//!   rpc SayGoodbye (HelloRequest) returns (HelloReply) {}
//! }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! ```
//!
//! The zt parts of the greeter examples do not depend on how this code was made:
//! `zt_tonic::Incoming`, `AuthorizeLayer` and `zt_tonic::Connector` serve and call
//! any tonic service.
//!
//! ```
//! use zt_examples::greeter::HelloRequest;
//! use prost::Message;
//!
//! // What goes on the wire: field 1, length-delimited.
//! let bytes = HelloRequest { name: "Ada".to_owned() }.encode_to_vec();
//! assert_eq!(bytes, b"\x0a\x03Ada");
//! ```

#![allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]

tonic::include_proto!("helloworld");

pub use greeter_client::GreeterClient;
pub use greeter_server::{Greeter, GreeterServer};
