#!/usr/bin/env bash
# Authorization-server throughput (issue 12): the demo (examples/demo.rs, release build) on
# SQLite and on PostgreSQL against npm oidc-provider 9 (scripts/oidc-provider/as_bench.mjs), all on
# loopback, HTTP/1.1 keep-alive, closed loop, CONNECTIONS connections each.
#
# Targets, each with one confidential client (client_secret_basic, the same Basic header):
#   demo-sqlite  DEMO_DB in a fresh directory under /var/tmp (on disk, not tmpfs)
#   demo-pg      DEMO_DATABASE_URL: a database created for the run on the PostgreSQL server at
#                AS_BENCH_POSTGRES_URL and dropped at the end
#   oidc-provider  ES256 JWT access tokens (resource indicators, accessTokenFormat 'jwt'),
#                refresh tokens rotated on every use, introspection and revocation on; its
#                default in-memory adapter (no persistence)
#
# Scenarios:
#   (a) client_credentials  POST /token grant_type=client_credentials, scope events:read
#                           events:write: a new ES256 JWT per request. oha.
#   (b) refresh_token       rotation chains: each connection holds its own refresh token, sends
#                           it and takes the new one from the answer (load_client refresh). The
#                           demo's first tokens come from its password grant, oidc-provider's from
#                           its /bench/seed (it hands them out only after an interactive login).
#   (c) introspection       POST introspection, token=<one valid access token>, the same on
#                           every request. oha.
#   (d) revocation mix      each connection: issue an access token (client_credentials), revoke
#                           it, repeat (load_client revoke-mix); both answers count.
# oidc-provider refuses to introspect or revoke JWT access tokens (400 unsupported_token_type),
# so in (c) and (d) it issues opaque access tokens (resource urn:events-api:opaque); the demo's
# are its JWTs. The table marks those rows.
#
# Rounds: ROUNDS times, every scenario on every target, the targets' order rotated each round,
# so a change in what else the machine does lands on all of them. Per scenario and target it
# prints the median round (by tokens/s): tokens/s = 2xx answers per second of the run, p50/p99 of
# every answered request's latency as the client measured it, non-2xx and connection errors
# summed over the rounds; and demo/oidc-provider tokens/s ratios: per round, then the median.
# A row with any non-2xx answer or error is flagged, and the script then exits 3 (after
# printing everything).
#
# Environment:
#   ROUNDS                 rounds (default 3)
#   DURATION               seconds per run (default 10)
#   CONNECTIONS            connections per run (default 16)
#   AS_BENCH_POSTGRES_URL  a PostgreSQL server, as a URL of any database on it that the user may
#                          connect to (default postgres://postgres@127.0.0.1:5432/postgres); the
#                          run creates database as_bench_<pid> there and drops it at the end
#   AS_BENCH_SKIP_POSTGRES set to 1 to leave demo-pg out
#   CARGO_TARGET_DIR       where cargo puts the build (default: target/ in the repository)
# Needs cargo, rustc, node (>= 20.19) and npm, python3, curl, psql (Debian postgresql-client),
# and oha (installed with cargo install oha --locked --root target/tools if not found).
set -euo pipefail
shopt -s inherit_errexit

rounds="${ROUNDS:-3}"
duration="${DURATION:-10}"
connections="${CONNECTIONS:-16}"
pg_url="${AS_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
skip_pg="${AS_BENCH_SKIP_POSTGRES:-0}"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
provider_dir="$script_dir/oidc-provider"
cd "$root"

log() { echo "as_bench: $*" >&2; }

# shellcheck source=scripts/as_lib.sh
source "$script_dir/as_lib.sh"
for tool in cargo rustc node npm python3 curl; do need "$tool"; done
if [[ "$skip_pg" != 1 ]]; then
    need psql "apt-get install postgresql-client, or set AS_BENCH_SKIP_POSTGRES=1"
fi

# On disk (not tmpfs): the demo's SQLite database is in here.
work="$(mktemp -d -p /var/tmp as_bench.XXXXXX)"
pg_db=""

