#!/usr/bin/env bash
# OpenAPI check: the events API's `/openapi.json` (examples/shared/events.rs, feature `utoipa`)
# validated with PyPI openapi-spec-validator, and each of its security requirements compared
# with what the running service enforces. Issue 16, part 3.
#
# Creates (or reuses) a venv under target/openapi-venv with the pinned validator, builds
# `cargo build --example protected_service --features introspection,metrics,utoipa` (the
# features every script builds that example with), then runs scripts/openapi_check.py, whose
# exit code is this script's result. Works from any directory.
#
# Environment:
#   CARGO_TARGET_DIR  where cargo puts the build (default: target/ in the repository)
#   PYTHON            the interpreter that creates the venv (default: python3.11, else python3)
set -euo pipefail

PINS=("openapi-spec-validator==0.9.0")

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
cd "$root"

venv_name=openapi-venv
# shellcheck source=scripts/python_venv.sh
source "$script_dir/python_venv.sh"

# shellcheck source=scripts/build_example.sh
source "$script_dir/build_example.sh"

exec "$venv_python" "$script_dir/openapi_check.py" --binary "$binary"
