#!/usr/bin/env bash
# Soak test (issue 12): the demo (examples/demo.rs, release build) on SQLite, with its database
# file in a fresh directory under /var/tmp (on disk), under a mixed load for SOAK_SECONDS
# (default 600), while its memory and open files are sampled every SOAK_SAMPLE seconds (10).
#
# Five load generators run at once over loopback, HTTP/1.1 keep-alive, SOAK_CONNECTIONS (2)
# connections each:
#   issue       oha: POST /oauth2/token grant_type=client_credentials, closed loop
#   refresh     load_client refresh: rotation chains, one per connection (first tokens from the
#               password grant), closed loop
#   introspect  oha: POST /oauth2/introspect with one valid access token, closed loop
#   revoke      load_client revoke-mix: issue an access token, revoke it, pause
#               SOAK_REVOKE_PAUSE_MS (100) ms per connection: at most about
#               SOAK_CONNECTIONS x 1000 / SOAK_REVOKE_PAUSE_MS revocations a second
#   validate    load_client: GET /me with 1,000 distinct access tokens issued at the start,
#               cycled through, closed loop
# Access tokens live SOAK_TOKEN_LIFETIME seconds (default 120, the demo's
# DEMO_ACCESS_TOKEN_LIFETIME), so that what the server keeps per live token reaches its steady
# state within the run: each revoked access token stays in the in-memory denylist until it
# expires and the next prune (every 60 s) drops it, and each validated token stays in the
# token cache until it expires. The introspected and validated tokens are renewed every half
# lifetime (one short gap in those two generators). What else fills and levels off: SQLite's
# page cache, up to 2 MiB (SQLite's default) for each of the store's connections (8 readers, 1
# writer), filling as the database grows. The summary prints how many revocations there were,
# and the RSS trend (least squares, kB/min) of the first and last thirds.
#
# Every SOAK_SAMPLE seconds it prints a row: elapsed seconds, the demo's VmRSS
# (/proc/PID/status), its open file descriptors (/proc/PID/fd), its threads, and the size of the
# database (file, -wal and -shm). Then the verdict, over the samples after SOAK_WARMUP seconds
# (default: the token lifetime plus 70 s, so that the first tokens have expired and been
# pruned, but at most a third of the run), split in thirds by time:
#   flat  the last third's largest RSS is at most (100 + SOAK_RSS_TOLERANCE) % (default 110 %)
#         of the first third's largest, and the last third's largest fd count is at most the
#         first third's largest + SOAK_FD_SLACK (default 2: a connection opening at a sample)
# It exits 1 when not flat (or the demo died), 3 when flat but a generator saw non-2xx answers
# or errors, 0 otherwise.
#
# Environment: SOAK_SECONDS, SOAK_SAMPLE, SOAK_WARMUP, SOAK_CONNECTIONS, SOAK_REVOKE_PAUSE_MS,
# SOAK_TOKEN_LIFETIME,
# SOAK_RSS_TOLERANCE, SOAK_FD_SLACK (above); CARGO_TARGET_DIR (default target/). Needs cargo,
# rustc, python3, curl and oha (installed with cargo install oha --locked --root target/tools
# if not found).
set -euo pipefail
shopt -s inherit_errexit

seconds="${SOAK_SECONDS:-600}"
sample="${SOAK_SAMPLE:-10}"
token_lifetime="${SOAK_TOKEN_LIFETIME:-120}"
default_warmup=$((token_lifetime + 70))
warmup="${SOAK_WARMUP:-$((default_warmup < seconds / 3 ? default_warmup : seconds / 3))}"
connections="${SOAK_CONNECTIONS:-2}"
revoke_pause="${SOAK_REVOKE_PAUSE_MS:-100}"
rss_tolerance="${SOAK_RSS_TOLERANCE:-10}"
fd_slack="${SOAK_FD_SLACK:-2}"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
cd "$root"

log() { echo "soak: $*" >&2; }

# shellcheck source=scripts/as_lib.sh
source "$script_dir/as_lib.sh"
for tool in cargo rustc python3 curl; do need "$tool"; done
if ((seconds < 4 * sample)); then
    log "SOAK_SECONDS ($seconds) must be at least 4 x SOAK_SAMPLE ($sample)"
    exit 2
fi

