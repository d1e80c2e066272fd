#!/usr/bin/env bash
# Interop check: the demo example (the authorization server with the events API) against real
# OAuth clients: authlib's OAuth2Session and RFC 9068 validator, and requests-oauthlib.
#
# Creates (or reuses) a venv under target/interop-authlib-venv with pinned authlib, requests,
# oauthlib and requests-oauthlib, builds `cargo build --example demo --features sqlite,console,metrics`, then
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

venv_name=interop-authlib-venv
# shellcheck source=scripts/python_venv.sh
source "$script_dir/python_venv.sh"

example=demo
# shellcheck source=scripts/build_example.sh
source "$script_dir/build_example.sh"

exec "$venv_python" "$script_dir/interop_authlib.py" --binary "$binary"
