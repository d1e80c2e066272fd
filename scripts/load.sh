#!/usr/bin/env bash
# Load test: the protected_service example (release build, --demo key) over loopback HTTP/1.1,
# keep-alive, closed loop. Three scenarios, each for LOAD_DURATION seconds with LOAD_CONNECTIONS
# connections:
#
#   (a) GET /public  no Authorization header (the router, the layer not involved)
#   (b) GET /me      one valid token, the same on every request (verified once, then served
#                    from the verified-token cache, which is on by default)
#   (c) GET /me      LOAD_TOKENS (10,000) distinct valid tokens, cycled through in order: each
#                    token's first use is a full signature verification, later uses are cache hits
#
# (a) and (b) are driven by oha. oha sends the same headers on every request, so (c) is driven
# by scripts/load_client.rs (std only, built with rustc), a closed-loop client that puts
# request k's token k mod N in its Authorization header. So that (c) can be compared with a run
# from the same client, (b) is run with load_client too, as (b'). Without oha (see below), all
# scenarios use load_client.
#
# oha is installed once with `cargo install oha --locked --root target/tools` (several minutes
# of compiling). If that fails, Debian's wrk is installed with apt-get, if possible, and runs
# (a) and (b) instead (`wrk --latency`, 2 threads); if neither is available, load_client runs
# every scenario. The table's "driver" column says which tool produced each row.
#
# (a) and (b) run LOAD_ROUNDS times, alternating (a, b, a, b, ...), so that a change in what
# else the shared machine is doing lands on both; the table gives each one's median round (by
# req/s), and the ratio is the median of the per-round ratios (b_i / a_i).
#
# Prints a table (req/s, p50, p99) and the ratio (b)/(a) in req/s (target >= 0.9). A scenario
# with any non-2xx answer or connection error fails the script. Uses only 127.0.0.1.
#
# Environment:
#   LOAD_DURATION      seconds per scenario (default 10)
#   LOAD_ROUNDS        rounds of (a) and (b) (default 3)
#   LOAD_CONNECTIONS   concurrent connections (default 32)
#   LOAD_TOKENS        distinct tokens for (c) (default 10000)
#   CARGO_TARGET_DIR   where cargo puts the build (default: target/ in the repository)
set -euo pipefail

duration="${LOAD_DURATION:-10}"
rounds="${LOAD_ROUNDS:-3}"
connections="${LOAD_CONNECTIONS:-32}"
ntokens="${LOAD_TOKENS:-10000}"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
cd "$root"

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$root/$target_dir" ;;
esac
tools="$root/target/tools"

log() { echo "load: $*" >&2; }

# --- build ---------------------------------------------------------------------------------
log "cargo build --release --example protected_service"
cargo build --release --example protected_service
service="$target_dir/release/examples/protected_service"
[[ -x "$service" ]] || { log "built, but $service is not there"; exit 1; }

client="$tools/bin/load_client"
mkdir -p "$tools/bin"
if [[ ! -x "$client" || "$script_dir/load_client.rs" -nt "$client" ]]; then
    log "rustc --edition 2024 -O scripts/load_client.rs -o $client"
    rustc --edition 2024 -O "$script_dir/load_client.rs" -o "$client"
fi

# --- load generator ------------------------------------------------------------------------
generator=""
oha="$tools/bin/oha"
if [[ -x "$oha" ]]; then
    generator=oha
elif command -v oha >/dev/null 2>&1; then
    oha="$(command -v oha)"
    generator=oha
else
    log "installing oha: cargo install oha --locked --root target/tools (takes a few minutes, once)"
    if cargo install oha --locked --root "$tools"; then
        generator=oha
    else
        log "cargo install oha failed; falling back to Debian's wrk"
        if command -v wrk >/dev/null 2>&1 ||
            { command -v apt-get >/dev/null 2>&1 &&
                { apt-get install -y wrk >/dev/null 2>&1 ||
                    { apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1; }; }; }; then
            generator=wrk
        else
            log "no wrk either: every scenario runs with load_client"
            generator=load_client
        fi
    fi
fi
log "load generator for (a) and (b): $generator"

# --- the service ---------------------------------------------------------------------------
work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

tokens="$work/tokens.txt"
# Port 0: the kernel picks a free loopback port; the service prints the address it got.
BIND=127.0.0.1:0 RUST_LOG=warn "$service" --demo --demo-tokens "$ntokens" "$tokens" \
    >"$work/service.out" 2>"$work/service.err" &
server_pid=$!
for _ in $(seq 1 300); do
    grep -q '^demo tokens: wrote' "$work/service.out" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/service.err" >&2; log "the service exited"; exit 1; }
    sleep 0.1
done
addr="$(sed -n 's|^protected_service listening on http://||p' "$work/service.out" | head -n 1)"
[[ -n "$addr" && -s "$tokens" ]] || { cat "$work/service.err" >&2; log "the service did not start"; exit 1; }
one_token="$(head -n 1 "$tokens")"
log "service pid $server_pid on $addr, $(wc -l <"$tokens") tokens minted"

