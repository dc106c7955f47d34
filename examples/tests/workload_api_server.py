"""A SPIFFE Workload API server in Python's grpcio, for tests: an implementation
independent of zt and of tonic, generated with grpcio-tools from the same
testkit/proto/workload.proto at start.

    python3 workload_api_server.py SOCKET_PATH

Serves FetchX509SVID on the Unix socket SOCKET_PATH and prints "listening" once it
accepts calls. Each line on standard input is the full state to stream from then
on, as JSON:

    {"svids": [{"spiffe_id": "...", "x509_svid": B64, "x509_svid_key": B64,
                "bundle": B64, "hint": "..."}],
     "federated_bundles": {"spiffe://partner.org": B64}}

B64 is standard base64 of DER. Every open stream gets the new state; a call that
lacks the `workload.spiffe.io: true` metadata is refused with INVALID_ARGUMENT, as
the Workload Endpoint spec asks. Prints "applied N" after the N-th state is sent
to the open streams.
"""

import base64
import json
import os
import sys
import tempfile
import threading
from concurrent import futures

import grpc

import grpc_stubs

PROTO = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "testkit",
    "proto",
    "workload.proto",
)


class State:
    """The current response and a condition that wakes every open stream."""

    def __init__(self):
        self.condition = threading.Condition()
        self.version = 0
        self.response = None
        self.closing = False

    def set(self, response):
        with self.condition:
            self.response = response
            self.version += 1
            self.condition.notify_all()

    def close(self):
        with self.condition:
            self.closing = True
            self.condition.notify_all()


def to_response(messages, document):
    response = messages.X509SVIDResponse()
    for svid in document.get("svids", []):
        response.svids.add(
            spiffe_id=svid["spiffe_id"],
            x509_svid=base64.b64decode(svid["x509_svid"]),
            x509_svid_key=base64.b64decode(svid["x509_svid_key"]),
            bundle=base64.b64decode(svid["bundle"]),
            hint=svid.get("hint", ""),
        )
    for name, der in document.get("federated_bundles", {}).items():
        response.federated_bundles[name] = base64.b64decode(der)
    return response


def servicer_class(services):
    class Servicer(services.SpiffeWorkloadAPIServicer):
        def __init__(self, state):
            self.state = state

        def FetchX509SVID(self, request, context):
            metadata = dict(context.invocation_metadata())
            if metadata.get("workload.spiffe.io") != "true":
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "security header missing from request",
                )
            seen = 0
            while context.is_active():
                with self.state.condition:
                    self.state.condition.wait_for(
                        lambda: self.state.closing
                        or (self.state.version != seen and self.state.response is not None),
                        timeout=0.5,
                    )
                    if self.state.closing:
                        return
                    if self.state.version == seen or self.state.response is None:
                        continue
                    seen = self.state.version
                    response = self.state.response
                yield response

    return Servicer


def main():
    socket_path = sys.argv[1]
    with tempfile.TemporaryDirectory() as out_dir:
        messages, services = grpc_stubs.generate(PROTO, out_dir)
        state = State()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        services.add_SpiffeWorkloadAPIServicer_to_server(
            servicer_class(services)(state), server
        )
        server.add_insecure_port("unix:" + socket_path)
        server.start()
        print("listening", flush=True)
        applied = 0
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            state.set(to_response(messages, json.loads(line)))
            applied += 1
            print("applied %d" % applied, flush=True)
        state.close()
        server.stop(grace=1)


if __name__ == "__main__":
    main()
