# Sourced by scripts/as_bench.sh and scripts/soak.sh: tools, builds and starting the demo.
# Expects `root` (the repository), `script_dir` (its scripts/) and `work` (a scratch directory the
# caller removes on exit) to be set, the current directory to be `root`, and a function
# `log MESSAGE...`. Every process started here is recorded in the array `started_pids`, which
# the caller's cleanup stops.

started_pids=()

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$root/$target_dir" ;;
esac
tools="$root/target/tools"

need() { # TOOL [HOW TO GET IT]
    if ! command -v "$1" >/dev/null 2>&1; then
        log "$1 is not installed${2:+ ($2)}"
        exit 1
    fi
}

# Builds the demo in release mode with both stores; sets `demo_bin`.
build_demo() {
    log "cargo build --release --example demo --features sqlite,console,postgres"
    cargo build --release --example demo --features sqlite,console,postgres
    demo_bin="$target_dir/release/examples/demo"
    [[ -x "$demo_bin" ]] || { log "built, but $demo_bin is not there"; exit 1; }
}

# scripts/load_client.rs with rustc -O, as scripts/load.sh builds it; sets `client`.
build_load_client() {
    client="$tools/bin/load_client"
    mkdir -p "$tools/bin"
    if [[ ! -x "$client" || "$script_dir/load_client.rs" -nt "$client" ]]; then
        log "rustc --edition 2024 -O scripts/load_client.rs -o $client"
        rustc --edition 2024 -O "$script_dir/load_client.rs" -o "$client"
    fi
}

# oha from PATH, ~/.cargo/bin or target/tools, else `cargo install oha --locked --root
# target/tools` (a few minutes, once); sets `oha`.
find_oha() {
    if command -v oha >/dev/null 2>&1; then
        oha="$(command -v oha)"
    elif [[ -x "$HOME/.cargo/bin/oha" ]]; then
        oha="$HOME/.cargo/bin/oha"
    elif [[ -x "$tools/bin/oha" ]]; then
        oha="$tools/bin/oha"
    else
        log "installing oha: cargo install oha --locked --root target/tools (a few minutes, once)"
        cargo install oha --locked --root "$tools"
        oha="$tools/bin/oha"
    fi
    log "oha: $oha ($("$oha" --version 2>/dev/null | head -n 1))"
}

# Waits until LOGFILE has a line matching REGEX while PID lives; prints the first match. On exit
# of the process or after TIMEOUT seconds, prints the log and fails.
wait_for_line() { # NAME PID LOGFILE REGEX TIMEOUT [ERRFILE]
    local name="$1" pid="$2" file="$3" regex="$4" timeout="$5" errfile="${6:-}"
    local tries=$((timeout * 10))
    for _ in $(seq 1 "$tries"); do
        if grep -Eq "$regex" "$file" 2>/dev/null; then
            grep -Em1 "$regex" "$file"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited before it was ready; its output:"
            cat "$file" ${errfile:+"$errfile"} >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    log "$name was not ready after ${timeout}s; its output:"
    cat "$file" ${errfile:+"$errfile"} >&2 || true
    exit 1
}

# Polls URL until it answers 200 (TIMEOUT seconds), or fails with the log.
wait_for_http() { # NAME PID URL TIMEOUT LOGFILE...
    local name="$1" pid="$2" url="$3" timeout="$4"
    shift 4
    for _ in $(seq 1 $((timeout * 10))); do
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" == 200 ]]; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    log "$name does not answer 200 at $url; its output:"
    cat "$@" >&2 || true
    exit 1
}

# Starts the demo on a free loopback port with the given extra environment (KEY=VALUE...),
# client `$bench_client_id` / `$bench_client_secret`, user password `$bench_user_password`,
# RUST_LOG=warn; waits until it serves its metadata. Sets `demo_pid` and `demo_addr`
# (host:port); its stdout and stderr go to $work/NAME.out and .err.
start_demo() { # NAME [KEY=VALUE...]
    local name="$1"
    shift
    env BIND=127.0.0.1:0 RUST_LOG=warn DEMO_CLIENT_ID="$bench_client_id" \
        DEMO_CLIENT_SECRET="$bench_client_secret" DEMO_USER_PASSWORD="$bench_user_password" \
        "$@" "$demo_bin" >"$work/$name.out" 2>"$work/$name.err" &
    demo_pid=$!
    started_pids+=("$demo_pid")
    local line
    line="$(wait_for_line "$name" "$demo_pid" "$work/$name.out" '^  listening +http://' 60 \
        "$work/$name.err")"
    demo_addr="$(sed -E 's|^  listening +http://([^ ]+).*|\1|' <<<"$line")"
    wait_for_http "$name" "$demo_pid" \
        "http://$demo_addr/.well-known/oauth-authorization-server" 30 \
        "$work/$name.out" "$work/$name.err"
    log "$name: pid $demo_pid on $demo_addr"
}

# The process ids of PID's descendants, children after their own descendants.
descendants() { # PID
    local child
    for child in $(pgrep -P "$1" 2>/dev/null || true); do
        descendants "$child"
        echo "$child"
    done
}

# Sends SIGTERM to every descendant of this shell (load generators left running by an
# interrupted run), then stops the processes in started_pids (SIGTERM, then SIGKILL after 5 s).
stop_all() {
    local pid
    for pid in $(descendants $$); do
        kill "$pid" 2>/dev/null || true
    done
    stop_started
}

# Stops the processes in started_pids (SIGTERM, then SIGKILL after 5 s).
stop_started() {
    local pid
    for pid in "${started_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${started_pids[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    started_pids=()
}

# A random hex string of N bytes.
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# Prints the JSON field NAME of the JSON document on stdin ("" when missing).
json_field() { python3 -c 'import json, sys
try:
    print(json.load(sys.stdin).get(sys.argv[1], ""))
except ValueError:
    print("")' "$1"; }

# POSTs a form with the bench client's Basic credentials; prints the body, then a last line
# with the status.
post_form() { # URL FORM
    curl -s -w '\n%{http_code}' -H "Authorization: $bench_basic" \
        -H 'Content-Type: application/x-www-form-urlencoded' --data-raw "$2" "$1"
}

# N access tokens from the client_credentials grant at BASE_URL+PATH, one a line, into FILE
# (one keep-alive connection; python3's standard library).
issue_tokens() { # BASE_URL PATH N FILE [EXTRA_FORM]
    python3 - "$1" "$2" "$3" "$4" "$bench_basic" "${5:-}" <<'PY'
import http.client, json, sys, urllib.parse
base, path, n, out, auth, extra = sys.argv[1:7]
url = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
body = "grant_type=client_credentials" + extra
headers = {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"}
with open(out, "w") as f:
    for _ in range(int(n)):
        conn.request("POST", path, body, headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            sys.exit(f"client_credentials answered {r.status}: {data[:300]!r}")
        f.write(json.loads(data)["access_token"] + "\n")
PY
}
