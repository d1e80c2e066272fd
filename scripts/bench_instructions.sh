#!/usr/bin/env bash
# Per-request instruction counts of the bearer layer (verified-token cache off, and a cache hit)
# and of a bare `jsonwebtoken::decode`, and of DPoP requests (ES256 proofs), from
# callgrind: unlike wall-clock time on a shared machine, the same binary gives the same counts
# run after run, so the ratio is repeatable. Prints a markdown table.
#
# Each path runs N1 and then N2 times in the `validation` bench binary (VALIDATION_COUNT mode;
# the bench is in the workspace's bench crate, benches/suite/, package tower-oauth2-benches);
# only the loop is counted (`--toggle-collect`; set-up, whose RNG seeding in aws-lc takes a
# different number of instructions in every run, is not), and the difference divided by
# N2 - N1 is the cost of one request, first-use costs excluded. The layer's
# figure has the cost of building the request subtracted, as the criterion bench leaves request
# construction out of its measurement. Under valgrind the crypto libraries may take other code
# paths than natively; both columns run the same crypto, so the ratio stays comparable.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
bin=$(cargo bench -p tower-oauth2-benches --bench validation --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "validation":
        print(m["executable"])' | tail -n 1)
[ -x "$bin" ] || { echo "could not build the validation bench" >&2; exit 1; }

N1=${N1:-100}
N2=${N2:-600}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

instructions() { # ALG MODE N
    VALIDATION_COUNT="$1:$2:$3" valgrind --tool=callgrind --callgrind-out-file="$out" \
        --toggle-collect='*counted_loop*' "$bin" >/dev/null 2>&1
    awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

per_request() { # ALG MODE
    local a b
    a=$(instructions "$1" "$2" "$N1")
    b=$(instructions "$1" "$2" "$N2")
    echo $(((b - a) / (N2 - N1)))
}

tables=${TABLES:-bearer dpop metrics}

if [[ " $tables " == *" bearer "* ]]; then
echo "| algorithm | layer, cache off (instructions/request) | bare decode | layer / bare | layer, cache hit | bare / cache hit |"
echo "|---|---|---|---|---|---|"
for alg in RS256 ES256 EdDSA HS256; do
    layer=$(per_request "$alg" layer)
    cached=$(per_request "$alg" cached)
    request=$(per_request "$alg" request)
    bare=$(per_request "$alg" bare)
    net=$((layer - request))
    hit=$((cached - request))
    ratio=$(python3 -c "print(f'{$net / $bare:.3f}')")
    speedup=$(python3 -c "print(f'{$bare / $hit:.1f}')")
    echo "| $alg | $net | $bare | $ratio | $hit | $speedup× |"
done
fi

# DPoP (RFC 9449), ES256: what the proof adds to a request. Each DPoP request carries a proof of
# its own, signed before the counted loop; `dpop_request` (dropping such a request) is the floor
# subtracted. "one ES256 verification" is the bearer layer with the cache off minus a cache hit:
# the verification of the token and the parsing a hit skips.
if [[ " $tables " == *" dpop "* ]]; then
    layer=$(per_request ES256 layer)
    cached=$(per_request ES256 cached)
    request=$(per_request ES256 request)
    dpop=$(per_request ES256 dpop)
    dpop_cached=$(per_request ES256 dpop_cached)
    dpop_request=$(per_request ES256 dpop_request)
    bearer=$((layer - request))
    bearer_hit=$((cached - request))
    proof=$((dpop_cached - dpop_request - bearer_hit))
    verify=$((bearer - bearer_hit))
    echo
    echo "| ES256 | instructions/request |"
    echo "|---|---|"
    echo "| Bearer, cache off | $bearer |"
    echo "| Bearer, cache hit | $bearer_hit |"
    echo "| DPoP, cache off | $((dpop - dpop_request)) |"
    echo "| DPoP, cache hit | $((dpop_cached - dpop_request)) |"
    echo "| the proof (DPoP hit - Bearer hit) | $proof |"
    echo "| one ES256 verification (Bearer off - Bearer hit) | $verify |"
    echo "| the proof beyond one verification | $((proof - verify)) |"
fi

# Feature `metrics` on a cache hit: the bench crate builds with it, so `cached` has its counters
# as no-ops (no recorder) and `cached_metrics` records them into a Prometheus recorder.
if [[ " $tables " == *" metrics "* ]]; then
    cached=$(per_request ES256 cached)
    recorded=$(per_request ES256 cached_metrics)
    request=$(per_request ES256 request)
    echo
    echo "| ES256, cache hit | instructions/request |"
    echo "|---|---|"
    echo "| no recorder | $((cached - request)) |"
    echo "| Prometheus recorder | $((recorded - request)) |"
    echo "| what recording adds | $((recorded - cached)) |"
fi
