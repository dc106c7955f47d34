"""Python gRPC stubs for the tests' Python peers, generated from a .proto file
with grpcio-tools at start, into a directory of the caller's, as a Python gRPC
user would generate them.

    import grpc_stubs
    messages, services = grpc_stubs.generate(PROTO_FILE, out_dir)
"""

import importlib
import os
import sys

import grpc_tools
from grpc_tools import protoc

# google/protobuf/*.proto, which grpcio-tools ships.
WELL_KNOWN = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")


def generate(proto_file: str, out_dir: str):
    """Generates NAME_pb2 and NAME_pb2_grpc of proto_file (NAME.proto) into out_dir
    and imports them; returns (messages, services)."""
    proto_dir, file_name = os.path.split(os.path.abspath(proto_file))
    name = os.path.splitext(file_name)[0]
    code = protoc.main(
        [
            "grpc_tools.protoc",
            "-I" + proto_dir,
            "-I" + WELL_KNOWN,
            "--python_out=" + out_dir,
            "--grpc_python_out=" + out_dir,
            os.path.join(proto_dir, file_name),
        ]
    )
    if code != 0:
        raise RuntimeError("grpc_tools.protoc failed with %d" % code)
    sys.path.insert(0, out_dir)
    return importlib.import_module(name + "_pb2"), importlib.import_module(
        name + "_pb2_grpc"
    )
