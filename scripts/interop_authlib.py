#!/usr/bin/env python3
"""Interop check: examples/demo (authorization server + events API) against real OAuth clients.

Starts the demo on a free loopback port with a chosen client id, secret and user password, and
drives it with:
- authlib's OAuth2Session (authlib.integrations.requests_client), once with
  client_secret_basic and once with client_secret_post: client_credentials, calling the API,
  introspection, revocation, the password grant and refresh-token rotation with reuse detection;
- authlib's RFC 9068 validator (JWTBearerTokenValidator) on the access tokens, with the JWKS
  from the metadata's jwks_uri;
- authlib's OAuth2Session as a public client (token_endpoint_auth_method none), registered
  through the admin API: authorization code with PKCE S256 and no secret to a loopback redirect
  URI on an ephemeral port (RFC 8252; the demo's login page filled in as a user would), calling
  the API, refresh-token rotation with reuse detection, and the grants it is refused;
- requests-oauthlib's OAuth2Session with oauthlib's BackendApplicationClient
  (client_credentials), including the admin API's scope check;
- the metadata document, whose endpoints must be the ones the clients used.
It also starts the demo as the README does (nothing configured, in a temporary directory where
it creates its default DEMO_DB), runs the curl walkthrough it prints (when curl is installed)
and uses the printed credentials, and checks that configuration mistakes exit with code 2.
Every other start of the demo gets a fresh DEMO_DB in a temporary directory, so runs are
independent of each other and of any database left in the working directory.

Run through scripts/interop_authlib.sh, which sets up the venv and builds the binary; or directly:
    python scripts/interop_authlib.py --binary target/debug/examples/demo

Prints one `ok  - ...` / `FAIL - ...` line per check and ends with `N passed, M failed`;
exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import base64
import html
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from pathlib import Path

# Everything is on plain http over loopback: both libraries refuse that unless told.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interop_common import (  # noqa: E402
    Tally,
    api,
    check,
    free_port,
    http,
    metric,
    stop,
    summary,
)

import authlib  # noqa: E402
import requests  # noqa: E402
import requests_oauthlib  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator  # noqa: E402
from joserfc.jwk import KeySet  # noqa: E402
from oauthlib.oauth2 import BackendApplicationClient  # noqa: E402

STARTUP_TIMEOUT = 30.0
CLIENT_ID = "interop-client"
# URL-safe characters only: authlib and requests put the secret in Basic credentials without
# the form-urlencoding RFC 6749 §2.3.1 asks for, which the server undoes.
CLIENT_SECRET = secrets.token_urlsafe(32)
USER = "demo"
USER_PASSWORD = secrets.token_urlsafe(12)
DEFAULT_SCOPES = {"events:read", "events:write"}
METADATA_PATH = "/.well-known/oauth-authorization-server"


# --- helpers ---------------------------------------------------------------------------------


# Where the demo's databases go: one directory for the whole run, removed at the end.
DB_DIR = tempfile.TemporaryDirectory(prefix="interop-authlib-db-")


def fresh_db() -> str:
    """A path for a new, empty DEMO_DB (the demo creates the file)."""
    fd, path = tempfile.mkstemp(prefix="demo-", suffix=".db", dir=DB_DIR.name)
    os.close(fd)
    os.unlink(path)
    return path


def clean_env(**extra: str | None) -> dict:
    """The environment for a demo process: no DEMO_* or BIND from outside, no proxies, and a
    fresh DEMO_DB unless `extra` names one (`DEMO_DB=None`: unset, the demo's default)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DEMO_")
        and k not in ("BIND", "RUST_LOG")
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["NO_COLOR"] = "1"
    env["DEMO_DB"] = fresh_db()
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def session_log(session: requests.Session) -> list:
    """Records every request a requests session sends (the prepared requests)."""
    sent: list = []
    session.hooks["response"].append(lambda resp, *args, **kwargs: sent.append(resp.request))
    return sent


def body_params(request) -> dict:
    body = request.body or ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return dict(urllib.parse.parse_qsl(body))


def describe(resp) -> str:
    if resp is None:
        return "(no response)"
    req = resp.request
    lines = [f"request:  {req.method} {req.url}"]
    for key, value in req.headers.items():
        lines.append(f"          {key}: {value}")
    if req.body:
        lines.append(f"          body: {req.body!r}")
    lines.append(f"status:   {resp.status_code}")
    for key, value in resp.headers.items():
        lines.append(f"header:   {key}: {value}")
    lines.append(f"body:     {resp.text[:800]!r}")
    return "\n".join(lines)


def error_of(exc: BaseException) -> str | None:
    """The OAuth error code authlib or oauthlib raised, if any."""
    return getattr(exc, "error", None)


def wait_until_up(proc: subprocess.Popen, base: str, output) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            check(f"the demo starts and answers /public (it exited early with code {code})",
                  False, "demo output:\n" + output())
            return False
        reply = api(base, "GET", "/public")
        if reply.status == 200:
            return True
        last = reply
        time.sleep(0.1)
    check(f"the demo answers /public within {STARTUP_TIMEOUT:.0f} s", False,
          (last.evidence() if last else "") + "\ndemo output:\n" + output())
    return False


class Validator(JWTBearerTokenValidator):
    """authlib's RFC 9068 validator, with the JWKS fetched from the metadata's jwks_uri."""

    def __init__(self, issuer: str, audience: str, jwks: dict):
        super().__init__(issuer=issuer, resource_server=audience)
        # As authlib's documentation says: a joserfc KeySet.
        self.jwks = KeySet.import_key_set(jwks)

    def get_jwks(self):
        return self.jwks


# --- configuration mistakes ------------------------------------------------------------------


def not_a_database() -> str:
    """A DEMO_DB path holding a text file."""
    path = fresh_db()
    Path(path).write_text("not an SQLite database\n" * 200)
    return path


def check_config_errors(binary: str) -> None:
    cases = [
        ("DEMO_CLIENT_SECRET shorter than 32 characters",
         {"DEMO_CLIENT_SECRET": "too-short"}, "DEMO_CLIENT_SECRET"),
        ("an unusable BIND", {"BIND": "not an address"}, "BIND"),
        ("a DEMO_CLIENT_ID with a slash", {"DEMO_CLIENT_ID": "bad/id"}, "DEMO_CLIENT_ID"),
        ("an http DEMO_ISSUER on a public host",
         {"DEMO_ISSUER": "http://example.com"}, "https"),
        ("a DEMO_DB in a directory that does not exist",
         {"DEMO_DB": str(Path(DB_DIR.name) / "missing" / "demo.db")}, "DEMO_DB"),
        ("a DEMO_DB that is a directory", {"DEMO_DB": DB_DIR.name}, "DEMO_DB"),
        ("a DEMO_DB that is not an SQLite database", {"DEMO_DB": not_a_database()}, "DEMO_DB"),
        ("a DEMO_KEY_SECRET shorter than 32 bytes",
         {"DEMO_KEY_SECRET": "too-short"}, "DEMO_KEY_SECRET"),
    ]
    for what, extra, named in cases:
        env = clean_env(**{"BIND": "127.0.0.1:0", **extra})
        name = f"{what}: the demo exits with code 2, saying {named} on stderr"
        try:
            proc = subprocess.run([binary], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=15)
        except subprocess.TimeoutExpired as e:
            check(name, False, f"still running after 15 s; stderr: {e.stderr!r}")
            continue
        stderr = proc.stderr.decode("utf-8", "replace")
        check(name, proc.returncode == 2 and named in stderr and "panicked" not in stderr,
              f"exit code: {proc.returncode}\nstderr: {stderr!r}")


# --- the README's command: nothing configured ------------------------------------------------

# What the walkthrough's commands print, in order.
WALKTHROUGH_EXPECTED = [
    ("1-2. the client_credentials token works on /me", '"sub":"demo-client"'),
    ("2. POST /events creates event 1", '"id":1,"title":"launch"'),
    ("2. GET /events/1 reads it back", '"id":1,"title":"launch"'),
    ("3. introspection says active", '"active":true'),
    ("4. revocation answers {}", "{}"),
    ("4. the revoked token gets 401", "HTTP/1.1 401"),
    ("4. ... with error_description token has been revoked", "token has been revoked"),
    ("4. introspection then says inactive", '{"active":false}'),
    ("5. the admin token lists the clients", '{"clients":[{'),
    ("5. the admin token registers a client (secret shown once)", '"client_secret":"'),
    ("6. a rotated-out refresh token presented again is refused",
     "refresh token was already used; every token of this grant is revoked"),
    ("6. ... and the family's newer refresh token is revoked too", "refresh token is revoked"),
    ("the metadata document is served", '"issuer":"http://127.0.0.1:'),
    ("the JWKS is served", '{"keys":[{'),
]


def check_readme_demo(binary: str) -> None:
    """`cargo run --example demo --features sqlite,console,metrics` with nothing set: what it prints works.

    It runs in an empty temporary directory, where the demo creates its default DEMO_DB."""
    workdir = tempfile.mkdtemp(prefix="readme-", dir=DB_DIR.name)
    proc = subprocess.Popen([binary],
                            env=clean_env(BIND="127.0.0.1:0", RUST_LOG="warn", DEMO_DB=None),
                            cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    printed = threading.Event()

    def read():
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.lstrip().startswith("curl") and "jwks.json" in line:
                printed.set()
        printed.set()  # the end of the output: whatever was printed is all there is

    try:
        threading.Thread(target=read, daemon=True).start()
        printed.wait(STARTUP_TIMEOUT)
        text = "".join(lines)
        base = re.search(r"listening\s+(http://\S+)", text)
        creds = re.search(r"^\s*CLIENT='([^':]+):([^']+)'$", text, re.M)
        password = re.search(r"password grant: demo / (\S+)", text)
        if not check("with nothing configured the demo prints its address, a generated client "
                     "secret, a generated user password and the walkthrough",
                     base is not None and creds is not None and password is not None
                     and "Walkthrough" in text, text):
            return
        base = base.group(1)
        client_id = urllib.parse.unquote(creds.group(1))
        secret = urllib.parse.unquote(creds.group(2))
        check("the default client id is demo-client and the generated secret has >= 43 chars",
              client_id == "demo-client" and len(secret) >= 43, text)
        default_db = Path(workdir) / "tower-oauth2-demo.db"
        check("with DEMO_DB unset the demo keeps its state in ./tower-oauth2-demo.db",
              default_db.is_file() and "./tower-oauth2-demo.db" in text,
              f"files in {workdir}: {sorted(p.name for p in Path(workdir).iterdir())}\n{text}")

        session = OAuth2Session(client_id, secret)
        session.trust_env = False
        try:
            token = session.fetch_token(f"{base}/oauth2/token", grant_type="client_credentials")
            reply = session.get(f"{base}/me")
            check("authlib with the printed credentials: client_credentials token, /me 200",
                  reply.status_code == 200 and reply.json().get("client_id") == client_id,
                  describe(reply))
        except Exception as e:  # noqa: BLE001
            check("authlib with the printed credentials gets a token", False, repr(e))
        try:
            token = session.fetch_token(f"{base}/oauth2/token", username="demo",
                                        password=password.group(1))
            check("the printed user password works with the password grant",
                  bool(token.get("refresh_token")), repr(dict(token)))
        except Exception as e:  # noqa: BLE001
            check("the printed user password works with the password grant", False, repr(e))

        script = text[text.index("Walkthrough"):].split("\n", 1)[1]
        script = "\n".join(line[2:] if line.startswith("  ") else line
                           for line in script.splitlines())
        if shutil.which("curl") is None:
            print("# curl is not installed: the printed walkthrough is not run", flush=True)
            return
        env = clean_env()
        run = subprocess.run(["bash", "-c", script], env=env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=60)
        out = run.stdout
        evidence = f"script:\n{script}\nexit code: {run.returncode}\nstdout:\n{out}\n" \
                   f"stderr:\n{run.stderr}"
        check("the printed walkthrough runs in bash to the end (exit code 0)",
              run.returncode == 0, evidence)
        at = 0
        for name, fragment in WALKTHROUGH_EXPECTED:
            found = out.find(fragment, at)
            if check(f"walkthrough {name}", found >= 0, evidence):
                at = found + len(fragment)
    finally:
        stop(proc)


# --- the main run ----------------------------------------------------------------------------


class Run:
    def __init__(self, base: str):
        self.base = base
        self.meta: dict = {}
        self.validator: Validator | None = None
        # (method, url) of every request the OAuth clients sent to the authorization server.
        self.used: set[tuple[str, str]] = set()

    def session(self, method: str) -> tuple[OAuth2Session, list]:
        s = OAuth2Session(CLIENT_ID, CLIENT_SECRET, token_endpoint_auth_method=method,
                          revocation_endpoint_auth_method=method,
                          token_endpoint=self.meta.get("token_endpoint"))
        s.trust_env = False
        return s, session_log(s)

    def note(self, sent: list) -> None:
        for req in sent:
            if "/oauth2/" in req.url:
                self.used.add((req.method, req.url.split("?")[0]))

    # -- metadata --

    def metadata(self) -> bool:
        reply = http("GET", self.base + METADATA_PATH)
        meta = reply.json() if reply.status == 200 else None
        if not check("GET /.well-known/oauth-authorization-server -> 200 JSON",
                     isinstance(meta, dict), reply.evidence()):
            return False
        self.meta = meta
        oauth2 = self.base + "/oauth2"
        expected = {
            "issuer": self.base,
            "token_endpoint": f"{oauth2}/token",
            "revocation_endpoint": f"{oauth2}/revoke",
            "introspection_endpoint": f"{oauth2}/introspect",
            "jwks_uri": f"{oauth2}/jwks.json",
        }
        wrong = {k: (meta.get(k), v) for k, v in expected.items() if meta.get(k) != v}
        check("metadata: issuer and the token, revocation, introspection and JWKS endpoints",
              not wrong, f"(got, expected): {wrong}\n{meta}")
        grants = set(meta.get("grant_types_supported") or [])
        check("metadata: grant_types_supported has client_credentials, password, refresh_token",
              {"client_credentials", "password", "refresh_token"} <= grants, repr(meta))
        methods = {"client_secret_basic", "client_secret_post"}
        check("metadata: client_secret_basic and client_secret_post at the token, revocation "
              "and introspection endpoints",
              all(methods <= set(meta.get(f"{e}_endpoint_auth_methods_supported") or [])
                  for e in ("token", "revocation", "introspection")), repr(meta))
        jwks = http("GET", meta.get("jwks_uri") or f"{oauth2}/jwks.json")
        keys = jwks.json() if jwks.status == 200 else None
        if check("the jwks_uri serves a JWKS with a key",
                 isinstance(keys, dict) and bool(keys.get("keys")), jwks.evidence()):
            self.validator = Validator(self.base, self.base, keys)
        return True

    def validate(self, name: str, access: str, scopes: list[str], **claims) -> None:
        """authlib's RFC 9068 validator accepts the token, with these claims."""
        if self.validator is None:
            check(f"{name}: authlib's RFC 9068 validator (no JWKS)", False)
            return
        try:
            token = self.validator.authenticate_token(access)
            self.validator.validate_token(token, scopes, None)
            wrong = {k: (token.get(k), v) for k, v in claims.items() if token.get(k) != v}
            check(f"{name}: authlib's RFC 9068 validator accepts it (typ at+jwt, iss, aud, "
                  f"exp, sub, client_id, iat, jti; scope {' '.join(scopes)})",
                  token.header.get("typ") == "at+jwt" and not wrong,
                  f"header: {token.header}\nclaims: {dict(token)}\n(got, expected): {wrong}")
        except Exception as e:  # noqa: BLE001
            check(f"{name}: authlib's RFC 9068 validator accepts it", False,
                  f"{e!r}\n{traceback.format_exc()}")

    # -- authlib --

    def authlib_client_credentials(self, method: str) -> None:
        session, sent = self.session(method)
        endpoint = self.meta["token_endpoint"]
        issued = {"grant": "client_credentials"}
        before = metric(self.base, "tower_oauth2_server_tokens_issued_total", issued)
        try:
            token = session.fetch_token(endpoint, grant_type="client_credentials")
        except Exception as e:  # noqa: BLE001
            check(f"authlib {method}: fetch_token(client_credentials)", False,
                  f"{e!r}\n{traceback.format_exc()}")
            return
        finally:
            self.note(sent)
        token_req = sent[-1] if sent else None
        form = body_params(token_req) if token_req is not None else {}
        if method == "client_secret_basic":
            used = (token_req is not None
                    and token_req.headers.get("Authorization", "").startswith("Basic ")
                    and "client_secret" not in form)
        else:
            used = (token_req is not None and "Authorization" not in token_req.headers
                    and form.get("client_secret") == CLIENT_SECRET)
        check(f"authlib {method}: the token request authenticated with {method}", used,
              f"headers: {dict(token_req.headers) if token_req else None}\nform: {form}")
        after = metric(self.base, "tower_oauth2_server_tokens_issued_total", issued)
        check(f"authlib {method}: the demo's /metrics counts the token "
              "(tower_oauth2_server_tokens_issued_total{grant=client_credentials} + 1)",
              before >= 0 and after - before == 1, f"{before} -> {after}")
        access = token.get("access_token")
        check(f"authlib {method}: fetch_token(client_credentials) -> Bearer access token with "
              "expires_in, the default scopes, no refresh token",
              isinstance(access, str) and str(token.get("token_type")).lower() == "bearer"
              and isinstance(token.get("expires_in"), int) and token["expires_in"] > 0
              and set(str(token.get("scope", "")).split()) == DEFAULT_SCOPES
              and "refresh_token" not in token,
              repr(dict(token)))
        if not isinstance(access, str):
            return
        self.validate(f"authlib {method}: the client_credentials token", access,
                      ["events:read"], client_id=CLIENT_ID, sub=CLIENT_ID, iss=self.base)

        me = session.get(f"{self.base}/me")
        body = me.json() if me.status_code == 200 else {}
        check(f"authlib {method}: GET /me with the token -> 200, sub and client_id "
              f"{CLIENT_ID}", me.status_code == 200 and body.get("sub") == CLIENT_ID
              and body.get("client_id") == CLIENT_ID, describe(me))
        created = session.post(f"{self.base}/events", json={"title": f"authlib {method}"})
        event = created.json() if created.status_code == 201 else {}
        check(f"authlib {method}: POST /events (events:write) -> 201",
              created.status_code == 201 and isinstance(event.get("id"), int), describe(created))
        if isinstance(event.get("id"), int):
            read = session.get(f"{self.base}/events/{event['id']}")
            check(f"authlib {method}: GET /events/{event['id']} -> 200 with the title",
                  read.status_code == 200 and read.json().get("title") == f"authlib {method}",
                  describe(read))

        introspect = self.meta["introspection_endpoint"]
        reply = session.introspect_token(introspect, token=access,
                                         token_type_hint="access_token")
        self.note(sent)
        info = reply.json() if reply.status_code == 200 else {}
        check(f"authlib {method}: introspect_token before revocation -> active, with "
              "client_id, scope, token_type",
              reply.status_code == 200 and info.get("active") is True
              and info.get("client_id") == CLIENT_ID
              and set(str(info.get("scope", "")).split()) == DEFAULT_SCOPES
              and str(info.get("token_type", "")).lower() == "bearer", describe(reply))

        reply = session.revoke_token(self.meta["revocation_endpoint"], token=access,
                                     token_type_hint="access_token")
        self.note(sent)
        check(f"authlib {method}: revoke_token -> 200", reply.status_code == 200,
              describe(reply))
        me = session.get(f"{self.base}/me")
        check(f"authlib {method}: GET /me with the revoked token -> 401 invalid_token",
              me.status_code == 401
              and 'error="invalid_token"' in me.headers.get("WWW-Authenticate", ""),
              describe(me))
        reply = session.introspect_token(introspect, token=access)
        self.note(sent)
        check(f"authlib {method}: introspect_token after revocation -> active false",
              reply.status_code == 200 and reply.json() == {"active": False}, describe(reply))

    def authlib_refresh(self, method: str) -> None:
        session, sent = self.session(method)
        endpoint = self.meta["token_endpoint"]
        try:
            first = dict(session.fetch_token(endpoint, username=USER, password=USER_PASSWORD))
        except Exception as e:  # noqa: BLE001
            check(f"authlib {method}: fetch_token(password)", False,
                  f"{e!r}\n{traceback.format_exc()}")
            return
        finally:
            self.note(sent)
        check(f"authlib {method}: fetch_token(username, password) -> access and refresh token",
              isinstance(first.get("access_token"), str)
              and isinstance(first.get("refresh_token"), str)
              and body_params(sent[-1]).get("grant_type") == "password", repr(first))
        if not isinstance(first.get("refresh_token"), str):
            return
        me = session.get(f"{self.base}/me")
        check(f"authlib {method}: the password-grant token -> /me 200 with sub {USER}",
              me.status_code == 200 and me.json().get("sub") == USER, describe(me))
        self.validate(f"authlib {method}: the password-grant token", first["access_token"],
                      ["events:read events:write"], client_id=CLIENT_ID, sub=USER)

        old = first["refresh_token"]
        try:
            second = dict(session.refresh_token(endpoint, refresh_token=old))
        except Exception as e:  # noqa: BLE001
            check(f"authlib {method}: refresh_token", False, f"{e!r}\n{traceback.format_exc()}")
            return
        finally:
            self.note(sent)
        new = second.get("refresh_token")
        check(f"authlib {method}: refresh_token -> a new access token and a new, different "
              "refresh token",
              isinstance(new, str) and new != old
              and second.get("access_token") not in (None, first["access_token"])
              and body_params(sent[-1]).get("grant_type") == "refresh_token", repr(second))
        me = session.get(f"{self.base}/me")
        check(f"authlib {method}: the refreshed access token -> /me 200 with sub {USER}",
              me.status_code == 200 and me.json().get("sub") == USER, describe(me))
        introspect = self.meta["introspection_endpoint"]
        reply = session.introspect_token(introspect, token=new, token_type_hint="refresh_token")
        self.note(sent)
        info = reply.json() if reply.status_code == 200 else {}
        check(f"authlib {method}: introspect_token(new refresh token) -> active, "
              "token_type refresh_token",
              info.get("active") is True and info.get("token_type") == "refresh_token"
              and info.get("sub") == USER, describe(reply))
        reply = session.introspect_token(introspect, token=old, token_type_hint="refresh_token")
        self.note(sent)
        check(f"authlib {method}: introspect_token(rotated-out refresh token) -> active false",
              reply.status_code == 200 and reply.json() == {"active": False}, describe(reply))

        for name, presented in (("the rotated-out (old) refresh token is refused: "
                                 "invalid_grant", old),
                                ("then the new refresh token is refused too (family "
                                 "revoked): invalid_grant", new)):
            try:
                again = session.refresh_token(endpoint, refresh_token=presented)
                check(f"authlib {method}: {name}", False, f"a token came back: {dict(again)!r}")
            except Exception as e:  # noqa: BLE001
                check(f"authlib {method}: {name}", error_of(e) == "invalid_grant",
                      f"{e!r}\n{describe(getattr(e, 'response', None))}")
            self.note(sent)
        me = http("GET", f"{self.base}/me", token=second["access_token"])
        check(f"authlib {method}: the access token issued with the new refresh token is "
              "revoked with its family -> 401", me.status == 401, me.evidence())

        # Revoking a refresh token (RFC 7009) takes its access tokens along.
        try:
            third = dict(session.fetch_token(endpoint, username=USER, password=USER_PASSWORD))
        except Exception as e:  # noqa: BLE001
            check(f"authlib {method}: fetch_token(password) again", False, repr(e))
            return
        finally:
            self.note(sent)
        reply = session.revoke_token(self.meta["revocation_endpoint"],
                                     token=third.get("refresh_token"),
                                     token_type_hint="refresh_token")
        self.note(sent)
        check(f"authlib {method}: revoke_token(refresh token) -> 200", reply.status_code == 200,
              describe(reply))
        try:
            session.refresh_token(endpoint, refresh_token=third.get("refresh_token"))
            check(f"authlib {method}: the revoked refresh token is refused", False)
        except Exception as e:  # noqa: BLE001
            check(f"authlib {method}: the revoked refresh token is refused: invalid_grant",
                  error_of(e) == "invalid_grant", repr(e))
        self.note(sent)
        me = http("GET", f"{self.base}/me", token=third.get("access_token"))
        check(f"authlib {method}: the access token of the revoked refresh token -> 401",
              me.status == 401, me.evidence())

    def authlib_refusals(self) -> None:
        endpoint = self.meta["token_endpoint"]
        session = OAuth2Session(CLIENT_ID, CLIENT_SECRET[:-1] + ("A" if CLIENT_SECRET[-1] != "A"
                                                                  else "B"))
        session.trust_env = False
        try:
            session.fetch_token(endpoint, grant_type="client_credentials")
            check("authlib: a wrong client secret is refused", False)
        except Exception as e:  # noqa: BLE001
            check("authlib: a wrong client secret is refused: invalid_client",
                  error_of(e) == "invalid_client", repr(e))
        session, sent = self.session("client_secret_basic")
        try:
            session.fetch_token(endpoint, username=USER, password=USER_PASSWORD + "x")
            check("authlib: a wrong user password is refused", False)
        except Exception as e:  # noqa: BLE001
            check("authlib: a wrong user password is refused: invalid_grant",
                  error_of(e) == "invalid_grant", repr(e))
        self.note(sent)

    def authlib_public_client(self) -> None:
        """authlib as a public client: no secret, authorization code + PKCE, refresh."""
        name = "authlib public client"
        endpoint = self.meta["token_endpoint"]
        check(f"{name}: the metadata lists token_endpoint_auth_method none",
              "none" in (self.meta.get("token_endpoint_auth_methods_supported") or []),
              repr(self.meta))
        admin = OAuth2Session(CLIENT_ID, CLIENT_SECRET, scope="admin")
        admin.trust_env = False
        try:
            admin.fetch_token(endpoint, grant_type="client_credentials", scope="admin")
        except Exception as e:  # noqa: BLE001
            check(f"{name}: an admin token to register it", False, repr(e))
            return
        registered = admin.post(f"{self.base}/admin/clients", json={
            "name": "authlib CLI", "client_id": "authlib-cli",
            "token_endpoint_auth_method": "none",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "scopes": sorted(DEFAULT_SCOPES),
        })
        body = registered.json() if registered.status_code == 201 else {}
        if not check(f"{name}: POST /admin/clients with token_endpoint_auth_method none -> 201, "
                     "no client_secret",
                     registered.status_code == 201 and "client_secret" not in body
                     and body.get("token_endpoint_auth_method") == "none", describe(registered)):
            return

        # RFC 8252 §7.3: registered without a port, used with an ephemeral one.
        redirect = f"http://127.0.0.1:{free_port()}/callback"
        client = OAuth2Session("authlib-cli", token_endpoint_auth_method="none",
                               redirect_uri=redirect, scope="events:read events:write",
                               code_challenge_method="S256")
        client.trust_env = False
        sent = session_log(client)
        verifier = generate_token(48)
        url, state = client.create_authorization_url(self.meta["authorization_endpoint"],
                                                     code_verifier=verifier)
        page = client.get(url, allow_redirects=False, withhold_token=True)
        found = re.search(r'name="return_to" value="([^"]*)"', page.text)
        if not check(f"{name}: GET /authorize -> the login page", page.status_code == 200
                     and found is not None, describe(page)):
            return
        login = client.post(f"{self.base}/login", allow_redirects=False, withhold_token=True, data={
            "return_to": html.unescape(found.group(1)), "username": USER,
            "password": USER_PASSWORD})
        back = client.get(self.base + login.headers.get("Location", "/"),
                          allow_redirects=False, withhold_token=True)
        location = back.headers.get("Location", "")
        if not check(f"{name}: after the login, /authorize redirects to the ephemeral loopback "
                     "port with a code and the state",
                     login.status_code == 303 and back.status_code == 302
                     and location.startswith(redirect + "?") and "code=" in location
                     and f"state={state}" in location, describe(back)):
            return
        try:
            token = client.fetch_token(endpoint, authorization_response=location,
                                       code_verifier=verifier)
        except Exception as e:  # noqa: BLE001
            check(f"{name}: fetch_token(authorization_code, code_verifier)", False,
                  f"{e!r}\n{traceback.format_exc()}")
            return
        finally:
            self.note(sent)
        token_req = sent[-1] if sent else None
        form = body_params(token_req) if token_req is not None else {}
        check(f"{name}: the token request carried client_id and code_verifier, no secret",
              token_req is not None and "Authorization" not in token_req.headers
              and form.get("client_id") == "authlib-cli" and "client_secret" not in form
              and form.get("code_verifier") == verifier, f"form: {form}")
        first_refresh = token.get("refresh_token")
        check(f"{name}: fetch_token -> access and refresh token with the granted scopes",
              isinstance(token.get("access_token"), str) and isinstance(first_refresh, str)
              and set(str(token.get("scope", "")).split()) == DEFAULT_SCOPES, repr(dict(token)))
        me = client.get(f"{self.base}/me")
        who = me.json() if me.status_code == 200 else {}
        check(f"{name}: GET /me -> 200, sub {USER}, client_id authlib-cli",
              who.get("sub") == USER and who.get("client_id") == "authlib-cli", describe(me))
        try:
            renewed = client.refresh_token(endpoint, refresh_token=first_refresh)
            check(f"{name}: refresh_token -> a new pair (rotation)",
                  renewed.get("refresh_token") not in (None, first_refresh)
                  and isinstance(renewed.get("access_token"), str), repr(dict(renewed)))
        except Exception as e:  # noqa: BLE001
            check(f"{name}: refresh_token", False, repr(e))
        self.note(sent)
        try:
            client.refresh_token(endpoint, refresh_token=first_refresh)
            check(f"{name}: the rotated-out refresh token again is refused", False)
        except Exception as e:  # noqa: BLE001
            check(f"{name}: the rotated-out refresh token again -> invalid_grant",
                  error_of(e) == "invalid_grant", repr(e))
        me = client.get(f"{self.base}/me")
        check(f"{name}: reuse revoked the family: GET /me with the newest token -> 401",
              me.status_code == 401, describe(me))
        try:
            client.fetch_token(endpoint, grant_type="client_credentials")
            check(f"{name}: client_credentials is refused to a public client", False)
        except Exception as e:  # noqa: BLE001
            check(f"{name}: client_credentials -> unauthorized_client",
                  error_of(e) == "unauthorized_client", repr(e))

    # -- requests-oauthlib --

    def requests_oauthlib(self) -> None:
        endpoint = self.meta["token_endpoint"]
        for label, kwargs in (("Basic", {}), ("client_secret in the body",
                                              {"include_client_id": True})):
            oauth = requests_oauthlib.OAuth2Session(
                client=BackendApplicationClient(client_id=CLIENT_ID))
            oauth.trust_env = False
            sent = session_log(oauth)
            name = f"requests-oauthlib BackendApplicationClient ({label})"
            try:
                token = oauth.fetch_token(token_url=endpoint, client_id=CLIENT_ID,
                                          client_secret=CLIENT_SECRET, **kwargs)
            except Exception as e:  # noqa: BLE001
                check(f"{name}: fetch_token", False, f"{e!r}\n{traceback.format_exc()}")
                continue
            finally:
                self.note(sent)
            check(f"{name}: fetch_token -> access token with the default scopes",
                  isinstance(token.get("access_token"), str)
                  and set(token.get("scope") or []) == DEFAULT_SCOPES
                  and body_params(sent[-1]).get("grant_type") == "client_credentials",
                  repr(token))
            me = oauth.get(f"{self.base}/me")
            check(f"{name}: GET /me -> 200 with client_id {CLIENT_ID}",
                  me.status_code == 200 and me.json().get("client_id") == CLIENT_ID,
                  describe(me))
            created = oauth.post(f"{self.base}/events", json={"title": "requests-oauthlib"})
            check(f"{name}: POST /events -> 201", created.status_code == 201, describe(created))
            admin = oauth.get(f"{self.base}/admin/clients")
            check(f"{name}: GET /admin/clients without scope admin -> 403 insufficient_scope",
                  admin.status_code == 403
                  and 'error="insufficient_scope"' in admin.headers.get("WWW-Authenticate", ""),
                  describe(admin))

        oauth = requests_oauthlib.OAuth2Session(
            client=BackendApplicationClient(client_id=CLIENT_ID, scope=["admin"]))
        oauth.trust_env = False
        sent = session_log(oauth)
        try:
            token = oauth.fetch_token(token_url=endpoint, client_id=CLIENT_ID,
                                      client_secret=CLIENT_SECRET)
        except Exception as e:  # noqa: BLE001
            check("requests-oauthlib: fetch_token(scope admin)", False, repr(e))
            return
        finally:
            self.note(sent)
        check("requests-oauthlib: fetch_token(scope=['admin']) -> a token with scope admin only",
              token.get("scope") == ["admin"], repr(token))
        listed = oauth.get(f"{self.base}/admin/clients")
        clients = listed.json().get("clients", []) if listed.status_code == 200 else []
        check(f"requests-oauthlib: GET /admin/clients with scope admin -> 200 listing "
              f"{CLIENT_ID}", any(c.get("client_id") == CLIENT_ID for c in clients),
              describe(listed))
        events = oauth.get(f"{self.base}/events/1")
        check("requests-oauthlib: the admin-only token cannot read events -> 403",
              events.status_code == 403, describe(events))

    def peer_rate_limit(self) -> None:
        """Served with connect info, failures are counted per peer address too."""
        endpoint = self.meta["token_endpoint"]
        form = b"grant_type=client_credentials"
        reply = None
        attempts = 0
        # Each attempt names another unknown client: only the per-peer count can add up.
        for attempts in range(1, 13):
            basic = base64.b64encode(f"nobody-{attempts}:{'x' * 43}".encode()).decode()
            reply = http("POST", endpoint, data=form, headers={
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded"})
            if reply.status != 401:
                break
        self.used.add(("POST", endpoint))
        check("failed client authentications from one peer, each with another client id, "
              "end in 429 with Retry-After within 10 attempts (per-peer limit)",
              reply is not None and reply.status == 429 and attempts <= 10
              and bool(reply.headers.get("Retry-After")),
              f"attempts: {attempts}\n{reply.evidence() if reply else ''}")
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        reply = http("POST", endpoint, data=form, headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded"})
        check("... and then the right credentials from that peer get 429 too, until the "
              "window ends", reply.status == 429, reply.evidence())

    def endpoints_used(self) -> None:
        expected = {("POST", self.meta.get(k)) for k in
                    ("token_endpoint", "revocation_endpoint", "introspection_endpoint")}
        expected.add(("GET", self.meta.get("authorization_endpoint")))
        check("the clients used exactly the metadata's token, revocation and introspection "
              "endpoints (POST) and its authorization endpoint (GET)", self.used == expected,
              f"used: {sorted(self.used)}\nmetadata: {sorted(expected)}")


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--binary",
        default=str(Path(__file__).resolve().parent.parent
                    / "target" / "debug" / "examples" / "demo"),
        help="the demo example binary",
    )
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())

    print(f"# authlib {authlib.__version__}, requests-oauthlib {requests_oauthlib.__version__}, "
          f"requests {requests.__version__} against {binary}", flush=True)
    proc = None
    try:
        check_config_errors(binary)
        check_readme_demo(binary)

        with tempfile.TemporaryDirectory(prefix="interop-authlib-") as tmp:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            log = Path(tmp) / "demo.log"
            env = clean_env(BIND=f"127.0.0.1:{port}", DEMO_CLIENT_ID=CLIENT_ID,
                            DEMO_CLIENT_SECRET=CLIENT_SECRET, DEMO_USER_PASSWORD=USER_PASSWORD,
                            RUST_LOG="info")
            with open(log, "wb") as log_file:
                proc = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL,
                                        stdout=log_file, stderr=subprocess.STDOUT)
            output = lambda: log.read_text(errors="replace")  # noqa: E731
            try:
                if wait_until_up(proc, base, output):
                    print(f"# demo up at {base}", flush=True)
                    text = output()
                    check("chosen secret and password are not echoed in the demo's output",
                          CLIENT_SECRET not in text and USER_PASSWORD not in text, text)
                    run = Run(base)
                    if run.metadata():
                        for method in ("client_secret_basic", "client_secret_post"):
                            run.authlib_client_credentials(method)
                            run.authlib_refresh(method)
                        run.authlib_refusals()
                        run.authlib_public_client()
                        run.requests_oauthlib()
                        run.endpoints_used()
                        run.peer_rate_limit()
                    text = output()
                    check("the demo logged audit events (target tower_oauth2::audit) and "
                          "never a secret",
                          "tower_oauth2::audit" in text and CLIENT_SECRET not in text
                          and USER_PASSWORD not in text, text[-4000:])
            finally:
                stop(proc)
                if Tally.failed:
                    print("# demo output:", flush=True)
                    for line in output().splitlines()[-40:]:
                        print(f"#   {line}", flush=True)
    except Exception as e:  # a crash of this script counts as a failure, not a pass
        check(f"the interop script ran to the end ({type(e).__name__}: {e})", False,
              traceback.format_exc())
        if proc is not None:
            stop(proc)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
