#!/usr/bin/env python3
"""The events API's OpenAPI document against openapi-spec-validator and against the service.

Starts protected_service (`--demo-tokens`: a generated key, tokens with scope `events:read`)
twice — with the default HTTP bearer JWT scheme, and with `OAUTH2_OPENAPI_TOKEN_URL` (an OAuth
2.0 client-credentials scheme) — and for each document checks that:

- openapi-spec-validator accepts it (OpenAPI 3.1);
- every operation the document secures is refused without a token (401), and every operation
  it leaves open is answered without one;
- every secured operation lists exactly the scopes the service enforces: with a token holding
  `events:read`, an operation whose requirement that token satisfies is not refused 403, and
  one it does not satisfy is refused 403 with those very scopes in the challenge's `scope`;
- an OAuth 2.0 scheme declares each required scope in its flow, at the configured token URL.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interop_common import api, check, free_port, http, stop, summary  # noqa: E402

from openapi_spec_validator import validate  # noqa: E402

TOKEN_SCOPES = {"events:read"}


def start(binary: str, tmp: Path, env_extra: dict) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    tokens = tmp / f"tokens-{port}.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OAUTH2_")}
    env.update({"BIND": f"127.0.0.1:{port}", **env_extra})
    log = open(tmp / f"service-{port}.log", "wb")
    proc = subprocess.Popen([binary, "--demo-tokens", "1", str(tokens)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if api(base, "GET", "/public").status == 200 and tokens.exists():
            return proc, base, tokens.read_text().split()[0]
        time.sleep(0.1)
    stop(proc)
    raise SystemExit(f"protected_service did not start on {base}")


def call(base: str, method: str, path: str, token: str | None):
    path = path.replace("{id}", "1")
    body = {"title": "openapi check"} if method == "POST" else None
    return api(base, method, path, token, body)


def check_document(name: str, base: str, token: str, token_url: str | None) -> None:
    reply = http("GET", base + "/openapi.json")
    doc = reply.json()
    if not check(f"{name}: GET /openapi.json -> 200 JSON", reply.status == 200
                 and isinstance(doc, dict), reply.evidence()):
        return
    try:
        validate(doc)
        check(f"{name}: openapi-spec-validator accepts the document (OpenAPI {doc.get('openapi')})",
              True)
    except Exception as e:  # noqa: BLE001 - any validation error is the failure
        check(f"{name}: openapi-spec-validator accepts the document", False, repr(e))

    # The validator is live: the same document with a scheme of an unknown type is refused.
    broken = json.loads(json.dumps(doc))
    for scheme in broken.get("components", {}).get("securitySchemes", {}).values():
        scheme["type"] = "no-such-type"
    try:
        validate(broken)
        refused = False
    except Exception:  # noqa: BLE001
        refused = True
    check(f"{name}: openapi-spec-validator refuses the document with a broken scheme (control)",
          refused)

    schemes = doc.get("components", {}).get("securitySchemes", {})
    secured = 0
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            method = method.upper()
            requirements = operation.get("security")
            anonymous = call(base, method, path, None)
            if not requirements:
                check(f"{name}: {method} {path} is open in the document and answers without a "
                      "token", anonymous.status < 400, anonymous.evidence())
                continue
            secured += 1
            check(f"{name}: {method} {path} is secured in the document and refused without a "
                  "token (401)", anonymous.status == 401, anonymous.evidence())
            alternatives = [set(scopes) for req in requirements for scopes in req.values()]
            names = {n for req in requirements for n in req}
            check(f"{name}: {method} {path} names a declared scheme ({sorted(names)})",
                  names <= set(schemes), json.dumps(requirements))
            satisfied = any(alt <= TOKEN_SCOPES for alt in alternatives)
            reply = call(base, method, path, token)
            if satisfied:
                check(f"{name}: {method} {path} lists {alternatives}: a token with "
                      f"{sorted(TOKEN_SCOPES)} is let through", reply.status not in (401, 403),
                      reply.evidence())
            else:
                challenge = reply.www_authenticate
                enforced = set()
                if 'scope="' in challenge:
                    enforced = set(challenge.split('scope="', 1)[1].split('"', 1)[0].split())
                check(f"{name}: {method} {path} lists {alternatives}: a token with "
                      f"{sorted(TOKEN_SCOPES)} gets 403 naming exactly those scopes",
                      reply.status == 403 and len(alternatives) == 1
                      and enforced == alternatives[0], reply.evidence())
    check(f"{name}: the document secures the three protected routes (/me, /events/{{id}}, "
          "POST /events)", secured == 3, f"{secured} secured")
    if token_url is not None:
        (scheme,) = schemes.values() if len(schemes) == 1 else (None,)
        flow = (scheme or {}).get("flows", {}).get("clientCredentials", {})
        required = {s for item in doc["paths"].values() for op in item.values()
                    for req in op.get("security") or [] for ss in req.values() for s in ss}
        check(f"{name}: the OAuth 2.0 scheme's client-credentials flow is at {token_url} and "
              f"declares {sorted(required)}",
              flow.get("tokenUrl") == token_url and required <= set(flow.get("scopes", {})),
              json.dumps(schemes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="the protected_service example binary")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openapi-check-") as tmp:
        for name, extra, token_url in (
            ("bearer JWT", {}, None),
            ("OAuth 2.0", {"OAUTH2_OPENAPI_TOKEN_URL": "https://idp.example/token"},
             "https://idp.example/token"),
        ):
            proc, base, token = start(args.binary, Path(tmp), extra)
            try:
                check_document(name, base, token, token_url)
            finally:
                stop(proc)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
