#!/usr/bin/env python3
"""Durability check: examples/demo keeps its state in SQLite (DEMO_DB) through a SIGKILL.

Starts the demo on a free loopback port with a temporary DEMO_DB, a fixed client id, client
secret, user password, issuer (DEMO_ISSUER, so that tokens stay valid when the restart listens
on another port) and key-encryption secret (DEMO_KEY_SECRET: the signing key is stored sealed).
Through HTTP it then:
- registers an extra client through the admin API (a token with scope admin);
- issues two client_credentials access tokens, A and B, and a refresh token R (password grant);
- revokes A;
- reads the whole audit log through the admin API while four threads keep getting tokens;
and kills the process with SIGKILL under that traffic: no shutdown, nothing flushed on the way
out.

It checks that a restart without DEMO_KEY_SECRET is refused (exit code 2, naming it), then
restarts the demo on the same database and asserts that:
- the extra client and the demo client still authenticate (client_credentials 200);
- B still works at /me (the signing key survived: the JWKS kid is the same as before);
- A is still refused (401, revoked) and introspects inactive, B active;
- R refreshes once (200), R again is invalid_grant (reuse), and the reuse revoked the family;
- the database files (checked right after the kill) hold neither the client secrets nor the
  token values nor DEMO_KEY_SECRET;
- every audit event read before the kill is still in the audit log, unchanged.
Then it kills that process too and checks the demo client's secret on restart: without
DEMO_CLIENT_SECRET the stored secret is kept (the old secret works, the demo says it was shown
when the client was created, and the walkthrough it prints runs in bash with that secret
exported, when curl is installed); with another DEMO_CLIENT_SECRET the stored one is replaced
(the new one works, the old one gets 401).

Standard library only. Run through scripts/durability.sh, which builds the binary; or directly:
    python3 scripts/durability.py --binary target/debug/examples/demo

Prints one `ok  - ...` / `FAIL - ...` line per check and ends with `N passed, M failed`;
exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interop_common import (  # noqa: E402
    Reply,
    Tally,
    api,
    check,
    free_port,
    http,
    stop,
    summary,
)

STARTUP_TIMEOUT = 30.0
CLIENT_ID = "durability-client"
CLIENT_SECRET = secrets.token_urlsafe(32)
OTHER_SECRET = secrets.token_urlsafe(32)
USER = "demo"
USER_PASSWORD = secrets.token_urlsafe(12)
KEY_SECRET = secrets.token_urlsafe(32)


# --- helpers ---------------------------------------------------------------------------------


def form_encode(text: str) -> str:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before the Basic encoding."""
    return urllib.parse.quote(text, safe="")


def basic(client_id: str, secret: str) -> str:
    pair = f"{form_encode(client_id)}:{form_encode(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def post_form(url: str, client: tuple[str, str], **params: str) -> Reply:
    """A client-authenticated (client_secret_basic) form POST to the authorization server."""
    body = urllib.parse.urlencode(params)
    return http("POST", url, data=body.encode(), sent=body, headers={
        "Authorization": basic(*client),
        "Content-Type": "application/x-www-form-urlencoded",
    })


def jwt_header(token: str) -> dict:
    try:
        head = token.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, IndexError):
        return {}


