#!/usr/bin/env bash
# Interop check: the protected_service example against tokens minted by PyJWT.
#
# Creates (or reuses) a venv under target/interop-venv with pinned PyJWT and cryptography,
# builds `cargo build --example protected_service`, then runs scripts/interop_pyjwt.py, whose
# exit code is this script's result. Works from any directory.
#
# Environment:
#   CARGO_TARGET_DIR  where cargo puts the build (default: target/ in the repository)
#   PYTHON            the interpreter that creates the venv (default: python3.11, else python3)
set -euo pipefail

PINS=("PyJWT==2.15.1" "cryptography==50.0.2")

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
cd "$root"

venv_name=interop-venv
# shellcheck source=scripts/python_venv.sh
source "$script_dir/python_venv.sh"

# shellcheck source=scripts/build_example.sh
source "$script_dir/build_example.sh"

exec "$venv_python" "$script_dir/interop_pyjwt.py" --binary "$binary"
