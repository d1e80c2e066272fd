#!/usr/bin/env python3
"""Interop check: examples/protected_service against tokens minted by PyJWT.

Generates RSA 2048, EC P-256 and Ed25519 keys with `cryptography`, writes their public halves
as a JWKS, starts the example on a free loopback port with that JWKS, and checks its four routes
(/public, /me, POST /events, GET /events/{id}) with tokens signed by PyJWT, plus forged,
expired, misaddressed and tampered ones. HTTP goes through the standard library only.

Run through scripts/interop_pyjwt.sh, which sets up the venv and builds the binary; or directly:
    python scripts/interop_pyjwt.py --binary target/debug/examples/protected_service

Prints one `ok  - ...` / `FAIL - ...` line per check and ends with `N passed, M failed`;
exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interop_common import (  # noqa: E402
    Reply,
    Tally,
    api,
    b64url,
    check,
    free_port,
    stop,
    summary,
)

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://pyjwt.test"
AUDIENCE = "events-api"
STARTUP_TIMEOUT = 30.0

class Signer:
    def __init__(self, alg: str, kid: str, private_key, to_jwk):
        self.alg = alg
        self.kid = kid
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.to_jwk = to_jwk

    def jwk(self) -> dict:
        jwk = self.to_jwk(self.public_key, as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": self.alg})
        return jwk

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def make_signers() -> list[Signer]:
    return [
        Signer("RS256", "py-rsa", rsa.generate_private_key(65537, 2048), RSAAlgorithm.to_jwk),
        Signer("ES256", "py-ec", ec.generate_private_key(ec.SECP256R1()), ECAlgorithm.to_jwk),
        Signer("EdDSA", "py-ed", ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm.to_jwk),
    ]


def claims_for(alg: str, scope: str, **overrides) -> dict:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": f"user-{alg.lower()}",
        "client_id": f"client-{alg.lower()}",
        "scope": scope,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return claims


def mint(signer: Signer, claims: dict, *, key=None, kid: str | None = None) -> str:
    return jwt.encode(
        claims,
        key if key is not None else signer.private_key,
        algorithm=signer.alg,
        headers={"kid": kid or signer.kid, "typ": "at+jwt"},
    )


def hs256_by_hand(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def tamper_payload(token: str) -> str:
    header, payload, signature = token.split(".")
    i = len(payload) // 2
    replacement = "A" if payload[i] != "A" else "B"
    return ".".join([header, payload[:i] + replacement + payload[i + 1 :], signature])


def tamper_claim(token: str, old: str, new: str) -> str:
    """Changes `old` to `new` inside the decoded payload; the JSON stays valid, the signature old."""
    header, payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert raw.count(old.encode()) == 1, (raw, old)
    return ".".join([header, b64url(raw.replace(old.encode(), new.encode())), signature])


def jwt_header(token: str) -> dict:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


# --- the server ------------------------------------------------------------------------------


def server_env(jwks_file: Path, port: int, issuer: str | None = ISSUER) -> dict:
    env = dict(os.environ)
    for name in ("OAUTH2_ISSUER", "OAUTH2_AUDIENCE", "OAUTH2_JWKS_FILE", "BIND"):
        env.pop(name, None)
    env.update(
        {
            "BIND": f"127.0.0.1:{port}",
            "OAUTH2_AUDIENCE": AUDIENCE,
            "OAUTH2_JWKS_FILE": str(jwks_file),
        }
    )
    if issuer is not None:
        env["OAUTH2_ISSUER"] = issuer
    return env


def check_missing_issuer(binary: str, jwks_file: Path) -> None:
    env = server_env(jwks_file, free_port(), issuer=None)
    name = "without OAUTH2_ISSUER the binary exits with code 2 naming OAUTH2_ISSUER on stderr"
    try:
        proc = subprocess.run(
            [binary], env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=15
        )
    except subprocess.TimeoutExpired as e:
        check(name, False, f"still running after 15 s; stderr: {e.stderr!r}")
        return
    stderr = proc.stderr.decode("utf-8", "replace")
    check(
        name,
        proc.returncode == 2 and "OAUTH2_ISSUER" in stderr,
        f"exit code: {proc.returncode}\nstderr: {stderr!r}\nstdout: {proc.stdout!r}",
    )


def wait_until_up(proc: subprocess.Popen, base: str, log: Path) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            check(
                f"server starts and answers /public (it exited early with code {code})",
                False,
                "server output:\n" + log.read_text(errors="replace"),
            )
            return False
        reply = api(base, "GET", "/public")
        if reply.status == 200:
            return True
        last = reply
        time.sleep(0.1)
    check(
        f"server answers /public within {STARTUP_TIMEOUT:.0f} s",
        False,
        (last.evidence() if last else "")
        + "\nserver output:\n"
        + log.read_text(errors="replace"),
    )
    return False


# --- the checks ------------------------------------------------------------------------------


def check_demo(binary: str) -> None:
    """The README's first command: `--demo` prints curl lines whose tokens work as described."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OAUTH2_")}
    env["BIND"] = "127.0.0.1:0"
    proc = subprocess.Popen([binary, "--demo"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "# a tampered token" in line:
                lines.append(proc.stdout.readline())
                break
        text = "".join(lines)
        address = re.search(r"listening on (http://\S+)", text)
        tokens = re.findall(r"Authorization: Bearer ([A-Za-z0-9_.-]+)'", text)
        if not check("--demo prints its address and five curl tokens",
                     address is not None and len(tokens) >= 5, text):
            return
        base, reader, writer, tampered = address.group(1), tokens[0], tokens[2], tokens[4]
        me = api(base, "GET", "/me", reader)
        check("--demo: the reader token gets 200 from /me", me.status == 200, me.evidence())
        denied = api(base, "POST", "/events", reader, {"title": "launch"})
        check("--demo: the reader token cannot POST /events (403)", denied.status == 403,
              denied.evidence())
        created = api(base, "POST", "/events", writer, {"title": "launch"})
        check("--demo: the writer token creates event 1 (201)",
              created.status == 201 and created.json().get("id") == 1, created.evidence())
        read = api(base, "GET", "/events/1", reader)
        check("--demo: the reader token reads event 1", read.status == 200, read.evidence())
        bad = api(base, "GET", "/me", tampered)
        check("--demo: the tampered token gets 401", bad.status == 401, bad.evidence())
    finally:
        stop(proc)


def expect_invalid_token(name: str, reply: Reply, description_has: str | None = None) -> None:
    challenge = reply.www_authenticate
    ok = (
        reply.status == 401
        and challenge.startswith("Bearer realm=")
        and 'error="invalid_token"' in challenge
    )
    if description_has is not None:
        ok = ok and description_has in challenge.lower()
    check(name, ok, reply.evidence())


def run_checks(base: str, signers: list[Signer]) -> None:
    reply = api(base, "GET", "/public")
    check("GET /public without token -> 200", reply.status == 200, reply.evidence())

    reply = api(base, "GET", "/me")
    challenge = reply.www_authenticate
    check(
        "GET /me without token -> 401, WWW-Authenticate `Bearer realm=...` without error=",
        reply.status == 401 and challenge.startswith("Bearer realm=") and "error=" not in challenge,
        reply.evidence(),
    )

    by_kid = {s.kid: s for s in signers}
    for signer in signers:
        alg = signer.alg
        read_claims = claims_for(alg, "events:read")
        reader = mint(signer, read_claims)
        writer = mint(signer, claims_for(alg, "events:read events:write"))
        profile = mint(signer, claims_for(alg, "profile"))

        reply = api(base, "GET", "/me", reader)
        body = reply.json()
        ok = (
            reply.status == 200
            and isinstance(body, dict)
            and body.get("sub") == read_claims["sub"]
            and body.get("client_id") == read_claims["client_id"]
            and isinstance(body.get("scopes"), list)
            and sorted(body["scopes"]) == sorted(read_claims["scope"].split())
        )
        check(f"{alg}: GET /me (events:read) -> 200 with minted sub, client_id, scopes", ok,
              reply.evidence())

        title = f"launch via {alg} {uuid.uuid4().hex[:8]}"
        reply = api(base, "POST", "/events", reader, {"title": title})
        challenge = reply.www_authenticate
        check(
            f"{alg}: POST /events with events:read only -> 403 insufficient_scope, "
            'scope="events:write"',
            reply.status == 403
            and 'error="insufficient_scope"' in challenge
            and 'scope="events:write"' in challenge,
            reply.evidence(),
        )

        reply = api(base, "POST", "/events", writer, {"title": title})
        body = reply.json()
        event_id = body.get("id") if isinstance(body, dict) else None
        check(
            f"{alg}: POST /events with events:read events:write -> 201 with an id",
            reply.status == 201 and isinstance(event_id, int),
            reply.evidence(),
        )
        if isinstance(event_id, int):
            reply = api(base, "GET", f"/events/{event_id}", reader)
            body = reply.json()
            check(
                f"{alg}: GET /events/{event_id} with events:read -> 200 with the same title",
                reply.status == 200 and isinstance(body, dict) and body.get("title") == title,
                reply.evidence(),
            )
            reply = api(base, "GET", f"/events/{event_id}", profile)
            check(
                f"{alg}: GET /events/{event_id} with scope profile only -> 403",
                reply.status == 403 and 'error="insufficient_scope"' in reply.www_authenticate,
                reply.evidence(),
            )
        else:
            check(f"{alg}: GET /events/{{id}} checks (no id was created)", False)

        # Negative: each must be refused as invalid_token.
        now = int(time.time())
        expired = mint(signer, claims_for(alg, "events:read", iat=now - 1200, exp=now - 600))
        expect_invalid_token(
            f"{alg}: token expired 10 minutes ago -> 401 invalid_token, description says expired",
            api(base, "GET", "/me", expired),
            description_has="expired",
        )
        wrong_aud = mint(signer, claims_for(alg, "events:read", aud="some-other-api"))
        expect_invalid_token(f"{alg}: wrong audience -> 401 invalid_token",
                             api(base, "GET", "/me", wrong_aud))
        wrong_iss = mint(signer, claims_for(alg, "events:read", iss="https://evil.test"))
        expect_invalid_token(f"{alg}: wrong issuer -> 401 invalid_token",
                             api(base, "GET", "/me", wrong_iss))
        expect_invalid_token(f"{alg}: tampered payload (one base64url char changed) -> 401 invalid_token",
                             api(base, "GET", "/me", tamper_payload(reader)))
        sub = read_claims["sub"]
        escalated = tamper_claim(reader, f'"{sub}"', f'"{sub[:-1]}X"')
        expect_invalid_token(
            f"{alg}: payload re-encoded with one char of sub changed (valid JSON) "
            "-> 401 invalid_token",
            api(base, "GET", "/me", escalated),
        )

        # A key of the same type that is not in the JWKS, claiming this signer's kid.
        foreign = make_foreign_key(signer)
        forged = mint(signer, claims_for(alg, "events:read"), key=foreign)
        expect_invalid_token(
            f"{alg}: signed by a key not in the JWKS but claiming kid {signer.kid} "
            "-> 401 invalid_token",
            api(base, "GET", "/me", forged),
        )

    # A valid signature under one key, but naming another key's kid (and so its algorithm).
    rsa_signer, ec_signer = by_kid["py-rsa"], by_kid["py-ec"]
    mixed = mint(rsa_signer, claims_for("RS256", "events:read"), kid=ec_signer.kid)
    expect_invalid_token("RS256 token naming kid py-ec -> 401 invalid_token",
                         api(base, "GET", "/me", mixed))

    # alg: none, as PyJWT makes it.
    unsigned = jwt.encode(claims_for("none", "events:read"), None, algorithm=None,
                          headers={"kid": "py-rsa", "typ": "at+jwt"})
    header = jwt_header(unsigned)
    if check('PyJWT algorithm=None makes an `alg: "none"` token with an empty signature',
             header.get("alg") == "none" and unsigned.endswith("."), f"token: {unsigned}"):
        expect_invalid_token('alg "none" token claiming kid py-rsa -> 401 invalid_token',
                             api(base, "GET", "/me", unsigned))

    # Key confusion: HS256 keyed with the public key's PEM, naming each asymmetric kid.
    for signer in signers:
        confused = hs256_by_hand(
            {"alg": "HS256", "kid": signer.kid, "typ": "at+jwt"},
            claims_for("HS256", "events:read events:write"),
            signer.public_pem(),
        )
        expect_invalid_token(
            f"HS256 signed with the {signer.kid} public key PEM as HMAC secret, kid "
            f"{signer.kid} -> 401 invalid_token",
            api(base, "GET", "/me", confused),
        )
        reply = api(base, "POST", "/events", confused, {"title": "confused"})
        check(
            f"the same HS256/{signer.kid} token cannot POST /events -> 401",
            reply.status == 401,
            reply.evidence(),
        )


def make_foreign_key(signer: Signer):
    if signer.alg == "RS256":
        return rsa.generate_private_key(65537, 2048)
    if signer.alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--binary",
        default=str(Path(__file__).resolve().parent.parent
                    / "target" / "debug" / "examples" / "protected_service"),
        help="the protected_service example binary",
    )
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())

    print(f"# PyJWT {jwt.__version__} against {binary}", flush=True)
    signers = make_signers()
    proc = None
    try:
        with tempfile.TemporaryDirectory(prefix="interop-pyjwt-") as tmp:
            jwks_file = Path(tmp) / "jwks.json"
            jwks_file.write_text(json.dumps({"keys": [s.jwk() for s in signers]}, indent=2))

            check_missing_issuer(binary, jwks_file)
            check_demo(binary)

            port = free_port()
            base = f"http://127.0.0.1:{port}"
            log = Path(tmp) / "server.log"
            with open(log, "wb") as log_file:
                proc = subprocess.Popen(
                    [binary],
                    env=server_env(jwks_file, port),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            try:
                if wait_until_up(proc, base, log):
                    print(f"# server up at {base}", flush=True)
                    run_checks(base, signers)
            finally:
                stop(proc)
                if Tally.failed:
                    print("# server output:", flush=True)
                    for line in log.read_text(errors="replace").splitlines()[-40:]:
                        print(f"#   {line}", flush=True)
    except Exception as e:  # a crash of this script counts as a failure, not a pass
        check(f"the interop script ran to the end ({type(e).__name__}: {e})", False,
              traceback.format_exc())
        if proc is not None:
            stop(proc)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