work="$(mktemp -d -p /var/tmp soak.XXXXXX)"
cleanup() {
    local status=$?
    stop_all
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build_demo
build_load_client
find_oha

bench_client_id=soak-client
bench_client_secret="$(random_hex 24)"
bench_user_password="$(random_hex 12)"
bench_basic="Basic $(printf '%s:%s' "$bench_client_id" "$bench_client_secret" | base64 -w0)"
scope_form='&scope=events%3Aread+events%3Awrite'

db="$work/demo.db"
start_demo demo DEMO_DB="$db" DEMO_ACCESS_TOKEN_LIFETIME="${token_lifetime}s"
base="http://$demo_addr"
pid="$demo_pid"

# --- the generators -------------------------------------------------------------------------
# Refresh chains start from the password grant.
: >"$work/seeds.txt"
for _ in $(seq 1 "$connections"); do
    answer="$(post_form "$base/oauth2/token" \
        "grant_type=password&username=demo&password=$bench_user_password$scope_form")"
    [[ "${answer##*$'\n'}" == 200 ]] || { log "password grant: $answer"; exit 1; }
    json_field refresh_token <<<"${answer%$'\n'*}" >>"$work/seeds.txt"
done

generator_pids=()
chunk=$((token_lifetime / 2 > 0 ? token_lifetime / 2 : 1))
oha_run() { # NAME SECONDS URL FORM
    "$oha" --no-tui --output-format json -z "$2s" -c "$connections" -m POST \
        -H "Authorization: $bench_basic" -T application/x-www-form-urlencoded -d "$4" "$3" \
        >>"$work/$1.json"
    echo >>"$work/$1.json"
}

oha_run issue "$seconds" "$base/oauth2/token" "grant_type=client_credentials$scope_form" \
    2>>"$work/issue.err" &
generator_pids+=("$!")
"$client" refresh "$demo_addr" /oauth2/token "$seconds" "$connections" "$bench_basic" \
    "$work/seeds.txt" >"$work/refresh.txt" 2>>"$work/refresh.err" &
generator_pids+=("$!")
LOAD_CLIENT_PAUSE_MS="$revoke_pause" "$client" revoke-mix "$demo_addr" /oauth2/token \
    /oauth2/revoke "$seconds" "$connections" "$bench_basic" \
    "grant_type=client_credentials$scope_form" >"$work/revoke.txt" 2>>"$work/revoke.err" &
generator_pids+=("$!")
# Introspection and validation, with tokens renewed every `chunk` seconds.
(
    end=$((SECONDS + seconds))
    while ((SECONDS < end)); do
        left=$((end - SECONDS))
        run=$((left < chunk ? left : chunk))
        issue_tokens "$base" /oauth2/token 1000 "$work/tokens.txt" "$scope_form"
        token="$(head -n 1 "$work/tokens.txt")"
        oha_run introspect "$run" "$base/oauth2/introspect" \
            "token=$token&token_type_hint=access_token" 2>>"$work/introspect.err" &
        "$client" "$demo_addr" /me "$run" "$connections" "$work/tokens.txt" \
            >>"$work/validate.txt" 2>>"$work/validate.err"
        wait
    done
) &
generator_pids+=("$!")

# --- sampling -------------------------------------------------------------------------------
samples="$work/samples.txt"
: >"$samples"
echo
echo "| s | RSS (kB) | fds | threads | DB (kB) |"
echo "|---|---|---|---|---|"
start=$SECONDS
demo_died=0
# The last sample comes before the generators stop (at SOAK_SECONDS).
while ((SECONDS - start + sample < seconds)); do
    sleep "$sample" &
    wait "$!" # interruptible, unlike a foreground sleep
    if ! kill -0 "$pid" 2>/dev/null; then
        log "the demo (pid $pid) died; its output:"
        tail -n 30 "$work/demo.out" "$work/demo.err" >&2 || true
        demo_died=1
        break
    fi
    t=$((SECONDS - start))
    rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"
    threads="$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")"
    fds="$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
    dbkb="$(du -ck "$db" "$db-wal" "$db-shm" 2>/dev/null | awk 'END {print $1}')"
    echo "$t $rss $fds $threads $dbkb" >>"$samples"
    echo "| $t | $rss | $fds | $threads | $dbkb |"
done

log "waiting for the load generators to finish"
for p in "${generator_pids[@]}"; do
    wait "$p" || log "a load generator exited with status $?"
done
generator_pids=()

# --- summary --------------------------------------------------------------------------------
echo
for name in issue refresh introspect revoke validate; do
    [[ -s "$work/$name.err" ]] && { log "$name wrote to stderr:"; head -n 5 "$work/$name.err" >&2; }
done
# The demo logs at warn: anything it said explains a failure the load saw.
if grep -qhE "WARN|ERROR" "$work/demo.out" "$work/demo.err" 2>/dev/null; then
    log "the demo logged (the last 10 warnings and errors):"
    grep -hE "WARN|ERROR" "$work/demo.out" "$work/demo.err" | tail -n 10 >&2
fi
set +e
python3 - "$work" "$samples" "$warmup" "$rss_tolerance" "$fd_slack" "$demo_died" <<'EOF'
import json, os, sys
work, samples_path, warmup, tolerance, slack, died = sys.argv[1:7]
warmup, tolerance, slack, died = int(warmup), float(tolerance), int(slack), int(died)

