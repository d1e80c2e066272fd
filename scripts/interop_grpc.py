#!/usr/bin/env python3
"""Interop check: PyPI grpcio calling examples/grpc_service (tonic behind tower-oauth2's layer).

Run by scripts/interop_grpc.sh. Generates an ES256 key and its JWKS, starts the service with
them, builds the Python stubs from the example's proto with grpcio-tools, mints tokens with
PyJWT, and calls both methods (unary `Get`, server-streaming `Watch`) with a valid token,
without one, with an expired one, with a tampered one and with one lacking the scope (and
Watch, whose handler also demands events:watch, with a token that has only events:read): each
must get the right gRPC status code and message, and the RFC 6750 challenge as metadata.
Prints `ok  - ...` / `FAIL - ...` per check and `N passed, M failed`; exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interop_common import Tally, check, free_port, stop, summary  # noqa: E402

import grpc  # noqa: E402
import jwt  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from grpc_tools import protoc  # noqa: E402
from jwt.algorithms import ECAlgorithm  # noqa: E402

ISSUER = "https://issuer.grpc.test"
AUDIENCE = "events-api"
KID = "grpc-es256"


def stubs(proto: Path, out: Path):
    """The generated `events_pb2` and `events_pb2_grpc` modules."""
    code = protoc.main([
        "grpc_tools.protoc",
        f"-I{proto.parent}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(proto),
    ])
    if code != 0:
        raise RuntimeError(f"grpc_tools.protoc exited with {code}")
    sys.path.insert(0, str(out))
    return importlib.import_module("events_pb2"), importlib.import_module("events_pb2_grpc")


def mint(key, scope: str, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "grpc-user", "aud": AUDIENCE, "iat": now,
              "exp": now + 300, "scope": scope}
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": KID})


def metadata(token: str | None):
    return None if token is None else [("authorization", f"Bearer {token}")]


def refused(call, code, message: str, name: str) -> None:
    """Runs `call`, which must fail with `code`, a message containing `message`, and the
    `www-authenticate` challenge in its trailing metadata."""
    try:
        result = call()
        # A streaming call fails when it is read.
        if hasattr(result, "__iter__") and not isinstance(result, (str, bytes)):
            list(result)
        check(name, False, f"it succeeded: {result!r}")
    except grpc.RpcError as error:
        trailing = dict(error.trailing_metadata() or ())
        challenge = trailing.get("www-authenticate", "")
        ok = error.code() == code and message in (error.details() or "") and "Bearer" in challenge
        check(name, ok, f"code {error.code()}, details {error.details()!r}, challenge {challenge!r}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--proto", required=True)
    args = parser.parse_args()

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": KID, "alg": "ES256", "use": "sig"})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
        pb2, pb2_grpc = stubs(Path(args.proto), tmp)
        port = free_port()
        env = dict(os.environ, BIND=f"127.0.0.1:{port}", OAUTH2_ISSUER=ISSUER,
                   OAUTH2_AUDIENCE=AUDIENCE, OAUTH2_JWKS_FILE=str(tmp / "jwks.json"))
        service = subprocess.Popen([args.binary], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(channel).result(timeout=30)
            events = pb2_grpc.EventsStub(channel)
            print(f"# grpcio {grpc.__version__} against the example on 127.0.0.1:{port}")

            good = mint(key, "events:read events:watch")
            reply = events.Get(pb2.GetRequest(id=7), metadata=metadata(good), timeout=10)
            check("unary Get with a valid token: the event, seen by the token's subject",
                  reply.id == 7 and reply.seen_by == "grpc-user", repr(reply))
            stream = list(events.Watch(pb2.WatchRequest(from_id=10, count=3),
                                       metadata=metadata(good), timeout=10))
            check("streaming Watch with a valid token: three events",
                  [e.id for e in stream] == [10, 11, 12]
                  and all(e.seen_by == "grpc-user" for e in stream), repr(stream))

            unauth = grpc.StatusCode.UNAUTHENTICATED
            denied = grpc.StatusCode.PERMISSION_DENIED
            for method, call in [
                ("Get", lambda md: events.Get(pb2.GetRequest(id=1), metadata=md, timeout=10)),
                ("Watch", lambda md: events.Watch(pb2.WatchRequest(from_id=1, count=2),
                                                  metadata=md, timeout=10)),
            ]:
                refused(lambda: call(None), unauth, "a bearer token is required",
                        f"{method} without a token: UNAUTHENTICATED")
                expired = mint(key, "events:read", exp=int(time.time()) - 600)
                refused(lambda: call(metadata(expired)), unauth, "expired",
                        f"{method} with an expired token: UNAUTHENTICATED, the reason in the message")
                head, _, sig = good.rpartition(".")
                tampered = f"{head}.{sig[:-4]}AAAA"
                refused(lambda: call(metadata(tampered)), unauth, "signature",
                        f"{method} with a tampered signature: UNAUTHENTICATED")
                other = mint(key, "profile")
                refused(lambda: call(metadata(other)), denied, "requires scope events:read",
                        f"{method} with a token lacking the scope: PERMISSION_DENIED")
            # Watch needs `events:watch` as well, checked in its handler with
            # tower_oauth2::grpc::require_scope (feature `tonic`).
            reader = mint(key, "events:read")
            reply = events.Get(pb2.GetRequest(id=3), metadata=metadata(reader), timeout=10)
            check("unary Get with only events:read: the event", reply.id == 3, repr(reply))
            refused(lambda: events.Watch(pb2.WatchRequest(from_id=1, count=2),
                                         metadata=metadata(reader), timeout=10),
                    denied, "requires scope events:watch",
                    "Watch with only events:read: PERMISSION_DENIED from the handler's "
                    "grpc::require_scope, challenge in the trailers")
            channel.close()
        except Exception:  # noqa: BLE001 - report and fail
            check("no unexpected error", False, traceback.format_exc())
        finally:
            stop(service)
            output = service.stdout.read() if service.stdout else ""
            if output and Tally.failed:
                print("# the service's output:")
                for line in output.splitlines()[-20:]:
                    print(f"#   {line}")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