cleanup() {
    local status=$?
    stop_all
    if [[ "$status" != 0 && "$status" != 3 && "$status" != 130 && "$status" != 143 ]]; then
        # What the targets logged (the demos log warnings and errors on stdout).
        for f in "$work"/demo-*.out "$work"/demo-*.err "$work"/oidc-provider.err; do
            [[ -s "$f" ]] || continue
            log "--- $f (warnings, errors and the last lines)"
            { grep -E ' (WARN|ERROR) |rror' "$f" | head -n 20; tail -n 5 "$f"; } >&2 || true
        done
    fi
    if [[ -n "$pg_db" ]]; then
        psql -q -X -d "$pg_url" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 ||
            log "could not drop database $pg_db"
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- oidc-provider: npm ci, shared with scripts/interop_oidc_provider.sh ----------------------
pinned="$(node -p 'require(process.argv[1]).dependencies["oidc-provider"]' "$provider_dir/package.json")"
installed="$(node -p 'require(process.argv[1]).version' \
    "$provider_dir/node_modules/oidc-provider/package.json" 2>/dev/null || true)"
stamp="$provider_dir/node_modules/.interop-package-lock.sha256"
lock_sum="$(sha256sum "$provider_dir/package-lock.json" | cut -d' ' -f1)"
if [[ "$installed" == "$pinned" && -f "$stamp" && "$(cat "$stamp")" == "$lock_sum" ]]; then
    log "reusing $provider_dir/node_modules (oidc-provider $installed)"
else
    log "npm ci in $provider_dir (oidc-provider $pinned)"
    (cd "$provider_dir" && npm ci --no-audit --no-fund >&2)
    installed="$(node -p 'require(process.argv[1]).version' \
        "$provider_dir/node_modules/oidc-provider/package.json")"
    [[ "$installed" == "$pinned" ]] || { log "npm ci installed oidc-provider $installed, not $pinned"; exit 1; }
    echo "$lock_sum" >"$stamp"
fi

# --- builds and tools -------------------------------------------------------------------------
build_demo
build_load_client
find_oha

bench_client_id=bench-client
bench_client_secret="$(random_hex 24)" # hex: the same form-encoded, as Basic wants
bench_user_password="$(random_hex 12)"
bench_basic="Basic $(printf '%s:%s' "$bench_client_id" "$bench_client_secret" | base64 -w0)"
scope_form='scope=events%3Aread+events%3Awrite'

# --- targets ----------------------------------------------------------------------------------
targets=(demo-sqlite)
declare -A base token_path introspect_path revoke_path at_extra
start_demo demo-sqlite DEMO_DB="$work/demo.db"
base[demo-sqlite]="http://$demo_addr"

if [[ "$skip_pg" != 1 ]]; then
    pg_db="as_bench_$$"
    psql -q -X -v ON_ERROR_STOP=1 -d "$pg_url" -c "CREATE DATABASE $pg_db" >/dev/null ||
        { log "cannot create database $pg_db at $pg_url"; pg_db=""; exit 1; }
    # The same server, database $pg_db: replace the URL's path.
    pg_bench_url="$(python3 -c 'import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$pg_url" "$pg_db")"
    start_demo demo-pg DEMO_DATABASE_URL="$pg_bench_url"
    base[demo-pg]="http://$demo_addr"
    targets+=(demo-pg)
fi

node "$provider_dir/as_bench.mjs" --client-id "$bench_client_id" \
    --client-secret "$bench_client_secret" >"$work/oidc-provider.out" 2>"$work/oidc-provider.err" &