errors = []
def oha(name):
    ok = bad = err = 0
    total = 0.0
    path = os.path.join(work, f"{name}.json")
    text = open(path).read() if os.path.exists(path) else ""
    decoder, at = json.JSONDecoder(), 0
    while True:  # one JSON document per oha run
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            break
        r, at = decoder.raw_decode(text, at)
        codes = {int(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
        ok += sum(v for k, v in codes.items() if 200 <= k < 300)
        bad += sum(v for k, v in codes.items() if not 200 <= k < 300)
        # oha counts the requests it cut off at the end of a run (-z) as errors: not failures.
        err += sum(v for k, v in r.get("errorDistribution", {}).items() if "aborted due to deadline" not in k)
        total += r["summary"]["total"]
    return ok, bad, err, total, ""

def client(name):
    ok = bad = err = 0
    total = 0.0
    extra = []
    path = os.path.join(work, f"{name}.txt")
    for line in open(path) if os.path.exists(path) else []:
        r = dict(kv.split("=", 1) for kv in line.split())
        answered = int(r["requests"])
        bad += int(r["non_2xx"])
        ok += int(r.get("ok", answered - int(r["non_2xx"])))
        err += int(r["errors"]) + int(r.get("broken", 0))
        total += float(r["seconds"])
        if "revoked" in r:
            extra.append(f"{r['revoked']} revocations")
        if int(r.get("broken", 0)):
            extra.append(f"{r['broken']} broken chains")
    return ok, bad, err, total, ", ".join(extra)

print("| generator | 2xx | 2xx/s | non-2xx | errors | |")
print("|---|---|---|---|---|---|")
for name, read in [("issue", oha), ("refresh", client), ("introspect", oha), ("revoke", client), ("validate", client)]:
    ok, bad, err, total, extra = read(name)
    if not total:
        errors.append(f"{name}: no result")
    if bad or err:
        errors.append(f"{name}: {bad} non-2xx, {err} errors")
    print(f"| {name} | {ok} | {ok / total if total else 0:.0f} | {bad} | {err} | {extra} |")
print()

rows = [tuple(int(x) for x in l.split()) for l in open(samples_path) if l.strip()]
after = [r for r in rows if r[0] >= warmup]
if died:
    print("verdict: NOT FLAT: the demo died")
    sys.exit(1)
if len(after) < 3:
    print(f"verdict: too few samples after the {warmup} s warm-up ({len(after)}): run longer")
    sys.exit(1)
t0, t1 = after[0][0], after[-1][0]
span = (t1 - t0) / 3
first = [r for r in after if r[0] <= t0 + span] or after[:1]
last = [r for r in after if r[0] >= t1 - span] or after[-1:]
rss_first, rss_last = max(r[1] for r in first), max(r[1] for r in last)
fd_first, fd_last = max(r[2] for r in first), max(r[2] for r in last)
rss_ok = rss_last <= rss_first * (1 + tolerance / 100)
fd_ok = fd_last <= fd_first + slack
print(f"samples after the {warmup} s warm-up: {len(after)} (t = {t0}..{t1} s); "
      f"first third t <= {t0 + span:.0f} s ({len(first)} samples), last third t >= {t1 - span:.0f} s ({len(last)})")
print(f"RSS: first third max {rss_first} kB, last third max {rss_last} kB "
      f"({(rss_last / rss_first - 1) * 100:+.1f} %, tolerance +{tolerance:g} %): {'ok' if rss_ok else 'GROWS'}")
print(f"fds: first third max {fd_first}, last third max {fd_last} (slack {slack}): {'ok' if fd_ok else 'GROW'}")
print(f"RSS overall: min {min(r[1] for r in rows)} kB, max {max(r[1] for r in rows)} kB; "
      f"DB at the end {rows[-1][4]} kB")
def slope(part):  # least-squares RSS growth, kB per minute
    if len(part) < 2:
        return float("nan")
    mt = sum(r[0] for r in part) / len(part)
    mr = sum(r[1] for r in part) / len(part)
    den = sum((r[0] - mt) ** 2 for r in part)
    return 60 * sum((r[0] - mt) * (r[1] - mr) for r in part) / den if den else float("nan")
print(f"RSS trend (least squares): first third {slope(first):+.0f} kB/min, "
      f"last third {slope(last):+.0f} kB/min")
if not (rss_ok and fd_ok):
    print("verdict: NOT FLAT")
    sys.exit(1)
if errors:
    print("verdict: flat, but the load saw failures: " + "; ".join(errors))
    sys.exit(3)
print("verdict: FLAT")
EOF
status=$?
set -e
exit "$status"