def clean_env(**extra: str | None) -> dict:
    """The environment for a demo process: no DEMO_* or BIND from outside, no proxies; a value of
    None in `extra` leaves that variable unset."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DEMO_")
        and k not in ("BIND", "RUST_LOG")
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env["NO_COLOR"] = "1"
    for key, value in extra.items():
        if value is not None:
            env[key] = value
    return env


class Demo:
    """One run of the demo binary, its output in a log file."""

    def __init__(self, binary: str, workdir: Path, name: str, port: int, env: dict):
        self.base = f"http://127.0.0.1:{port}"
        self.name = name
        self.log = workdir / f"{name}.log"
        with open(self.log, "wb") as log_file:
            self.proc = subprocess.Popen([binary], env=env, cwd=workdir,
                                         stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=subprocess.STDOUT)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError as e:
            return f"(no output: {e})"

    def wait_up(self) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                check(f"{self.name}: the demo starts and answers /public "
                      f"(it exited early with code {code})", False,
                      "demo output:\n" + self.output())
                return False
            reply = api(self.base, "GET", "/public")
            if reply.status == 200:
                return True
            last = reply
            time.sleep(0.1)
        check(f"{self.name}: the demo answers /public within {STARTUP_TIMEOUT:.0f} s", False,
              (last.evidence() if last else "") + "\ndemo output:\n" + self.output())
        return False

    def sigkill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait(timeout=10)
        check(f"{self.name}: the demo was killed by SIGKILL (not shut down)",
              code == -signal.SIGKILL, f"exit status: {code}")

    def stop(self) -> None:
        stop(self.proc)

    def token(self, client: tuple[str, str], **params: str) -> Reply:
        return post_form(f"{self.base}/oauth2/token", client, **params)

    def jwks_kids(self) -> list:
        reply = http("GET", f"{self.base}/oauth2/jwks.json")
        body = reply.json() or {}
        return sorted(k.get("kid") for k in body.get("keys", []))


def field(reply: Reply, name: str):
    body = reply.json()
    return body.get(name) if isinstance(body, dict) else None


# --- the checks ------------------------------------------------------------------------------


class Scenario:
    def __init__(self, binary: str, workdir: Path):
        self.audit_before: dict = {}
        self.binary = binary
        self.workdir = workdir
        self.db = workdir / "demo.db"
        first_port = free_port()
        # Fixed, so that the tokens stay valid when a restart listens on another port.
        self.issuer = f"http://127.0.0.1:{first_port}"
        self.port = first_port
        self.demo: Demo | None = None
        self.client = (CLIENT_ID, CLIENT_SECRET)
        self.extra: tuple[str, str] | None = None
        self.token_a = self.token_b = self.refresh = ""
        self.kids_before: list = []
        self.kid_before = ""

    def env(self, **extra: str | None) -> dict:
        values = {
            "BIND": f"127.0.0.1:{self.port}",
            "DEMO_ISSUER": self.issuer,
            "DEMO_DB": str(self.db),
            "DEMO_CLIENT_ID": CLIENT_ID,
            "DEMO_CLIENT_SECRET": CLIENT_SECRET,
            "DEMO_USER_PASSWORD": USER_PASSWORD,
            "DEMO_KEY_SECRET": KEY_SECRET,
            "RUST_LOG": "info",
        }
        values.update(extra)
        return clean_env(**values)

    def start(self, name: str, **extra: str | None) -> bool:
        self.demo = Demo(self.binary, self.workdir, name, self.port, self.env(**extra))
        if not self.demo.wait_up():
            return False
        print(f"# {name}: demo up at {self.demo.base} on {self.db}", flush=True)
        return True

    def restart(self, name: str, **extra: str | None) -> bool:
        """A new process on the same database, on another port (the issuer stays)."""
        self.port = free_port()
        return self.start(name, **extra)

    # --- before the kill --------------------------------------------------------------------

    def populate(self) -> bool:
        d = self.demo
        assert d is not None
        out = d.output()
        check("first start: the demo registers its client and names its DEMO_DB and the "
              "sealed signing keys",
              "registered now" in out and str(self.db) in out
              and "sealed with DEMO_KEY_SECRET" in out, out)

        admin = d.token(self.client, grant_type="client_credentials", scope="admin")
        admin_token = field(admin, "access_token")
        if not check("an admin token (client_credentials, scope admin): 200",
                     admin.status == 200 and bool(admin_token), admin.evidence()):
            return False
        reg = api(d.base, "POST", "/admin/clients", token=admin_token,
                  body={"name": "durability extra", "scopes": ["events:read"]})
        extra_id, extra_secret = field(reg, "client_id"), field(reg, "client_secret")
        if not check("the admin API registers an extra client: 201 with its secret",
                     reg.status == 201 and bool(extra_id) and bool(extra_secret),
                     reg.evidence()):
            return False
        self.extra = (extra_id, extra_secret)
        reply = d.token(self.extra, grant_type="client_credentials")
        check("the extra client gets a token before the kill: 200", reply.status == 200,
              reply.evidence())

        a = d.token(self.client, grant_type="client_credentials")
        b = d.token(self.client, grant_type="client_credentials")
        self.token_a = field(a, "access_token") or ""
        self.token_b = field(b, "access_token") or ""
        if not check("client_credentials tokens A and B: 200, 200",
                     a.status == 200 and b.status == 200 and self.token_a and self.token_b
                     and self.token_a != self.token_b, a.evidence() + "\n" + b.evidence()):
            return False
        r = d.token(self.client, grant_type="password", username=USER, password=USER_PASSWORD)
        self.refresh = field(r, "refresh_token") or ""
        if not check("a password-grant refresh token R: 200", r.status == 200 and self.refresh,
                     r.evidence()):
            return False

        for name, token in (("A", self.token_a), ("B", self.token_b)):
            me = api(d.base, "GET", "/me", token=token)
            check(f"token {name} works at /me before the kill: 200", me.status == 200,
                  me.evidence())

        self.kids_before = d.jwks_kids()
        self.kid_before = jwt_header(self.token_b).get("kid", "")
        check("the JWKS publishes one key, the kid of the tokens",
              self.kids_before == [self.kid_before] and bool(self.kid_before),
              f"jwks kids: {self.kids_before}, token kid: {self.kid_before!r}")

        rev = post_form(f"{d.base}/oauth2/revoke", self.client, token=self.token_a,
                        token_type_hint="access_token")
        check("revoking A: 200", rev.status == 200, rev.evidence())
        me = api(d.base, "GET", "/me", token=self.token_a)
        check("A is refused at /me before the kill: 401", me.status == 401, me.evidence())
        return True

    def audit_log(self, label: str) -> dict | None:
        """Every event of the audit log, through the admin API's pages: {seq: event}."""
        d = self.demo
        assert d is not None
        admin = d.token(self.client, grant_type="client_credentials", scope="admin")
        token = field(admin, "access_token")
        events: dict = {}
        cursor = None
        for _ in range(1000):
            path = "/admin/audit?limit=500" + (f"&cursor={cursor}" if cursor else "")
            page = api(d.base, "GET", path, token=token)
            body = page.json() or {}
            if page.status != 200 or "events" not in body:
                check(f"{label}: the admin API lists the audit log: 200", False, page.evidence())
                return None
            for event in body["events"]:
                events[event["seq"]] = event
            cursor = body.get("next_cursor")
            if cursor is None:
                return events
        return events

    def audit_under_traffic(self) -> None:
        """Reads the audit log while clients keep getting tokens, just before the kill."""
        d = self.demo
        assert d is not None
        stop = threading.Event()
        issued = []

        def traffic() -> None:
            while not stop.is_set():
                reply = d.token(self.client, grant_type="client_credentials")
                if reply.status == 200:
                    issued.append(reply)

        workers = [threading.Thread(target=traffic, daemon=True) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        events = self.audit_log("under traffic")
        time.sleep(0.3)
        # Killed while the traffic threads are still sending.
        d.sigkill()
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
        if events is not None:
            self.audit_before = events
            check("under traffic: the audit log holds token_issued events before the kill",
                  sum(e["kind"] == "token_issued" for e in events.values()) >= 5
                  and len(issued) >= 5,
                  f"events: {len(events)}, tokens issued: {len(issued)}")

    def audit_survived(self) -> None:
        """Every audit event read before the SIGKILL is still there, unchanged."""
        after = self.audit_log("after the restart")
        if after is None or not self.audit_before:
            check("the audit log was read before and after the kill", False,
                  f"before: {len(self.audit_before)}, after: {after is not None}")
            return
        missing = [seq for seq in self.audit_before if seq not in after]
        changed = [seq for seq, event in self.audit_before.items()
                   if seq in after and after[seq] != event]
        check(f"SIGKILL under traffic lost no committed audit row "
              f"({len(self.audit_before)} read before the kill, {len(after)} after the restart)",
              not missing and not changed, f"missing: {missing[:10]}\nchanged: {changed[:10]}")

    # --- after the kill ---------------------------------------------------------------------

    def sealed_keys_need_the_secret(self) -> None:
        """A restart without DEMO_KEY_SECRET cannot open the sealed key: exit code 2."""
        self.port = free_port()
        name = "a restart without DEMO_KEY_SECRET exits with code 2, naming DEMO_KEY_SECRET"
        try:
            run = subprocess.run([self.binary], env=self.env(DEMO_KEY_SECRET=None),
                                 cwd=self.workdir, stdin=subprocess.DEVNULL,
                                 capture_output=True, timeout=STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            check(name, False, f"still running after {STARTUP_TIMEOUT:.0f} s; "
                               f"output: {e.stdout!r} {e.stderr!r}")
            return
        stderr = run.stderr.decode("utf-8", "replace")
        check(name, run.returncode == 2 and "DEMO_KEY_SECRET" in stderr
              and "panicked" not in stderr, f"exit code: {run.returncode}\nstderr: {stderr!r}")

    def at_rest(self) -> None:
        """The database files (with the WAL the kill left) hold no secret and no token value."""
        files = [p for p in self.workdir.iterdir() if p.name.startswith(self.db.name)]
        data = b"".join(p.read_bytes() for p in files)
        leaked = [name for name, value in (
            ("the demo client secret", CLIENT_SECRET),
            ("the extra client secret", self.extra[1] if self.extra else ""),
            ("access token B", self.token_b),
            ("refresh token R", self.refresh),
            ("the key-encryption secret", KEY_SECRET),
        ) if value and value.encode() in data]
        check("the database files hold no client secret, token value or DEMO_KEY_SECRET",
              bool(files) and not leaked,
              f"files: {[p.name for p in files]}\nfound: {leaked}")

    def survived(self) -> None:
        d = self.demo
        assert d is not None
        out = d.output()
        check("after the restart the demo finds its client in DEMO_DB and keeps "
              "DEMO_CLIENT_SECRET (nothing to replace)",
              "found in DEMO_DB" in out and "from DEMO_CLIENT_SECRET (not shown)" in out
              and "it replaced the secret" not in out, out)

        reply = d.token(self.client, grant_type="client_credentials")
        check("the demo client still authenticates: client_credentials 200",
              reply.status == 200, reply.evidence())
        if self.extra is not None:
            reply = d.token(self.extra, grant_type="client_credentials")
            check("the extra client (registered through the admin API) still authenticates: "
                  "client_credentials 200", reply.status == 200, reply.evidence())

        me = api(d.base, "GET", "/me", token=self.token_b)
        check("token B, issued before the kill, still works at /me: 200",
              me.status == 200 and (me.json() or {}).get("client_id") == CLIENT_ID,
              me.evidence())

        kids_after = d.jwks_kids()
        check("the JWKS kid is the same before and after the restart",
              kids_after == self.kids_before and bool(kids_after),
              f"before: {self.kids_before}\nafter: {kids_after}")
        fresh = field(d.token(self.client, grant_type="client_credentials"), "access_token")
        check("new tokens are signed with the same key (kid) as before the kill",
              fresh is not None and jwt_header(fresh).get("kid") == self.kid_before,
              f"before: {self.kid_before!r}, now: {jwt_header(fresh or '')}")

        me = api(d.base, "GET", "/me", token=self.token_a)
        said = me.www_authenticate + " " + me.body.decode("utf-8", "replace")
        check("revoked token A is still refused at /me: 401, revoked",
              me.status == 401 and "revoked" in said, me.evidence())
        intro = post_form(f"{d.base}/oauth2/introspect", self.client, token=self.token_a)
        check("introspection of A: inactive",
              intro.status == 200 and intro.json() == {"active": False}, intro.evidence())
        intro = post_form(f"{d.base}/oauth2/introspect", self.client, token=self.token_b)
        check("introspection of B: active",
              intro.status == 200 and field(intro, "active") is True, intro.evidence())

        first = d.token(self.client, grant_type="refresh_token", refresh_token=self.refresh)
        newer = field(first, "refresh_token")
        check("refresh token R, issued before the kill, refreshes once: 200 with a new one",
              first.status == 200 and bool(newer) and newer != self.refresh,
              first.evidence())
        again = d.token(self.client, grant_type="refresh_token", refresh_token=self.refresh)
        check("R presented again: 400 invalid_grant (reuse)",
              again.status == 400 and field(again, "error") == "invalid_grant",
              again.evidence())
        if newer:
            newest = d.token(self.client, grant_type="refresh_token", refresh_token=newer)
            check("... and the reuse revoked the family: the newer refresh token is refused",
                  newest.status == 400 and field(newest, "error") == "invalid_grant",
                  newest.evidence())

    # --- the demo client's secret on restart ------------------------------------------------

    def secret_on_restart(self) -> None:
        if not self.restart("third start, without DEMO_CLIENT_SECRET",
                            DEMO_CLIENT_SECRET=None):
            return
        d = self.demo
        assert d is not None
        out = d.output()
        check("without DEMO_CLIENT_SECRET the demo keeps the stored secret and says it was "
              "shown when the client was created",
              "shown when the client was created" in out and CLIENT_SECRET not in out, out)
        reply = d.token((CLIENT_ID, CLIENT_SECRET), grant_type="client_credentials")
        check("... and the stored secret still authenticates: 200", reply.status == 200,
              reply.evidence())
        self.walkthrough_after_restart(out)
        d.sigkill()

        if not self.restart("fourth start, with another DEMO_CLIENT_SECRET",
                            DEMO_CLIENT_SECRET=OTHER_SECRET):
            return
        d = self.demo
        out = d.output()
        check("with another DEMO_CLIENT_SECRET the demo says it replaced the stored secret",
              "replaced the secret stored in DEMO_DB" in out and OTHER_SECRET not in out, out)
        reply = d.token((CLIENT_ID, OTHER_SECRET), grant_type="client_credentials")
        check("... the new secret authenticates: 200", reply.status == 200, reply.evidence())
        reply = d.token((CLIENT_ID, CLIENT_SECRET), grant_type="client_credentials")
        check("... the old secret no longer does: 401 invalid_client",
              reply.status == 401 and field(reply, "error") == "invalid_client",
              reply.evidence())
        me = api(d.base, "GET", "/me", token=self.token_b)
        check("... and token B still works at /me: 200", me.status == 200, me.evidence())

    def walkthrough_after_restart(self, out: str) -> None:
        """The walkthrough printed on a restart without DEMO_CLIENT_SECRET runs, with the secret
        shown at creation exported as it says."""
        if shutil.which("curl") is None:
            print("# curl is not installed: the printed walkthrough is not run", flush=True)
            return
        if "Walkthrough" not in out:
            check("the restarted demo prints its walkthrough", False, out)
            return
        script = out[out.index("Walkthrough"):].split("\n", 1)[1]
        script = "\n".join(line[2:] if line.startswith("  ") else line
                           for line in script.splitlines())
        env = clean_env(DEMO_CLIENT_SECRET=CLIENT_SECRET, DEMO_USER_PASSWORD=USER_PASSWORD)
        run = subprocess.run(["bash", "-c", script], env=env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=60)
        evidence = f"script:\n{script}\nexit code: {run.returncode}\nstdout:\n{run.stdout}\n" \
                   f"stderr:\n{run.stderr}"
        expected = [
            f'"sub":"{CLIENT_ID}"',
            '"active":true',
            "token has been revoked",
            '{"active":false}',
            '{"clients":[{',
            "refresh token was already used",
        ]
        at, missing = 0, []
        for fragment in expected:
            found = run.stdout.find(fragment, at)
            if found < 0:
                missing.append(fragment)
            else:
                at = found + len(fragment)
        check("the walkthrough printed on that restart runs in bash with DEMO_CLIENT_SECRET "
              "exported as it says (exit 0; token, API, introspect, revoke, admin, refresh)",
              run.returncode == 0 and not missing, f"missing: {missing}\n{evidence}")

    def run(self) -> None:
        if not self.start("first start"):
            return
        if not self.populate():
            return
        self.audit_under_traffic()
        self.at_rest()
        self.sealed_keys_need_the_secret()
        if not self.restart("restart after SIGKILL"):
            return
        self.survived()
        self.audit_survived()
        self.demo.sigkill()
        self.secret_on_restart()

    def cleanup(self) -> None:
        if self.demo is not None:
            self.demo.stop()


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--binary",
        default=str(Path(__file__).resolve().parent.parent
                    / "target" / "debug" / "examples" / "demo"),
        help="the demo example binary (built with --features sqlite,console,metrics)",
    )
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    print(f"# durability of {binary} on SQLite", flush=True)

    with tempfile.TemporaryDirectory(prefix="durability-") as tmp:
        scenario = Scenario(binary, Path(tmp))
        try:
            scenario.run()
        except Exception as e:  # a crash of this script counts as a failure, not a pass
            check(f"the durability script ran to the end ({type(e).__name__}: {e})", False,
                  traceback.format_exc())
        finally:
            scenario.cleanup()
            if Tally.failed:
                for log in sorted(Path(tmp).glob("*.log")):
                    print(f"# {log.name}:", flush=True)
                    for line in log.read_text(errors="replace").splitlines()[-40:]:
                        print(f"#   {line}", flush=True)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
