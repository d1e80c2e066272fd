#!/usr/bin/env bash
# Interop check for DPoP (RFC 9449): npm oauth4webapi as the client of the demo's authorization
# server and its events API (nonces off, then on), and npm oidc-provider's DPoP-bound tokens
# against protected_service (DPoP allowed, and required). Issue 15.
#
# Installs the pinned packages into scripts/dpop/node_modules with `npm ci` (reused when they are
# there from the same lockfile), builds the demo (`--features sqlite,console,metrics`) and
# protected_service, then runs scripts/dpop/interop.mjs, which starts them on free loopback
# ports and whose exit code is this script's result. Works from any directory. Needs node
# (>= 20.19) and npm.
#
# Environment:
#   CARGO_TARGET_DIR  where cargo puts the build (default: target/ in the repository)
#   NODE, NPM         the node and npm to use (default: from PATH)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
package_dir="$script_dir/dpop"
cd "$root"

node="${NODE:-node}"
npm="${NPM:-npm}"
for tool in "$node" "$npm" cargo; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "interop: $tool is not installed" >&2
        exit 1
    fi
done

stamp="$package_dir/node_modules/.interop-package-lock.sha256"
lock_sum="$(sha256sum "$package_dir/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$lock_sum" ]]; then
    echo "interop: reusing $package_dir/node_modules" >&2
else
    echo "interop: npm ci in $package_dir" >&2
    (cd "$package_dir" && "$npm" ci --no-audit --no-fund)
    echo "$lock_sum" >"$stamp"
fi
for package in oauth4webapi oidc-provider; do
    pinned="$("$node" -p 'require(process.argv[1]).dependencies[process.argv[2]]' \
        "$package_dir/package.json" "$package")"
    installed="$("$node" -p 'require(process.argv[1]).version' \
        "$package_dir/node_modules/$package/package.json")"
    if [[ "$installed" != "$pinned" ]]; then
        echo "interop: $package $installed is installed, not the pinned $pinned" >&2
        exit 1
    fi
    echo "# $package $installed" >&2
done

# shellcheck source=scripts/build_example.sh
example=demo source "$script_dir/build_example.sh"
demo_binary="$binary"
example=protected_service source "$script_dir/build_example.sh"
service_binary="$binary"

cd "$package_dir"
DEMO_BIN="$demo_binary" SERVICE_BIN="$service_binary" exec "$node" "$package_dir/interop.mjs"
