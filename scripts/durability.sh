#!/usr/bin/env bash
# Durability check: the demo example on SQLite (DEMO_DB) survives a SIGKILL with its clients,
# tokens, revocations and signing keys.
#
# Builds `cargo build --example demo --features sqlite,console,metrics`, then runs scripts/durability.py
# (standard library only), which starts the demo on a free loopback port with a temporary
# DEMO_DB, issues and revokes tokens, kills it with SIGKILL, restarts it on the same database and
# checks what survived. Its exit code is this script's result. Works from any directory.
#
# Environment:
#   CARGO_TARGET_DIR  where cargo puts the build (default: target/ in the repository)
#   PYTHON            the interpreter (default: python3)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
cd "$root"

example=demo
# shellcheck source=scripts/build_example.sh
source "$script_dir/build_example.sh"

exec "${PYTHON:-python3}" "$script_dir/durability.py" --binary "$binary"