started_pids+=("$!")
ready="$(wait_for_line oidc-provider "$!" "$work/oidc-provider.out" '^READY ' 60 "$work/oidc-provider.err")"
base[oidc-provider]="$(json_field issuer <<<"${ready#READY }")"
targets+=(oidc-provider)
log "oidc-provider: on ${base[oidc-provider]}"

for t in "${targets[@]}"; do
    if [[ "$t" == oidc-provider ]]; then
        token_path[$t]=/token
        introspect_path[$t]=/token/introspection
        revoke_path[$t]=/token/revocation
        at_extra[$t]='&resource=urn%3Aevents-api%3Aopaque' # introspectable, revocable
    else
        token_path[$t]=/oauth2/token
        introspect_path[$t]=/oauth2/introspect
        revoke_path[$t]=/oauth2/revoke
        at_extra[$t]=''
    fi
done

# --- helpers ----------------------------------------------------------------------------------
# An access token for introspection / revocation: FORM extra per target.
# Set-up requests outside the timed runs (an access token for (c), the refresh tokens for (b)):
# a non-200 answer is logged, recorded in $work/setup_failures.txt (the report flags it) and
# retried, up to 5 times, 1 s apart. Prints the body of the 200 answer.
setup_post() { # TARGET WHAT URL FORM
    local answer status
    for attempt in 1 2 3 4 5; do
        answer="$(post_form "$3" "$4")"
        status="${answer##*$'\n'}"
        if [[ "$status" == 200 ]]; then
            printf '%s\n' "${answer%$'\n'*}"
            return 0
        fi
        log "$1: set-up $2 answered $status (attempt $attempt): ${answer%$'\n'*}"
        echo "$1 $2 $status" >>"$work/setup_failures.txt"
        sleep 1
    done
    log "$1: set-up $2 failed 5 times"
    exit 1
}

access_token() { # TARGET [EXTRA_FORM]
    setup_post "$1" client_credentials "${base[$1]}${token_path[$1]}" \
        "grant_type=client_credentials&$scope_form${2:-}" | json_field access_token
}

# N refresh tokens, one a line, into FILE.
refresh_seeds() { # TARGET N FILE
    local t="$1" n="$2" file="$3" answer status
    : >"$file"
    if [[ "$t" == oidc-provider ]]; then
        curl -sf -X POST "${base[$t]}/bench/seed?n=$n" >"$file" ||
            { log "oidc-provider: /bench/seed failed"; cat "$work/oidc-provider.err" >&2; exit 1; }
    else
        for _ in $(seq 1 "$n"); do
            setup_post "$t" password-grant "${base[$t]}${token_path[$t]}" \
                "grant_type=password&username=demo&password=$bench_user_password&$scope_form" |
                json_field refresh_token >>"$file"
        done
    fi
    [[ "$(grep -c . "$file")" -ge "$n" ]] || { log "$t: fewer than $n refresh tokens"; exit 1; }
}

# --- sanity: every target does every scenario once, by hand ----------------------------------
for t in "${targets[@]}"; do
    jwt="$(access_token "$t")"
    alg="$(python3 -c 'import base64, json, sys
h = sys.argv[1].split(".")[0]
print(json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4))).get("alg"))' "$jwt" 2>/dev/null || true)"
    [[ "$alg" == ES256 ]] || { log "$t: the access token is not an ES256 JWT: $jwt"; exit 1; }
    at="$(access_token "$t" "${at_extra[$t]}")"
    answer="$(post_form "${base[$t]}${introspect_path[$t]}" "token=$at&token_type_hint=access_token")"
    [[ "${answer##*$'\n'}" == 200 && "$answer" == *'"active":true'* ]] ||
        { log "$t: introspection of a fresh token: $answer"; exit 1; }
    answer="$(post_form "${base[$t]}${revoke_path[$t]}" "token=$at&token_type_hint=access_token")"
    [[ "${answer##*$'\n'}" == 200 ]] || { log "$t: revocation: $answer"; exit 1; }
    answer="$(post_form "${base[$t]}${introspect_path[$t]}" "token=$at&token_type_hint=access_token")"
    [[ "$answer" == *'"active":false'* ]] || { log "$t: a revoked token is still active: $answer"; exit 1; }
    refresh_seeds "$t" 1 "$work/seed.txt"
    old="$(head -n 1 "$work/seed.txt")"
    answer="$(post_form "${base[$t]}${token_path[$t]}" "grant_type=refresh_token&refresh_token=$old")"
    new="$(json_field refresh_token <<<"${answer%$'\n'*}")"
    [[ "${answer##*$'\n'}" == 200 && -n "$new" && "$new" != "$old" ]] ||
        { log "$t: refresh did not rotate: $answer"; exit 1; }
    log "$t: sanity checks passed (ES256 JWT, introspection, revocation, refresh rotation)"
