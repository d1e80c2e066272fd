#!/usr/bin/env python3
"""Interop check: examples/protected_service against a real identity provider (oidc-provider 9).

Starts two instances of scripts/oidc-provider/server.mjs on free loopback ports (issuers
`http://127.0.0.1:PORT`, each with its own ES256 and RS256 keys), obtains JWT access tokens from
their token endpoints with the client_credentials grant, and starts the example configured ONLY
with OAUTH2_ISSUER, OAUTH2_AUDIENCE and BIND, so that it discovers the JWKS URL from the issuer's
`/.well-known/openid-configuration`. Then checks what the example answers. Standard library only.

Run through scripts/interop_oidc_provider.sh, which installs oidc-provider and builds the binary;
or directly, once both are there:
    python3 scripts/interop_oidc_provider.py --binary target/debug/examples/protected_service

Prints one `ok  - ...` / `FAIL - ...` line per check and ends with `N passed, M failed`;
exits 1 if any check failed. Every child process is stopped on the way out.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interop_common import (  # noqa: E402
    Reply,
    Tally,
    api,
    b64url,
    check,
    free_port,
    http,
    metric,
    stop,
    summary,
)

AUDIENCE = "events-api"
CLIENT_ID = "interop-events-client"
STARTUP_TIMEOUT = 15.0
STARTUP_ATTEMPTS = 3
ALGS = ("ES256", "RS256")

class SetupError(Exception):
    """Something the checks need could not be set up; already reported as a failed check."""


# --- tokens ----------------------------------------------------------------------------------


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def decode_part(token: str, index: int):
    try:
        return json.loads(b64url_decode(token.split(".")[index]))
    except (ValueError, IndexError):
        return None


def describe_token(token: str) -> str:
    return (
        f"token header: {json.dumps(decode_part(token, 0))}\n"
        f"token claims: {json.dumps(decode_part(token, 1))}"
    )


Reply.describe_token = staticmethod(describe_token)


def tamper_signature(token: str) -> str:
    """One character in the middle of the signature changed (every bit there is significant)."""
    header, payload, signature = token.split(".")
    i = len(signature) // 2
    replacement = "A" if signature[i] != "A" else "B"
    return ".".join([header, payload, signature[:i] + replacement + signature[i + 1 :]])


def tamper_sub(token: str, new_sub: str) -> str:
    """The payload re-encoded with another `sub` (still valid JSON); the signature unchanged."""
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["sub"] = new_sub
    return ".".join([header, b64url(json.dumps(claims, separators=(",", ":")).encode()), signature])


# --- processes -------------------------------------------------------------------------------

CHILDREN: list[subprocess.Popen] = []
LOGS: list[Path] = []


def spawn(argv: list[str], log: Path, env: dict | None = None, cwd: str | None = None):
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    CHILDREN.append(proc)
    LOGS.append(log)
    return proc


def stop_all() -> None:
    while CHILDREN:
        proc = CHILDREN.pop()
        try:
            stop(proc)
        except Exception:  # keep stopping the others
            pass


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops the children


def tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --- the identity provider -------------------------------------------------------------------


class IdP:
    def __init__(self, name: str, node: str, server: Path, secret: str, tmp: Path):
        self.name = name
        self.secret = secret
        self.log = tmp / f"provider-{name}.log"
        self.meta = None
        # A start normally takes well under a second; once in a few CI runs a Node.js 20 child
        # printed nothing past its first warning for 30 s. The peer's start-up is not what this
        # script tests, so a stuck start is retried (and said so) before it counts as a failure.
        for attempt in range(1, STARTUP_ATTEMPTS + 1):
            # `--name=value`: a generated secret may start with `-`, which node's parseArgs
            # would otherwise take for an option.
            self.proc = spawn([node, str(server), f"--client-id={CLIENT_ID}",
                               f"--client-secret={secret}"], self.log, cwd=str(server.parent))
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while time.monotonic() < deadline and self.meta is None:
                for line in self.log.read_text(errors="replace").splitlines():
                    if line.startswith("READY "):
                        self.meta = json.loads(line[len("READY "):])
                if self.meta is None:
                    if self.proc.poll() is not None:
                        break
                    time.sleep(0.05)
            if self.meta is not None or attempt == STARTUP_ATTEMPTS:
                break
            print(f"# provider {name}: no READY within {STARTUP_TIMEOUT:.0f} s "
                  f"(attempt {attempt}); restarting it. Its output:\n{tail(self.log, 5)}")
            stop(self.proc)
        if not check(f"provider {name} starts and prints its issuer", self.meta is not None,
                     f"exit code: {self.proc.poll()}\noutput:\n{tail(self.log)}"):
            raise SetupError
        self.issuer = self.meta["issuer"]

    def token(self, scope: str, alg: str | None) -> str:
        """client_credentials at the token endpoint; `alg` picks the resource (None: the default)."""
        form = {"grant_type": "client_credentials", "scope": scope}
        if alg is not None:
            form["resource"] = self.meta["resources"][alg]
        data = urllib.parse.urlencode(form).encode()
        # client_secret_basic: RFC 6749 §2.3.1 form-encodes id and secret before base64.
        credentials = f"{urllib.parse.quote_plus(CLIENT_ID)}:{urllib.parse.quote_plus(self.secret)}"
        reply = http(
            "POST", self.meta["token_endpoint"], data=data, sent=data.decode(),
            headers={"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
                     "Content-Type": "application/x-www-form-urlencoded"},
        )
        body = reply.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            check(f"provider {self.name}: token endpoint answers an access_token "
                  f"(scope {scope!r}, alg {alg})", False,
                  reply.evidence() + "\nprovider output:\n" + tail(self.log))
            raise SetupError
        return token


def check_issued(idp: IdP, token: str, alg: str, scope: str, what: str) -> bool:
    header, claims = decode_part(token, 0), decode_part(token, 1)
    ok = (
        isinstance(header, dict) and isinstance(claims, dict)
        and header.get("alg") == alg
        and header.get("typ") == "at+jwt"
        and header.get("kid") == idp.meta["kids"][alg]
        and claims.get("iss") == idp.issuer
        and claims.get("aud") == AUDIENCE
        and claims.get("client_id") == CLIENT_ID
        and sorted(str(claims.get("scope", "")).split()) == sorted(scope.split())
    )
    return check(f"provider {idp.name} issues {what}: {alg} at+jwt, aud {AUDIENCE}, "
                 f"scope {scope!r}", ok, describe_token(token))


# --- the protected service -------------------------------------------------------------------


def service_env(issuer: str, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OAUTH2_")}
    # Loopback only: a proxy from the environment must not see the discovery requests.
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY"):
        env.pop(name, None)
    env.update({"OAUTH2_ISSUER": issuer, "OAUTH2_AUDIENCE": AUDIENCE,
                "BIND": f"127.0.0.1:{port}", "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost"})
    return env


class Service:
    def __init__(self, name: str, binary: str, issuer: str, tmp: Path, extra: dict | None = None):
        self.name = name
        self.log = tmp / f"service-{name}.log"
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = service_env(issuer, port)
        env.update(extra or {})
        self.proc = spawn([binary], self.log, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                check(f"protected_service {name} (OAUTH2_ISSUER={issuer}, discovery) starts "
                      f"(it exited with code {code})", False, "output:\n" + tail(self.log))
                raise SetupError
            last = api(self.base, "GET", "/public")
            if last.status == 200:
                also = ", ".join(sorted(extra)) if extra else "only"
                check(f"protected_service {name} starts with OAUTH2_ISSUER={issuer}, "
                      f"OAUTH2_AUDIENCE, BIND ({also}) and answers /public", True)
                return
            time.sleep(0.1)
        check(f"protected_service {name} answers /public within {STARTUP_TIMEOUT:.0f} s", False,
              (last.evidence() if last else "") + "\noutput:\n" + tail(self.log))
        raise SetupError

    def get(self, path, token=None):
        return api(self.base, "GET", path, token)

    def post(self, path, token, body):
        return api(self.base, "POST", path, token, body)


def expect_invalid_token(name: str, reply: Reply) -> None:
    challenge = reply.www_authenticate
    check(name, reply.status == 401 and challenge.startswith("Bearer ")
          and 'error="invalid_token"' in challenge, reply.evidence())


def check_wrong_issuer_exits(binary: str, issuer: str) -> None:
    wrong = issuer + "/wrong"
    name = f"protected_service with OAUTH2_ISSUER={wrong} (discovery fails) exits with code 2"
    try:
        proc = subprocess.run([binary], env=service_env(wrong, free_port()),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired as e:
        check(name + " (it did not exit within 30 s)", False,
              f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}")
        return
    stderr = proc.stderr.decode("utf-8", "replace")
    check(name + ", saying it cannot load the signing keys",
          proc.returncode == 2 and "cannot load the signing keys" in stderr,
          f"exit code: {proc.returncode}\nstderr: {stderr!r}\nstdout: {proc.stdout!r}")


# --- the checks ------------------------------------------------------------------------------


def run_checks(binary: str, node: str, server: Path, tmp: Path) -> None:
    secret = secrets.token_urlsafe(24)
    a = IdP("A", node, server, secret, tmp)
    b = IdP("B", node, server, secret, tmp)  # same config, its own keys and port: another issuer
    check("providers A and B have different issuers and kids",
          a.issuer != b.issuer and set(a.meta["kids"].values()).isdisjoint(b.meta["kids"].values()),
          f"A: {a.meta}\nB: {b.meta}")

    reply = http("GET", a.issuer + "/.well-known/openid-configuration")
    doc = reply.json()
    check(f"provider A's discovery document names issuer {a.issuer} and a jwks_uri",
          reply.status == 200 and isinstance(doc, dict) and doc.get("issuer") == a.issuer
          and isinstance(doc.get("jwks_uri"), str), reply.evidence())

    tokens: dict[str, dict[str, str]] = {}
    for alg in ALGS:
        tokens[alg] = {
            "read": a.token("events:read", alg),
            "write": a.token("events:read events:write", alg),
            "profile": a.token("profile", alg),
            "b": b.token("events:read", alg),
        }
        check_issued(a, tokens[alg]["read"], alg, "events:read", "a reader token")
        check_issued(a, tokens[alg]["write"], alg, "events:read events:write", "a writer token")
        check_issued(b, tokens[alg]["b"], alg, "events:read", "a reader token")
    default = a.token("events:read", None)
    check_issued(a, default, "ES256", "events:read", "without `resource`, the default resource's")

    check_wrong_issuer_exits(binary, a.issuer)

    # The OpenAPI document describes A's flows, discovered from A's metadata.
    svc = Service("for A", binary, a.issuer, tmp, {"OAUTH2_OPENAPI_DISCOVER": "1"})
    reply = svc.get("/me")
    check("GET /me without a token -> 401", reply.status == 401, reply.evidence())

    for alg in ALGS:
        t = tokens[alg]
        reply = svc.get("/me", t["read"])
        body = reply.json()
        check(
            f"{alg}: GET /me -> 200, client_id {CLIENT_ID!r}, sub {CLIENT_ID!r}, "
            "scopes [events:read]",
            reply.status == 200 and isinstance(body, dict) and body.get("client_id") == CLIENT_ID
            and body.get("sub") == CLIENT_ID and body.get("scopes") == ["events:read"],
            reply.evidence(),
        )

        title = f"from oidc-provider {alg} {secrets.token_hex(4)}"
        reply = svc.post("/events", t["read"], {"title": title})
        challenge = reply.www_authenticate
        check(f"{alg}: POST /events with scope events:read only -> 403 insufficient_scope",
              reply.status == 403 and 'error="insufficient_scope"' in challenge,
              reply.evidence())

        reply = svc.post("/events", t["write"], {"title": title})
        body = reply.json()
        event_id = body.get("id") if isinstance(body, dict) else None
        check(f"{alg}: POST /events with scope events:read events:write -> 201 with an id",
              reply.status == 201 and isinstance(event_id, int), reply.evidence())
        if isinstance(event_id, int):
            reply = svc.get(f"/events/{event_id}", t["read"])
            body = reply.json()
            check(f"{alg}: GET /events/{event_id} with scope events:read -> 200, same title",
                  reply.status == 200 and isinstance(body, dict) and body.get("title") == title,
                  reply.evidence())
            reply = svc.get(f"/events/{event_id}", t["profile"])
            check(f"{alg}: GET /events/{event_id} with scope profile only -> 403",
                  reply.status == 403, reply.evidence())

        expect_invalid_token(f"{alg}: one character of the signature changed -> 401 invalid_token",
                             svc.get("/me", tamper_signature(t["read"])))
        expect_invalid_token(f"{alg}: payload's sub changed, same signature -> 401 invalid_token",
                             svc.get("/me", tamper_sub(t["read"], "someone-else")))
        expect_invalid_token(
            f"{alg}: token from provider B (issuer {b.issuer}) at the service for A "
            "-> 401 invalid_token",
            svc.get("/me", t["b"]),
        )

    reply = svc.get("/me", default)
    check("a token for the default resource (no `resource` in the request) -> 200",
          reply.status == 200, reply.evidence())

    check_metrics(svc, a, tokens)

    reply = http("GET", svc.base + "/openapi.json")
    spec = reply.json()
    flows = (spec.get("components", {}).get("securitySchemes", {}).get("oauth2", {})
             .get("flows", {})) if isinstance(spec, dict) else {}
    credentials = flows.get("clientCredentials", {})
    check("openapi: /openapi.json (OAUTH2_OPENAPI_DISCOVER=1) names provider A's "
          "client-credentials flow at its token endpoint, with the routes' scopes declared",
          reply.status == 200 and credentials.get("tokenUrl") == doc.get("token_endpoint")
          and {"events:read", "events:write"} <= set(credentials.get("scopes", {})),
          json.dumps(flows)[:600])

    # The other way round: a service configured for B takes B's tokens (so the 401s above are
    # not about B's tokens being unusable) and refuses A's.
    svc_b = Service("for B", binary, b.issuer, tmp)
    for alg in ALGS:
        reply = svc_b.get("/me", tokens[alg]["b"])
        body = reply.json()
        check(f"{alg}: provider B's token at the service for B -> 200 (control)",
              reply.status == 200 and isinstance(body, dict)
              and body.get("client_id") == CLIENT_ID, reply.evidence())
        expect_invalid_token(f"{alg}: provider A's token at the service for B -> 401 invalid_token",
                             svc_b.get("/me", tokens[alg]["read"]))

    run_introspection_checks(binary, a, doc, tokens, tmp)


def check_metrics(svc: "Service", a: IdP, tokens: dict) -> None:
    """`/metrics` of protected_service (feature `metrics`): the counters move with requests."""
    accepted = {"issuer": a.issuer, "outcome": "accepted", "reason": "ok"}
    refused = {"issuer": a.issuer, "outcome": "rejected", "reason": "bad_signature"}
    before = (metric(svc.base, "tower_oauth2_auth_total", accepted),
              metric(svc.base, "tower_oauth2_auth_total", refused))
    check("metrics: GET /metrics answers the Prometheus text", before[0] >= 0,
          http("GET", svc.base + "/metrics").evidence())
    for _ in range(3):
        svc.get("/me", tokens["ES256"]["read"])
    svc.get("/me", tamper_signature(tokens["ES256"]["read"]))
    after = (metric(svc.base, "tower_oauth2_auth_total", accepted),
             metric(svc.base, "tower_oauth2_auth_total", refused))
    check("metrics: 3 accepted requests move tower_oauth2_auth_total{outcome=accepted} by 3 and "
          "a bad signature {reason=bad_signature} by 1",
          after[0] - before[0] == 3 and after[1] - before[1] == 1, f"{before} -> {after}")
    fetches = metric(svc.base, "tower_oauth2_jwks_fetches_total",
                     {"issuer": a.issuer, "outcome": "ok"})
    keys = metric(svc.base, "tower_oauth2_keys", {"issuer": a.issuer})
    check("metrics: the discovered JWKS counts as fetched (ok) and its 2 keys as held",
          fetches >= 1 and keys == 2, f"fetches {fetches}, keys {keys}")
    hits = metric(svc.base, "tower_oauth2_token_cache_total", {"result": "hit"})
    check("metrics: token-cache hits are counted", hits >= 2, f"hits {hits}")


def run_introspection_checks(binary: str, a: IdP, doc: dict, tokens: dict, tmp: Path) -> None:
    """Opaque tokens of provider A through its introspection endpoint (RFC 7662)."""
    client = a.meta["introspection_client"]
    credentials = {"OAUTH2_INTROSPECTION_CLIENT_ID": client["id"],
                   "OAUTH2_INTROSPECTION_CLIENT_SECRET": client["secret"]}
    opaque = {
        "read": a.token("events:read", "opaque"),
        "write": a.token("events:read events:write", "opaque"),
        # Never shown to a service until the provider is gone.
        "spare": a.token("events:read", "opaque"),
    }
    check("provider A issues opaque access tokens for urn:events-api:opaque (not JWTs)",
          all(t.count(".") != 2 for t in opaque.values()), str(opaque))
    check("provider A's discovery document names an introspection_endpoint",
          isinstance(doc.get("introspection_endpoint"), str), json.dumps(doc)[:400])

    # Keys of none: every token is introspected; the endpoint comes from discovery.
    svc = Service("for A, introspection only", binary, a.issuer, tmp, credentials)
    reply = svc.get("/me", opaque["read"])
    body = reply.json()
    check("introspection: an opaque token at GET /me -> 200, client_id, scopes [events:read]",
          reply.status == 200 and isinstance(body, dict) and body.get("client_id") == CLIENT_ID
          and body.get("scopes") == ["events:read"], reply.evidence())
    reply = svc.post("/events", opaque["read"], {"title": "opaque"})
    check("introspection: POST /events with an opaque events:read token -> 403 insufficient_scope",
          reply.status == 403 and 'error="insufficient_scope"' in reply.www_authenticate,
          reply.evidence())
    reply = svc.post("/events", opaque["write"], {"title": "opaque"})
    check("introspection: POST /events with an opaque events:write token -> 201",
          reply.status == 201, reply.evidence())
    expect_invalid_token("introspection: an opaque token the provider never issued -> 401 "
                         "invalid_token", svc.get("/me", opaque["read"][:-2] + "zz"))
    calls = {o: metric(svc.base, "tower_oauth2_introspection_calls_total",
                       {"issuer": a.issuer, "outcome": o}) for o in ("active", "inactive")}
    check("metrics: introspection calls counted: 2 active (read, write), 1 inactive",
          calls == {"active": 2, "inactive": 1}, str(calls))
    # oidc-provider will not introspect its JWTs (400 unsupported_token_type, "Structured JWT
    # Tokens cannot be introspected"): a service without keys refuses them, not a 503.
    expect_invalid_token("introspection: provider A's JWT at the service without keys -> 401 "
                         "(oidc-provider refuses to introspect JWTs)",
                         svc.get("/me", tokens["ES256"]["read"]))

    # Keys and introspection: JWTs verified locally, the rest introspected; endpoint configured.
    both = dict(credentials, OAUTH2_JWKS_URL=doc["jwks_uri"],
                OAUTH2_INTROSPECTION_URL=doc["introspection_endpoint"])
    svc_both = Service("for A, JWKS and introspection", binary, a.issuer, tmp, both)
    for name, token in (("an opaque token", opaque["read"]), ("a JWT", tokens["RS256"]["read"])):
        reply = svc_both.get("/me", token)
        check(f"JWKS and introspection: {name} at GET /me -> 200", reply.status == 200,
              reply.evidence())

    # The provider goes away: a token whose answer is cached keeps working; an uncached one is
    # a 503 with Retry-After (the token may be fine), not a 401.
    stop(a.proc)
    reply = svc.get("/me", opaque["read"])
    check("provider down: the cached opaque token -> 200", reply.status == 200, reply.evidence())
    reply = svc.get("/me", opaque["spare"])
    body = reply.json()
    check("provider down: an uncached opaque token -> 503 with Retry-After, "
          "temporarily_unavailable, no challenge",
          reply.status == 503 and reply.headers.get("Retry-After", "").isdigit()
          and isinstance(body, dict) and body.get("error") == "temporarily_unavailable"
          and not reply.www_authenticate, reply.evidence())



def main() -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=str(here.parent / "target" / "debug" / "examples"
                                                / "protected_service"),
                        help="the protected_service example binary")
    parser.add_argument("--node", default=os.environ.get("NODE", "node"), help="node to run")
    parser.add_argument("--server", default=str(here / "oidc-provider" / "server.mjs"),
                        help="the oidc-provider server script")
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    server = Path(args.server).resolve()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    print(f"# oidc-provider ({server}) against {binary}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="interop-oidc-provider-") as tmp:
            try:
                run_checks(binary, args.node, server, Path(tmp))
            except SetupError:
                pass
            finally:
                stop_all()
                if Tally.failed:
                    for log in LOGS:
                        print(f"# {log.name} (last lines):", flush=True)
                        for line in tail(log).splitlines():
                            print(f"#   {line}", flush=True)
    except Exception as e:  # a crash of this script counts as a failure, not a pass
        check(f"the interop script ran to the end ({type(e).__name__}: {e})", False,
              traceback.format_exc())
    finally:
        stop_all()
    return summary()


if __name__ == "__main__":
    sys.exit(main())
