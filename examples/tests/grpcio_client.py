"""Calls helloworld.Greeter/SayHello with Python's grpcio over mutual TLS.

    python3 grpcio_client.py TARGET SERVER_NAME BUNDLE CERT KEY NAME

TARGET is host:port; SERVER_NAME is the DNS name the server's certificate must
carry (grpcio checks it, through grpc.ssl_target_name_override). The client
stubs are generated from examples/proto/helloworld.proto with grpcio-tools at
start, into a temporary directory, as a Python gRPC user would generate them.

Prints "OK <message>" and exits 0, or "STATUS <CODE> <details>" and exits 1.
"""

import os
import sys
import tempfile

import grpc

import grpc_stubs

PROTO = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "proto", "helloworld.proto"
)


def main() -> int:
    target, server_name, bundle, cert, key, name = sys.argv[1:7]
    with open(bundle, "rb") as f:
        roots = f.read()
    with open(cert, "rb") as f:
        chain = f.read()
    with open(key, "rb") as f:
        private_key = f.read()
    with tempfile.TemporaryDirectory() as out_dir:
        messages, services = grpc_stubs.generate(PROTO, out_dir)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=roots, private_key=private_key, certificate_chain=chain
        )
        options = [("grpc.ssl_target_name_override", server_name)]
        with grpc.secure_channel(target, credentials, options=options) as channel:
            stub = services.GreeterStub(channel)
            try:
                reply = stub.SayHello(messages.HelloRequest(name=name), timeout=20)
            except grpc.RpcError as err:
                print("STATUS %s %s" % (err.code().name, err.details()))
                return 1
    print("OK %s" % reply.message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