done

# --- runners: each prints "ok_rps p50_ms p99_ms non_2xx errors" -------------------------------
run_oha() { # URL FORM
    "$oha" --no-tui --output-format json -z "${duration}s" -c "$connections" -m POST \
        -H "Authorization: $bench_basic" -T application/x-www-form-urlencoded -d "$2" "$1" \
        >"$work/oha.json"
    python3 - "$work/oha.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
codes = {int(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
ok = sum(v for k, v in codes.items() if 200 <= k < 300)
non_2xx = sum(v for k, v in codes.items() if not 200 <= k < 300)
# oha counts the requests it cut off at the end of the run (-z) as errors: not failures.
errors = {k: v for k, v in r.get("errorDistribution", {}).items() if "aborted due to deadline" not in k}
if non_2xx or errors:
    print(f"oha: status codes {codes}, errors {errors}", file=sys.stderr)
p = r["latencyPercentiles"]
ms = lambda v: float("nan") if v is None else v * 1000
print(f'{ok / r["summary"]["total"]:.0f} {ms(p["p50"]):.3f} {ms(p["p99"]):.3f} {non_2xx} {sum(errors.values())}')
EOF
}

parse_client() { # LINE
    python3 - "$1" <<'EOF'
import sys
r = dict(kv.split("=", 1) for kv in sys.argv[1].split())
errors = int(r["errors"]) + int(r.get("broken", 0))
print(r["ok_rps"], r["p50_ms"], r["p99_ms"], r["non_2xx"], errors)
EOF
}

run_refresh() { # TARGET
    local out
    refresh_seeds "$1" "$connections" "$work/seeds.txt"
    out="$("$client" refresh "${base[$1]#http://}" "${token_path[$1]}" "$duration" "$connections" \
        "$bench_basic" "$work/seeds.txt")"
    log "  load_client: $out"
    parse_client "$out"
}

run_revoke_mix() { # TARGET
    local out
    out="$("$client" revoke-mix "${base[$1]#http://}" "${token_path[$1]}" "${revoke_path[$1]}" \
        "$duration" "$connections" "$bench_basic" \
        "grant_type=client_credentials&$scope_form${at_extra[$1]}")"
    log "  load_client: $out"
    parse_client "$out"
}

run() { # SCENARIO TARGET
    local s="$1" t="$2" token
    case "$s" in
        a) run_oha "${base[$t]}${token_path[$t]}" "grant_type=client_credentials&$scope_form" ;;
        b) run_refresh "$t" ;;
        c)
            token="$(access_token "$t" "${at_extra[$t]}")"
            run_oha "${base[$t]}${introspect_path[$t]}" "token=$token&token_type_hint=access_token"
            ;;
        d) run_revoke_mix "$t" ;;
    esac
}

