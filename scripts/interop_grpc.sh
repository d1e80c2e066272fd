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

PINS=("grpcio==1.85.3" "grpcio-tools==1.85.1" "PyJWT==2.15.1" "cryptography==50.0.2")

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
cd "$root"

venv_name=interop-grpc-venv
# shellcheck source=scripts/python_venv.sh
source "$script_dir/python_venv.sh"

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$root/$target_dir" ;;
esac
echo "interop: cargo build -p tower-oauth2-grpc-example" >&2
cargo build -p tower-oauth2-grpc-example
exec "$venv_python" "$script_dir/interop_grpc.py" --binary "$target_dir/debug/grpc_service" \
    --proto "$root/examples/grpc_service/proto/events.proto"
