"""Calls helloworld.Greeter/SayHello with Python's grpcio over mutual TLS.

    python3 grpcio_client.py TARGET SERVER_NAME BUNDLE CERT KEY NAME

TARGET is host:port; SERVER_NAME is the DNS name the server's certificate must
carry (grpcio checks it, through grpc.ssl_target_name_override). The messages
are encoded here by hand (field 1, a string), so only grpcio is needed: no
generated stubs, no protobuf runtime.

Prints "OK <message>" and exits 0, or "STATUS <CODE> <details>" and exits 1.
"""

import sys

import grpc


def encode_string_field(value: str) -> bytes:
    data = value.encode("utf-8")
    length = len(data)
    varint = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            break
    return b"\x0a" + bytes(varint) + data


def decode_string_field(message: bytes) -> str:
    if not message:
        return ""
    if message[0] != 0x0A:
        raise ValueError("unexpected field in reply: %r" % message[:1])
    length, shift, i = 0, 0, 1
    while True:
        byte = message[i]
        length |= (byte & 0x7F) << shift
        shift += 7
        i += 1
        if not byte & 0x80:
            break
    return message[i : i + length].decode("utf-8")


def main() -> int:
    target, server_name, bundle, cert, key, name = sys.argv[1:7]
    with open(bundle, "rb") as f:
        roots = f.read()
    with open(cert, "rb") as f:
        chain = f.read()
    with open(key, "rb") as f:
        private_key = f.read()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=private_key, certificate_chain=chain
    )
    options = [("grpc.ssl_target_name_override", server_name)]
    with grpc.secure_channel(target, credentials, options=options) as channel:
        say_hello = channel.unary_unary("/helloworld.Greeter/SayHello")
        try:
            reply = say_hello(encode_string_field(name), timeout=20)
        except grpc.RpcError as err:
            print("STATUS %s %s" % (err.code().name, err.details()))
            return 1
    print("OK %s" % decode_string_field(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
