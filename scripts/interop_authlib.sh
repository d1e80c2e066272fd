#!/usr/bin/env bash
# Interop check: the demo example (the authorization server with the events API) against real
# OAuth clients: authlib's OAuth2Session and RFC 9068 validator, and requests-oauthlib.
#
# Creates (or reuses) a venv under target/interop-authlib-venv with pinned authlib, requests,
# oauthlib and requests-oauthlib, builds `cargo build --example demo --features sqlite,console`, then
# runs scripts/interop_authlib.py, which starts the demo on a free loopback port (each start on a
# fresh temporary DEMO_DB) and whose exit code is this script's result. Works from any
# directory.
#
# Environment:
#   CARGO_TARGET_DIR  where cargo puts the build (default: target/ in the repository)
#   PYTHON            the interpreter that creates the venv (default: python3.11, else python3)
set -euo pipefail

# Pinned: the clients, and what authlib itself rests on.
PINS=(
    "Authlib==1.9.6"
    "requests==2.34.2"
    "oauthlib==4.0.1"
    "requests-oauthlib==2.0.0"
    "joserfc==1.8.0"
    "cryptography==50.0.2"
)

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
cd "$root"

venv="$root/target/interop-authlib-venv"
venv_python="$venv/bin/python"

packages_ok() {
    "$venv_python" - "${PINS[@]}" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
from authlib.integrations.requests_client import OAuth2Session  # noqa: F401
from requests_oauthlib import OAuth2Session as _  # noqa: F401
wanted = dict(pin.split("==") for pin in sys.argv[1:])
sys.exit(0 if all(version(name) == v for name, v in wanted.items()) else 1)
EOF
}

if packages_ok; then
    echo "interop: reusing $venv (${PINS[*]})" >&2
else
    if ! "$venv_python" -c 'import sys' >/dev/null 2>&1; then
        python="${PYTHON:-}"
        if [[ -z "$python" ]]; then
            if command -v python3.11 >/dev/null 2>&1; then python=python3.11; else python=python3; fi
        fi
        echo "interop: creating venv $venv with $python" >&2
        rm -rf "$venv"
        mkdir -p "$root/target"
        "$python" -m venv "$venv"
    fi
    echo "interop: installing ${PINS[*]}" >&2
    "$venv_python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
    if ! packages_ok; then
        echo "interop: the venv at $venv still cannot import the pinned packages" >&2
        exit 1
    fi
fi

example=demo
example_features=sqlite,console
# shellcheck source=scripts/build_example.sh
source "$script_dir/build_example.sh"

exec "$venv_python" "$script_dir/interop_authlib.py" --binary "$binary"