# Sanity: (a) answers 200 without a token, /me answers 401 without one and 200 with one.
check() { # EXPECTED_STATUS PATH [TOKEN]
    local status
    if [[ $# -eq 3 ]]; then
        status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $3" "http://$addr$2")
    else
        status=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr$2")
    fi
    [[ "$status" == "$1" ]] || { log "GET $2 answered $status, expected $1"; exit 1; }
}
check 200 /public
check 401 /me
check 200 /me "$one_token"
check 200 /me "$(tail -n 1 "$tokens")"

# --- scenarios -----------------------------------------------------------------------------
# Each runner prints "rps p50_ms p99_ms".
run_oha() { # PATH [TOKEN]
    local args=(--no-tui --output-format json -z "${duration}s" -c "$connections")
    [[ $# -eq 2 ]] && args+=(-H "Authorization: Bearer $2")
    "$oha" "${args[@]}" "http://$addr$1" >"$work/oha.json"
    python3 - "$work/oha.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
bad = {k: v for k, v in codes.items() if not str(k).startswith("2")}
errors = r.get("errorDistribution", {})
# oha counts requests cut off by the end of the run (-z) as errors; those are not failures.
errors = {k: v for k, v in errors.items() if "aborted due to deadline" not in k}
if bad or errors:
    sys.exit(f"oha: non-2xx {bad} errors {errors}")
p = r["latencyPercentiles"]
print(f'{r["summary"]["requestsPerSec"]:.0f} {p["p50"] * 1000:.3f} {p["p99"] * 1000:.3f}')
EOF
}

run_client() { # PATH [TOKENS_FILE]
    local out
    out="$("$client" "$addr" "$1" "$duration" "$connections" ${2:+"$2"})"
    log "load_client: $out"
    python3 - "$out" <<'EOF'
import sys
r = dict(kv.split("=") for kv in sys.argv[1].split())
if int(r["non_2xx"]) or int(r["errors"]):
    sys.exit(f"load_client: {r['non_2xx']} non-2xx answers, {r['errors']} errors")
print(r["rps"], r["p50_ms"], r["p99_ms"])
EOF
}

run_wrk() { # PATH [TOKEN]
    local args=(-d "${duration}s" -c "$connections" -t 2 --latency)
    [[ $# -eq 2 ]] && args+=(-H "Authorization: Bearer $2")
    wrk "${args[@]}" "http://$addr$1" >"$work/wrk.txt"
    cat "$work/wrk.txt" >&2
    python3 - "$work/wrk.txt" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
if "Non-2xx" in text or "Socket errors" in text:
    sys.exit("wrk: non-2xx answers or socket errors")
def ms(label):
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\b", text, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
print(f"{rps:.0f} {ms(50):.3f} {ms(99):.3f}")
EOF
}

single="$work/one_token.txt"
echo "$one_token" >"$single"

declare -A result
scenario() { # KEY LABEL RUNNER ARGS...
    local key="$1" label="$2"
    shift 2
    log "$label: ${duration}s, $connections connections, $1"
    result[$key]="$("$@")"
    log "  -> req/s p50_ms p99_ms: ${result[$key]}"
}

for round in $(seq 1 "$rounds"); do
    case "$generator" in
        oha)
            scenario "round_a$round" "(a) GET /public, round $round" run_oha /public
            scenario "round_b$round" "(b) GET /me, one token, round $round" run_oha /me "$one_token"
            ;;
        wrk)
            scenario "round_a$round" "(a) GET /public, round $round" run_wrk /public
            scenario "round_b$round" "(b) GET /me, one token, round $round" run_wrk /me "$one_token"
            ;;
        load_client)
            scenario "round_a$round" "(a) GET /public, round $round" run_client /public
            scenario "round_b$round" "(b) GET /me, one token, round $round" run_client /me "$single"
            ;;
    esac
done
# The median round of each (by req/s; the lower middle one for an even count).
median_round() { # KEY
    local runs=()
    for round in $(seq 1 "$rounds"); do runs+=("${result[round_$1$round]}"); done
    printf '%s\n' "${runs[@]}" | sort -n -k1,1 | sed -n "$(((rounds + 1) / 2))p"
}
result[a]="$(median_round a)"
result[b]="$(median_round b)"
scenario b2 "(b') GET /me, one token" run_client /me "$single"
scenario c "(c) GET /me, $ntokens tokens" run_client /me "$tokens"

# --- report --------------------------------------------------------------------------------
row() { # LABEL DRIVER KEY
    read -r rps p50 p99 <<<"${result[$3]}"
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$rps" "$p50" "$p99"
}
echo
echo "protected_service --demo (EdDSA), release, $addr; ${duration} s per scenario," \
    "$connections connections, keep-alive; (a) and (b): median of $rounds alternating rounds;" \
    "$(nproc) CPUs; $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| scenario | driver | req/s | p50 (ms) | p99 (ms) |"
echo "|---|---|---|---|---|"
row "(a) GET /public, no token" "$generator" a
row "(b) GET /me, one token" "$generator" b
row "(b') GET /me, one token" load_client b2
row "(c) GET /me, $ntokens distinct tokens" load_client c
echo
pairs=()
for round in $(seq 1 "$rounds"); do
    pairs+=("${result[round_a$round]%% *}" "${result[round_b$round]%% *}")
done
python3 - "${result[b2]}" "${result[c]}" "${pairs[@]}" <<'EOF'
import statistics, sys
b2, c = (float(s.split()[0]) for s in sys.argv[1:3])
runs = [float(x) for x in sys.argv[3:]]
ratios = [b / a for a, b in zip(runs[0::2], runs[1::2])]
ratio = statistics.median(ratios)
verdict = "meets" if ratio >= 0.9 else "misses"
rounds = ", ".join(f"{r:.2f}" for r in ratios)
print(f"(b)/(a) req/s: {ratio:.2f}, median of the rounds' ratios ({rounds}); {verdict} the 0.9 target")
print(f"(c)/(b') req/s: {c / b2:.2f} (same client)")
EOF
