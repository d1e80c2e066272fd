"""What the interop checkers share: counting checks, HTTP on loopback, ports, child processes.

Imported by scripts/interop_pyjwt.py and scripts/interop_oidc_provider.py (standard library
only).
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import urllib.error
import urllib.request
from typing import Callable

HTTP_TIMEOUT = 10.0

# No proxies: everything is on loopback, whatever http_proxy says.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Tally:
    passed = 0
    failed = 0


def check(name: str, ok: bool, evidence: str = "") -> bool:
    """Prints `ok  - name` or `FAIL - name` with the evidence, and counts it."""
    if ok:
        Tally.passed += 1
        print(f"ok  - {name}", flush=True)
    else:
        Tally.failed += 1
        print(f"FAIL - {name}", flush=True)
        if evidence:
            for line in evidence.rstrip("\n").splitlines():
                print(f"       {line}", flush=True)
    return ok


def summary() -> int:
    """Prints the closing `N passed, M failed` line; the exit code to return."""
    print(f"{Tally.passed} passed, {Tally.failed} failed", flush=True)
    return 1 if Tally.failed else 0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Reply:
    # Set by a checker to add a token's decoded header and claims to the evidence.
    describe_token: Callable[[str], str] | None = None

    def __init__(self, method, url, status, headers, body: bytes, token=None, sent=None):
        self.method = method
        self.url = url
        self.status = status
        self.headers = headers
        self.body = body
        self.token = token
        self.sent = sent

    @property
    def www_authenticate(self) -> str:
        return self.headers.get("WWW-Authenticate", "") if self.headers is not None else ""

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def evidence(self) -> str:
        auth = "(none)" if self.token is None else f"Bearer {self.token}"
        lines = [f"request:  {self.method} {self.url}", f"          Authorization: {auth}"]
        if self.sent is not None:
            lines.append(f"          body: {self.sent!r}")
        lines.append(f"status:   {self.status}")
        if self.headers is not None:
            for key, value in self.headers.items():
                lines.append(f"header:   {key}: {value}")
        lines.append(f"body:     {self.body[:800].decode('utf-8', 'replace')!r}")
        if self.token is not None and Reply.describe_token is not None:
            lines.append(Reply.describe_token(self.token))
        return "\n".join(lines)


def http(method, url, *, headers=None, data: bytes | None = None, token=None, sent=None) -> Reply:
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with OPENER.open(req, timeout=HTTP_TIMEOUT) as resp:
            return Reply(method, url, resp.status, resp.headers, resp.read(), token, sent)
    except urllib.error.HTTPError as e:
        return Reply(method, url, e.code, e.headers, e.read(), token, sent)
    except (urllib.error.URLError, OSError) as e:
        return Reply(method, url, -1, None, f"transport error: {e}".encode(), token, sent)


def api(base: str, method: str, path: str, token: str | None = None, body=None) -> Reply:
    """A request to the protected service, with an optional bearer token and JSON body."""
    headers, data = {}, None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    return http(method, base + path, headers=headers, data=data, token=token,
                sent=None if data is None else data.decode())


def metric(base: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The value of the series `name{labels}` (labels in any order) in `base`/metrics
    (Prometheus text), 0 when absent; -1 when `/metrics` does not answer 200."""
    reply = http("GET", base + "/metrics")
    if reply.status != 200:
        return -1.0
    wanted = {f'{k}="{v}"' for k, v in (labels or {}).items()}
    for line in reply.body.decode(errors="replace").splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        metric_name, _, rest = series.partition("{")
        if metric_name == name and wanted <= set(rest.rstrip("}").split(",")):
            return float(value)
    return 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
