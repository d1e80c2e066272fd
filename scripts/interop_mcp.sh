#!/usr/bin/env bash
# Interop check: the official MCP TypeScript SDK (npm @modelcontextprotocol/sdk, pinned in
# scripts/mcp-sdk/package.json and its lockfile) against examples/mcp_server (rmcp behind
# tower-oauth2, with tower-oauth2's authorization server in the same process).
#
# Installs the SDK into scripts/mcp-sdk/node_modules with `npm ci` (reused when it is there at
# the pinned version from the same lockfile), builds `cargo build -p tower-oauth2-mcp-example`,
# starts it on a free loopback port, and runs scripts/mcp-sdk/interop.mjs against it: discovery from
# the 401, dynamic registration, authorization code + PKCE with `resource`, the tool call,
# refresh rotation and reuse, a client named by a Client ID Metadata Document served over
# https on loopback (test CA in tests/data/tls, trusted by the example and, through
# NODE_EXTRA_CA_CERTS, by node), and client credentials. Its exit code is this script's result.
# Works from any directory. Needs node (>= 18) and npm.
#
# Environment:
#   CARGO_TARGET_DIR  where cargo puts the build (default: target/ in the repository)
#   NODE, NPM         the node and npm to use (default: from PATH)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
sdk_dir="$script_dir/mcp-sdk"
cd "$root"

node="${NODE:-node}"
npm="${NPM:-npm}"
for tool in "$node" "$npm" cargo python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "interop: $tool is not installed" >&2
        exit 1
    fi
done

package="@modelcontextprotocol/sdk"
pinned="$("$node" -p 'require(process.argv[1]).dependencies[process.argv[2]]' \
    "$sdk_dir/package.json" "$package")"
installed="$("$node" -p 'require(process.argv[1]).version' \
    "$sdk_dir/node_modules/$package/package.json" 2>/dev/null || true)"
stamp="$sdk_dir/node_modules/.interop-package-lock.sha256"
lock_sum="$(sha256sum "$sdk_dir/package-lock.json" | cut -d' ' -f1)"
if [[ "$installed" == "$pinned" && -f "$stamp" && "$(cat "$stamp")" == "$lock_sum" ]]; then
    echo "interop: reusing $sdk_dir/node_modules ($package $installed)" >&2
else
    echo "interop: npm ci in $sdk_dir ($package $pinned)" >&2
    (cd "$sdk_dir" && "$npm" ci --no-audit --no-fund)
    installed="$("$node" -p 'require(process.argv[1]).version' \
        "$sdk_dir/node_modules/$package/package.json")"
    if [[ "$installed" != "$pinned" ]]; then
        echo "interop: npm ci installed $package $installed, not $pinned" >&2
        exit 1
    fi
    echo "$lock_sum" >"$stamp"
fi

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$root/$target_dir" ;;
esac
echo "interop: cargo build -p tower-oauth2-mcp-example" >&2
cargo build -p tower-oauth2-mcp-example
binary="$target_dir/debug/mcp_server"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
secret="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
log="$(mktemp)"
tls="$root/tests/data/tls"
# Test-only: the test CA for the client metadata documents the script serves on loopback.
BIND="127.0.0.1:$port" MCP_SERVICE_CLIENT_SECRET="$secret" RUST_LOG=info NO_COLOR=1 \
    MCP_CLIENT_METADATA_CA="$tls/ca.pem" MCP_DANGEROUS_PRIVATE_CLIENT_METADATA=1 \
    "$binary" >"$log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -f "$log"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
        "$base/.well-known/oauth-authorization-server" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$server" 2>/dev/null; then
        echo "interop: the MCP example exited:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "# MCP example up at $base/mcp; $package $installed on node $("$node" --version)"

status=0
(cd "$sdk_dir" && MCP_BASE="$base" MCP_SERVICE_CLIENT_SECRET="$secret" \
    MCP_TLS_CERT="$tls/localhost.pem" MCP_TLS_KEY="$tls/localhost.key" \
    NODE_EXTRA_CA_CERTS="$tls/ca.pem" "$node" "$sdk_dir/interop.mjs") || status=$?
if grep -q -- "$secret" "$log"; then
    echo "FAIL - the example's log contains the service client's secret" >&2
    status=1
fi
if [[ $status -ne 0 ]]; then
    echo "# the example's log:"
    tail -40 "$log" | sed 's/^/#   /'
fi
exit "$status"
