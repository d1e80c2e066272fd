#!/usr/bin/env bash
# Interop check: the protected_service example against a real identity provider, oidc-provider 9
# (npm), with JWKS discovery from the issuer (issue 3), and its opaque access tokens through
# its introspection endpoint (RFC 7662, issue 16).
#
# Installs the pinned oidc-provider into scripts/oidc-provider/node_modules with `npm ci` (reused
# when it is already there at the pinned version from the same lockfile), builds
# `cargo build --example protected_service --features introspection`, then runs scripts/interop_oidc_provider.py, which
# starts the providers and the service on loopback and whose exit code is this script's result.
# Works from any directory. Needs node (>= 20.19) and npm; python3 (standard library only).
#
# Environment:
#   CARGO_TARGET_DIR  where cargo puts the build (default: target/ in the repository)
#   NODE, NPM         the node and npm to use (default: from PATH)
#   PYTHON            the interpreter for the checker (default: python3.11, else python3)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
provider_dir="$script_dir/oidc-provider"
cd "$root"

node="${NODE:-node}"
npm="${NPM:-npm}"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then python=python3.11; else python=python3; fi
fi
for tool in "$node" "$npm" "$python" cargo; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "interop: $tool is not installed" >&2
        exit 1
    fi
done

# The pinned version is the one in package.json; the lockfile pins the rest.
pinned="$("$node" -p 'require(process.argv[1]).dependencies["oidc-provider"]' \
    "$provider_dir/package.json")"
installed="$("$node" -p 'require(process.argv[1]).version' \
    "$provider_dir/node_modules/oidc-provider/package.json" 2>/dev/null || true)"
stamp="$provider_dir/node_modules/.interop-package-lock.sha256"
lock_sum="$("$node" -e 'const fs = require("fs"), crypto = require("crypto");
process.stdout.write(crypto.createHash("sha256").update(fs.readFileSync(process.argv[1])).digest("hex"))' \
    "$provider_dir/package-lock.json")"

if [[ "$installed" == "$pinned" && -f "$stamp" && "$(cat "$stamp")" == "$lock_sum" ]]; then
    echo "interop: reusing $provider_dir/node_modules (oidc-provider $installed)" >&2
else
    echo "interop: npm ci in $provider_dir (oidc-provider $pinned)" >&2
    (cd "$provider_dir" && "$npm" ci --no-audit --no-fund)
    installed="$("$node" -p 'require(process.argv[1]).version' \
        "$provider_dir/node_modules/oidc-provider/package.json")"
    if [[ "$installed" != "$pinned" ]]; then
        echo "interop: npm ci installed oidc-provider $installed, not $pinned" >&2
        exit 1
    fi
    echo "$lock_sum" >"$stamp"
fi

# shellcheck source=scripts/build_example.sh
source "$script_dir/build_example.sh"

# The checker stops every provider and service it starts, on success, failure or SIGTERM.
exec "$python" "$script_dir/interop_oidc_provider.py" --binary "$binary" --node "$node" \
    --server "$provider_dir/server.mjs"