# --- rounds -----------------------------------------------------------------------------------
results="$work/results.txt"
: >"$results"
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with uncommitted changes)' || true)"
started_at="$(date -u +%Y-%m-%dT%H:%MZ)"
n=${#targets[@]}
for round in $(seq 1 "$rounds"); do
    # Rotate the order: round 1 demo-sqlite first, round 2 the next one first, ...
    order=()
    for i in $(seq 0 $((n - 1))); do order+=("${targets[$(((i + round - 1) % n))]}"); done
    for s in a b c d; do
        for t in "${order[@]}"; do
            log "round $round/$rounds, ($s), $t: ${duration}s, $connections connections"
            # In the background, so that a signal is handled at once, not after the run.
            run "$s" "$t" >"$work/line.txt" &
            wait "$!"
            line="$(cat "$work/line.txt")"
            log "  -> tokens/s p50_ms p99_ms non_2xx errors: $line"
            echo "$s $t $round $line" >>"$results"
            sleep 1
        done
    done
done

# Warnings and errors the targets logged (the demos: RUST_LOG=warn, on stdout), for the record.
for t in "${targets[@]}"; do
    pattern='^server_error|^seed:|Error'
    [[ "$t" == oidc-provider ]] || pattern=' (WARN|ERROR) '
    count="$(cat "$work/$t.out" "$work/$t.err" | grep -Ec "$pattern" || true)"
    if [[ "$count" != 0 ]]; then
        log "$t logged $count warnings or errors; the first ones:"
        cat "$work/$t.out" "$work/$t.err" | grep -E "$pattern" | head -n 5 >&2
    fi
done

# --- report -----------------------------------------------------------------------------------
echo
echo "as_bench: demo (release) on SQLite (file on disk) and PostgreSQL vs oidc-provider" \
    "$installed; commit $commit$dirty; $rounds rounds, ${duration} s per run, $connections" \
    "connections, keep-alive, closed loop; $(nproc) CPUs; $started_at"
echo
set +e
touch "$work/setup_failures.txt"
python3 - "$results" "$work/setup_failures.txt" "${targets[@]}" <<'EOF'
import statistics, sys
from collections import defaultdict

path, setup_path, targets = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = defaultdict(dict)  # (scenario, target) -> round -> (rps, p50, p99, non_2xx, errors)
for line in open(path):
    s, t, rnd, rps, p50, p99, bad, err = line.split()
    runs[(s, t)][int(rnd)] = (float(rps), float(p50), float(p99), int(bad), int(err))

names = {
    "a": "(a) client_credentials",
    "b": "(b) refresh_token rotation",
    "c": "(c) introspection",
    "d": "(d) revocation mix",
}
drivers = {"a": "oha", "b": "load_client", "c": "oha", "d": "load_client"}
flagged = []
print("| scenario | target | driver | tokens/s | p50 (ms) | p99 (ms) | non-2xx | errors | tokens/s per round |")
print("|---|---|---|---|---|---|---|---|---|")
for s in "abcd":
    for t in targets:
        rounds = runs[(s, t)]
        if not rounds:
            continue
        ordered = sorted(rounds.values(), key=lambda r: r[0])
        mid = ordered[(len(ordered) - 1) // 2]  # the median round (the lower one for even counts)
        bad = sum(r[3] for r in rounds.values())
        err = sum(r[4] for r in rounds.values())
        label = t
        if t == "oidc-provider" and s in "cd":
            label += " (opaque AT)"
        flag = ""
        if bad or err:
            flag = " **ERRORS**"
            flagged.append(f"{names[s]} on {t}: {bad} non-2xx, {err} errors")
        per_round = ", ".join(f"{rounds[k][0]:.0f}" for k in sorted(rounds))
        print(f"| {names[s]}{flag} | {label} | {drivers[s]} | {mid[0]:.0f} | {mid[1]:.3f} | "
              f"{mid[2]:.3f} | {bad} | {err} | {per_round} |")
print()
if "oidc-provider" in targets:
    demos = [t for t in targets if t != "oidc-provider"]
    print("| scenario | " + " | ".join(f"{t} / oidc-provider" for t in demos) + " |")
    print("|---|" + "---|" * len(demos))
    for s in "abcd":
        cells = []
        for t in demos:
            ratios = [
                runs[(s, t)][k][0] / runs[(s, "oidc-provider")][k][0]
                for k in sorted(runs[(s, t)])
                if k in runs[(s, "oidc-provider")] and runs[(s, "oidc-provider")][k][0] > 0
            ]
            cells.append(
                f"{statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)})"
                if ratios else "n/a"
            )
        print(f"| {names[s]} | " + " | ".join(cells) + " |")
    print()
    print("Ratios: demo tokens/s over oidc-provider tokens/s in the same round; the median over "
          "rounds, the rounds' ratios in brackets.")
setup = defaultdict(int)
for line in open(setup_path):
    t, what, status = line.split()
    setup[(t, what, status)] += 1
for (t, what, status), count in sorted(setup.items()):
    flagged.append(f"set-up (outside the timed runs) on {t}: {what} answered {status} {count} time(s), retried")
if flagged:
    print()
    print("FLAGGED (non-2xx answers or errors; those rows' tokens/s count 2xx answers only):")
    for f in flagged:
        print(f"  - {f}")
    sys.exit(3)
EOF
status=$?
set -e
exit "$status"
