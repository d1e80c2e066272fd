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

PYJWT_VERSION="2.15.1"
CRYPTOGRAPHY_VERSION="50.0.2"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
cd "$root"

venv="$root/target/interop-venv"
venv_python="$venv/bin/python"

packages_ok() {
    "$venv_python" - "$PYJWT_VERSION" "$CRYPTOGRAPHY_VERSION" <<'EOF' >/dev/null 2>&1
import sys
import cryptography
import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401
sys.exit(0 if (jwt.__version__, cryptography.__version__) == (sys.argv[1], sys.argv[2]) else 1)
EOF
}

if packages_ok; then
    echo "interop: reusing $venv (PyJWT $PYJWT_VERSION, cryptography $CRYPTOGRAPHY_VERSION)" >&2
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
    echo "interop: installing PyJWT==$PYJWT_VERSION cryptography==$CRYPTOGRAPHY_VERSION" >&2
    "$venv_python" -m pip install --quiet --disable-pip-version-check \
        "PyJWT==$PYJWT_VERSION" "cryptography==$CRYPTOGRAPHY_VERSION"
    if ! packages_ok; then
        echo "interop: the venv at $venv still cannot import the pinned packages" >&2
        exit 1
    fi
fi

# shellcheck source=scripts/build_example.sh
source "$script_dir/build_example.sh"

exec "$venv_python" "$script_dir/interop_pyjwt.py" --binary "$binary"
