#!/usr/bin/env bash
# Interop check: PyPI grpcio (with grpcio-tools for the stubs, PyJWT for the tokens) calling
# examples/grpc_service, a tonic service behind tower-oauth2's layer. Issue 16, part 2.
#
# Creates (or reuses) a venv under target/interop-grpc-venv with the pinned packages, builds
# `cargo build -p tower-oauth2-grpc-example`, then runs scripts/interop_grpc.py, whose exit
# code is this script's result. Works from any directory.
#
# Environment:
#   CARGO_TARGET_DIR  where cargo puts the build (default: target/ in the repository)
#   PYTHON            the interpreter that creates the venv (default: python3.11, else python3)
set -euo pipefail

GRPCIO_VERSION="1.85.3"
GRPCIO_TOOLS_VERSION="1.85.1"
PYJWT_VERSION="2.15.1"
CRYPTOGRAPHY_VERSION="50.0.2"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
cd "$root"

venv="$root/target/interop-grpc-venv"
venv_python="$venv/bin/python"
wanted="grpcio==$GRPCIO_VERSION grpcio-tools==$GRPCIO_TOOLS_VERSION PyJWT==$PYJWT_VERSION cryptography==$CRYPTOGRAPHY_VERSION"

packages_ok() {
    "$venv_python" - "$GRPCIO_VERSION" "$PYJWT_VERSION" "$CRYPTOGRAPHY_VERSION" <<'PY' >/dev/null 2>&1
import sys
import cryptography, grpc, jwt
from grpc_tools import protoc  # noqa: F401
sys.exit(0 if (grpc.__version__, jwt.__version__, cryptography.__version__) == tuple(sys.argv[1:4]) else 1)
PY
}

if packages_ok; then
    echo "interop: reusing $venv" >&2
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
    echo "interop: installing $wanted" >&2
    # shellcheck disable=SC2086
    "$venv_python" -m pip install --quiet --disable-pip-version-check $wanted
    if ! packages_ok; then
        echo "interop: the venv at $venv still cannot import the pinned packages" >&2
        exit 1
    fi
fi

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$root/$target_dir" ;;
esac
echo "interop: cargo build -p tower-oauth2-grpc-example" >&2
cargo build -p tower-oauth2-grpc-example
exec "$venv_python" "$script_dir/interop_grpc.py" --binary "$target_dir/debug/grpc_service" \
    --proto "$root/examples/grpc_service/proto/events.proto"
