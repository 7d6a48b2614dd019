#!/usr/bin/env bash
# bench/gateway.sh: sluice gateway side by side with nginx, HAProxy and Varnish.
#
# One shared upstream (nginx, 1 worker) and the load generator (wrk -t1) share
# CPU1; the proxies of a scenario run side by side on CPU0, one worker each,
# and take turns under load (run 1 of each, then run 2 of each, ...). Keep-alive both
# ways, loopback only. Scenarios:
#   plain   plain proxy (access logs off everywhere); "direct" is wrk straight to the upstream
#   full    sluice's full stack (routes, a limiter that never denies, metrics, access log
#           to a file) next to nginx with the same (locations, limit_req, buffered log)
#   cache   cache hits on /c (max-age=60): nginx proxy_cache, HAProxy cache, Varnish, sluice
#   idle    10,000 idle keep-alive connections: RSS before/after, KiB per connection
#   reload  10 reloads under load per run: non-2xx and socket errors must be zero
#
# Printed per scenario and proxy: req/s, p50, p99, CPU µs per request (utime+stime
# of every process of the proxy, from /proc), peak RSS (VmHWM), errors, and the
# sluice/peer ratios, as medians of --runs runs; then the targets of issue 2 and
# the exact commands. Exits 1 if any proxy answered a non-2xx (wrk's "Non-2xx"
# line) or a scenario could not run. Raw output: bench/out/gateway-<UTC stamp>/.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/gateway.sh [--runs N] [--duration 10s] [--quick] [--connections 64]
                        [--idle-connections 10000] [--reloads 10]
                        [--scenarios plain,full,cache,idle,reload]
                        [--proxies nginx,haproxy,varnish,sluice] [--no-build]
  --runs N             measured runs per scenario and proxy; medians are reported (default 3)
  --duration D         length of one measured wrk run, e.g. 10s or 1m (default 10s)
  --quick              smoke test: 1 run of 3s, 2,000 idle connections, 3 reloads
  --connections C      wrk connections (default 64)
  --idle-connections N connections held open in the idle scenario (default 10000)
  --reloads N          reloads per run in the reload scenario (default 10)
  --scenarios LIST     comma-separated subset of the scenarios
  --proxies LIST       comma-separated subset of the proxies (the direct baseline always runs)
  --no-build           use target/release/sluice as it is
EOF
}

RUNS=3
DURATION=10s
CONNS=64
IDLE_N=10000
RELOADS=10
SCENARIOS=plain,full,cache,idle,reload
PROXIES=nginx,haproxy,varnish,sluice
BUILD=1
QUICK=0
ARGS=("$@")
while (($#)); do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --connections) CONNS=$2; shift 2 ;;
    --idle-connections) IDLE_N=$2; shift 2 ;;
    --reloads) RELOADS=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --proxies) PROXIES=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if ((QUICK)); then
    RUNS=1 DURATION=3s
    [[ " ${ARGS[*]} " == *" --idle-connections "* ]] || IDLE_N=2000
    [[ " ${ARGS[*]} " == *" --reloads "* ]] || RELOADS=3
fi
case $DURATION in
*m) DSEC=$((${DURATION%m} * 60)) ;;
*s) DSEC=${DURATION%s} ;;
*) DSEC=$DURATION; DURATION=${DURATION}s ;;
esac
[[ $DSEC =~ ^[0-9]+$ && $DSEC -ge 1 && $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || {
    echo "bad --duration or --runs" >&2
    exit 2
}
WARM=$((DSEC < 3 ? DSEC : 3))
has() { [[ ",$1," == *",$2,"* ]]; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF=$ROOT/bench/gateway
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN_DIR=$ROOT/bench/out/gateway-$STAMP
STATE=$RUN_DIR/state
# render, wait_http (and the helpers the other gateway scripts share).
# shellcheck source=bench/gateway/common.sh
source "$CONF/common.sh"
RESULTS=$RUN_DIR/results.jsonl
CMDS=$RUN_DIR/commands.txt
mkdir -p "$STATE"
: >"$RESULTS"
: >"$CMDS"
SLUICE=$ROOT/target/release/sluice

# Ports (loopback only): upstream, then one per proxy, then sluice's admin.
UP_PORT=19000
declare -A PORT=([direct]=19000 [nginx]=19081 [haproxy]=19082 [varnish]=19083 [sluice]=19084)
ADMIN_PORT=19085

say() { printf '\n== %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    : >"$RUN_DIR/FAILED" # a file, so failures inside background subshells count too
    note "FAIL: $*"
}
# Record a command line for the report (paths relative to the repository, $RUN for the run's directory).
log_cmd() {
    local c=${*//$RUN_DIR/\$RUN}
    printf '%s\n' "${c//$ROOT\//}" >>"$CMDS"
}
json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
note() { printf '{"note":%s}\n' "$(json_str "$1")" >>"$RESULTS"; }

# ---------------------------------------------------------------- install, build
install_peers() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v varnishd >/dev/null || missing+=(varnish)
    command -v curl >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    ((${#missing[@]})) || return 0
    if ((EUID != 0)); then
        echo "missing: ${missing[*]}; run as root or: apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

build_sluice() {
    has "$PROXIES" sluice || return 0
    if ((BUILD)); then
        say "building sluice (release, nice -n 19)"
        (cd "$ROOT" && nice -n 19 cargo build --release -p sluice)
    fi
    [[ -x $SLUICE ]] || { echo "no $SLUICE; drop --no-build" >&2; exit 1; }
}

# ---------------------------------------------------------------- processes
STARTED=() # session ids (= pids) of everything started here
VARNISH_DIR=""
LAST_PID=""

# start NAME CPU CMD...: run CMD in its own session pinned to CPU; sets LAST_PID.
start() {
    local name=$1 cpu=$2
    shift 2
    log_cmd "taskset -c $cpu $*"
    setsid taskset -c "$cpu" "$@" >"$STATE/$name.log" 2>&1 </dev/null &
    LAST_PID=$!
    STARTED+=("$LAST_PID")
}

# stop PID: TERM its session, wait up to 5 s, then KILL what is left.
stop() {
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [[ -n $(pgrep -s "$pid" 2>/dev/null) ]] || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    for p in $(pgrep -s "$pid" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
    local keep=()
    for p in "${STARTED[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    STARTED=("${keep[@]}")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${STARTED[@]}"; do stop "$pid"; done
    [[ -n $VARNISH_DIR ]] && rm -rf "$VARNISH_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# All processes of a proxy: everything in the session started for it.
procs() { pgrep -s "$1" 2>/dev/null || true; }

# cpu_ticks ROOT: utime+stime of every live process of the proxy, plus the
# root's cutime+cstime (children it has reaped, e.g. workers replaced by a reload).
cpu_ticks() {
    local root=$1 total=0 p line
    for p in $(procs "$root"); do
        line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        # Fields after "(comm) ": state is field 3, so field N is word N-2.
        read -r -a f <<<"${line##*) }"
        total=$((total + f[11] + f[12]))
        [[ $p == "$root" ]] && total=$((total + f[13] + f[14]))
    done
    echo "$total"
}

# mem_kb ROOT FIELD [FILE]: sum of FIELD (VmRSS, VmHWM in status; Pss in
# smaps_rollup) over the proxy's processes, in kB.
mem_kb() {
    local total=0 p v
    for p in $(procs "$1"); do
        v=$(awk -v k="$2:" '$1 == k {print $2}' "/proc/$p/${3:-status}" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

CLK_TCK=$(getconf CLK_TCK)

# steal_ticks: time the hypervisor ran something else while the machine's
# CPUs wanted to run (both CPUs, /proc/stat): a run with much of it is a
# noisy one, whichever proxy it measured.
steal_ticks() { awk '$1 == "cpu" {print $9; exit}' /proc/stat; }

# ---------------------------------------------------------------- upstream, proxies
UP_PID=""
start_upstream() {
    render "$CONF/upstream-nginx.conf" "$STATE/upstream.conf"
    start upstream 1 nginx -p "$STATE/" -e "$STATE/upstream.error.log" -c "$STATE/upstream.conf"
    UP_PID=$LAST_PID
    wait_http "http://127.0.0.1:$UP_PORT/" || { echo "upstream did not start" >&2; cat "$STATE/upstream.log" >&2; exit 1; }
    local body
    body=$(curl -s "http://127.0.0.1:$UP_PORT/")
    [[ $body == "hello world" ]] || { echo "upstream answers '$body'" >&2; exit 1; }
}

# start_proxy PROXY SCENARIO: start it on CPU0 with the scenario's config; sets LAST_PID.
start_proxy() {
    local px=$1 sc=$2 conf
    case $px in
    nginx)
        conf=$STATE/nginx-$sc.conf
        case $sc in full) render "$CONF/nginx-full.conf" "$conf" ;;
        cache) render "$CONF/nginx-cache.conf" "$conf" ;;
        *) render "$CONF/nginx-proxy.conf" "$conf" ;; esac
        rm -rf "$STATE/nginx-cache"
        start "nginx-$sc" 0 nginx -p "$STATE/" -e "$STATE/nginx.error.log" -c "$conf"
        ;;
    haproxy)
        conf=$STATE/haproxy-$sc.cfg
        if [[ $sc == cache ]]; then sed 's/^#cache //' "$CONF/haproxy.cfg" >"$conf"; else cp "$CONF/haproxy.cfg" "$conf"; fi
        start "haproxy-$sc" 0 haproxy -W -db -f "$conf"
        ;;
    varnish)
        [[ -n $VARNISH_DIR ]] || VARNISH_DIR=$(mktemp -d /tmp/sluice-bench-varnish.XXXXXX)
        if [[ $sc == cache ]]; then conf=$CONF/varnish-cache.vcl; else conf=$CONF/varnish-pass.vcl; fi
        start "varnish-$sc" 0 varnishd -F -a "127.0.0.1:${PORT[varnish]}" -T 127.0.0.1:0 -f "$conf" \
            -s malloc,64m -p thread_pools=1 -p timeout_idle=120 -n "$VARNISH_DIR/$sc"
        ;;
    sluice)
        conf=$STATE/sluice-$sc.toml
        case $sc in full) render "$CONF/sluice-full.toml" "$conf" ;;
        cache) render "$CONF/sluice-cache.toml" "$conf" ;;
        idle) render "$CONF/sluice-idle.toml" "$conf" ;;
        *) render "$CONF/sluice-proxy.toml" "$conf" ;; esac
        if ! "$SLUICE" gateway check --config "$conf" >"$STATE/sluice-check-$sc.txt" 2>&1; then
            fail "sluice rejects bench/gateway/$(basename "$conf"): $(tr '\n' ' ' <"$STATE/sluice-check-$sc.txt")"
            return 1
        fi
        RUST_LOG=warn start "sluice-$sc" 0 "$SLUICE" gateway --config "$conf"
        ;;
    esac
    if ! wait_http "http://127.0.0.1:${PORT[$px]}/"; then
        fail "$px did not start for $sc (log: $STATE/$px-$sc.log)"
        tail -5 "$STATE/$px-$sc.log" >&2 || true
        stop "$LAST_PID"
        return 1
    fi
}

# ---------------------------------------------------------------- wrk
to_ms() { # wrk latency (e.g. 512.00us, 1.20ms, 2.00s) -> ms
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

# measure SCENARIO PROXY RUN URL PID [SECONDS]: one wrk run; appends a result row.
WRK_OUT=""
measure() {
    local sc=$1 px=$2 run=$3 url=$4 pid=$5 secs=${6:-$DSEC}
    local c0 c1 s0 s1 out file=$RUN_DIR/wrk-$sc-$px-$run.txt
    c0=$(cpu_ticks "$pid")
    s0=$(steal_ticks)
    log_cmd "taskset -c 1 wrk -t1 -c$CONNS -d${secs}s --latency $url"
    out=$(timeout $((secs + 30)) taskset -c 1 wrk -t1 -c"$CONNS" -d"${secs}s" --latency "$url" 2>&1) || true
    c1=$(cpu_ticks "$pid")
    s1=$(steal_ticks)
    printf '%s\n' "$out" >"$file"
    WRK_OUT=$out
    local reqs rps p50 p99 non2xx sock hwm cpu
    reqs=$(awk '/requests in/ {print $1; exit}' <<<"$out")
    rps=$(awk '/^Requests\/sec/ {print $2; exit}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2; exit}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2; exit}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses/ {print $NF; exit}' <<<"$out")
    sock=$(awk '/Socket errors/ {gsub(/,/, ""); print $4 + $6 + $8 + $10; exit}' <<<"$out")
    if [[ -z $reqs || -z $rps || -z $p99 ]]; then
        fail "wrk gave no result for $px/$sc (see $file)"
        return 0
    fi
    non2xx=${non2xx:-0} sock=${sock:-0}
    hwm=$(mem_kb "$pid" VmHWM)
    cpu=$(awk -v d=$((c1 - c0)) -v t="$CLK_TCK" -v r="$reqs" 'BEGIN {printf "%.3f", (r > 0 ? d / t / r * 1e6 : 0)}')
    local steal_ms=$(((s1 - s0) * 1000 / CLK_TCK))
    printf '{"scenario":"%s","proxy":"%s","run":%d,"rps":%s,"p50_ms":%s,"p99_ms":%s,"cpu_us":%s,"hwm_kb":%d,"non2xx":%d,"sock_err":%d,"requests":%d,"steal_ms":%d}\n' \
        "$sc" "$px" "$run" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" "$cpu" "$hwm" "$non2xx" "$sock" "$reqs" "$steal_ms" >>"$RESULTS"
    printf '   %-8s %-7s run %d: %9s req/s  p50 %-9s p99 %-9s %7s µs/req  HWM %6d kB  non-2xx %d  socket errors %d  steal %d ms\n' \
        "$sc" "$px" "$run" "$rps" "$p50" "$p99" "$cpu" "$hwm" "$non2xx" "$sock" "$steal_ms" >&2
    if ((non2xx > 0)); then
        fail "$px answered $non2xx non-2xx responses in $sc run $run: its figures are not valid (see $file)"
    fi
}

warm() { # warm URL: unmeasured load so pools, caches and allocators settle
    timeout $((WARM + 20)) taskset -c 1 wrk -t1 -c"$CONNS" -d"${WARM}s" "$1" >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- scenarios
# load_scenario SCENARIO PATH PROXY...: every proxy of the scenario is started
# (all pinned to CPU0, idle but for the one under load), then the runs take
# turns: run 1 of each proxy, run 2 of each (in a rotated order), and so on. Drift of the machine
# over the scenario (other tenants, thermal, page cache) then falls on every
# proxy alike instead of on whichever ran last.
load_scenario() {
    local sc=$1 path=$2
    shift 2
    local px run code
    local -a live=()
    local -A pid_of=() url_of=()
    for px in "$@"; do
        url_of[$px]="http://127.0.0.1:${PORT[$px]}$path"
        if [[ $px == direct ]]; then
            pid_of[$px]=$UP_PID
        else
            start_proxy "$px" "$sc" || continue
            pid_of[$px]=$LAST_PID
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${url_of[$px]}" || true)
        if [[ $code != 2* ]]; then
            fail "$px answers $code on $path in $sc; skipped"
            [[ $px == direct ]] || stop "${pid_of[$px]}"
            continue
        fi
        [[ $sc == cache ]] && check_cache "$px" "${url_of[$px]}"
        [[ $sc == full && $px == sluice ]] && check_full_stack
        live+=("$px")
    done
    for px in "${live[@]}"; do warm "${url_of[$px]}"; done
    # The order rotates from run to run, so no proxy always follows the
    # same one (Varnish, say, whose threads take a moment to settle), and a
    # second's pause lets the last one's work end before the next run.
    local n=${#live[@]} i
    for ((run = 1; run <= RUNS; run++)); do
        for ((i = 0; i < n; i++)); do
            px=${live[$(((run - 1 + i) % n))]}
            sleep 1
            measure "$sc" "$px" "$run" "${url_of[$px]}" "${pid_of[$px]}"
        done
    done
    for px in "${live[@]}"; do
        [[ $sc == full && $px == sluice ]] && check_full_stack_after
        [[ $px == direct ]] || stop "${pid_of[$px]}"
    done
    return 0
}

# check_cache PROXY URL: after two requests, does the second one say it was a hit?
check_cache() {
    local px=$1 url=$2 h
    curl -s -o /dev/null --max-time 2 "$url" || true
    h=$(curl -s -D - -o /dev/null --max-time 2 "$url" | tr -d '\r')
    printf '%s\n' "$h" >"$RUN_DIR/cache-headers-$px.txt"
    case $px in
    sluice)
        if grep -qi '^cache-status:.*hit' <<<"$h"; then
            note "sluice cache: Cache-Status reports a hit on /c"
        else
            note "sluice cache: 'cache = true' is accepted but the second GET /c has no Cache-Status hit ($(grep -i '^cache-status' <<<"$h" || echo 'no Cache-Status header')): this build does not cache, so its cache figures are a pass-through"
        fi
        ;;
    nginx) grep -qi '^x-cache-status: HIT' <<<"$h" || note "nginx cache: second GET /c was not a HIT" ;;
    varnish) grep -qiE '^x-varnish: [0-9]+ [0-9]+' <<<"$h" || note "varnish cache: second GET /c was not a hit" ;;
    haproxy) grep -qi '^age:' <<<"$h" || note "haproxy cache: second GET /c carries no Age header (maybe not a hit)" ;;
    esac
}

# The full stack's parts are visible from outside: the limiter in /metrics, the log file.
check_full_stack() { :; }
check_full_stack_after() {
    local m lines
    m=$(curl -s --max-time 2 "http://127.0.0.1:$ADMIN_PORT/metrics" || true)
    printf '%s\n' "$m" >"$RUN_DIR/sluice-full-metrics.txt"
    if grep -qiE '^sluice_gateway_(rate_?limit|limiter)[a-z_]*' <<<"$m"; then
        note "sluice full stack: limiter metrics present: $(grep -ciE '^sluice_gateway_(rate_?limit|limiter)' <<<"$m") series"
    else
        note "sluice full stack: 'rate_limit' is accepted but no limiter metric appears in /metrics: this build ignores the key, so the limiter's cost is not in the figures"
    fi
    if grep -q '^sluice_gateway_requests_total' <<<"$m"; then
        note "sluice full stack: metrics recorder on (sluice_gateway_requests_total exported)"
    else
        note "sluice full stack: /metrics has no sluice_gateway_requests_total"
    fi
    lines=$(wc -l <"$STATE/sluice.access.log" 2>/dev/null || echo 0)
    note "sluice full stack: access log file has $lines lines"
}

idle_scenario() {
    local px pid before after pss_before pss_after hwm line opened failed took closed fifo out i
    for px in "$@"; do
        start_proxy "$px" idle || continue
        pid=$LAST_PID
        curl -s -o /dev/null --max-time 2 "http://127.0.0.1:${PORT[$px]}/" || true
        sleep 1
        before=$(mem_kb "$pid" VmRSS)
        pss_before=$(mem_kb "$pid" Pss smaps_rollup)
        fifo=$STATE/idle-$px.fifo out=$RUN_DIR/idle-$px.txt
        rm -f "$fifo"
        mkfifo "$fifo"
        exec 7<>"$fifo"
        log_cmd "taskset -c 1 python3 bench/gateway/idle_conns.py --port ${PORT[$px]} -n $IDLE_N"
        taskset -c 1 python3 "$CONF/idle_conns.py" --port "${PORT[$px]}" -n "$IDLE_N" --hold 180 <"$fifo" >"$out" 2>&1 7>&- &
        local cpid=$!
        line=""
        for ((i = 0; i < 1200; i++)); do # at most 120 s to open them
            line=$(grep -m1 '^ready' "$out" 2>/dev/null || true)
            [[ -n $line ]] && break
            kill -0 "$cpid" 2>/dev/null || break
            sleep 0.1
        done
        if [[ -z $line ]]; then
            fail "idle: the client did not finish opening connections to $px ($out)"
            exec 7>&-
            kill "$cpid" 2>/dev/null || true
            wait "$cpid" 2>/dev/null || true
            stop "$pid"
            continue
        fi
        read -r _ opened failed took <<<"$line"
        sleep 2
        after=$(mem_kb "$pid" VmRSS)
        pss_after=$(mem_kb "$pid" Pss smaps_rollup)
        hwm=$(mem_kb "$pid" VmHWM)
        exec 7>&- # EOF on the client's stdin: it reports and closes everything
        for ((i = 0; i < 300 && $(grep -c '^closed_while_idle' "$out" 2>/dev/null || true) == 0; i++)); do sleep 0.1; done
        closed=$(awk '/^closed_while_idle/ {print $2}' "$out")
        kill "$cpid" 2>/dev/null || true
        wait "$cpid" 2>/dev/null || true
        printf '{"scenario":"idle","proxy":"%s","rss_before_kb":%d,"rss_after_kb":%d,"pss_before_kb":%d,"pss_after_kb":%d,"hwm_kb":%d,"opened":%d,"failed":%d,"closed_while_idle":%d,"open_secs":%s}\n' \
            "$px" "$before" "$after" "$pss_before" "$pss_after" "$hwm" "$opened" "$failed" "${closed:-0}" "${took:-0}" >>"$RESULTS"
        printf '   idle     %-7s RSS %d kB -> %d kB with %d open (%d failed, %s closed while idle)\n' \
            "$px" "$before" "$after" "$opened" "$failed" "${closed:-?}" >&2
        ((failed == 0)) || fail "idle: $failed of $IDLE_N connections to $px failed"
        stop "$pid"
    done
}

# reload PROXY PID I: one reload, the way an operator would do it.
reload() {
    local px=$1 pid=$2 i=$3
    case $px in
    nginx) nginx -p "$STATE/" -e "$STATE/nginx.error.log" -c "$STATE/nginx-reload.conf" -s reload 2>>"$STATE/reload.log" ;;
    haproxy) kill -USR2 "$pid" ;; # master-worker: the master starts a new worker, the old one drains
    sluice)
        if ((i % 2)); then
            kill -HUP "$pid"
        else
            curl -sf -X POST --max-time 2 "http://127.0.0.1:$ADMIN_PORT/reload" >>"$STATE/reload.log"
        fi
        ;;
    esac
}

reload_scenario() {
    local px pid run i gap url wpid file
    for px in "$@"; do
        start_proxy "$px" reload || continue
        pid=$LAST_PID
        url="http://127.0.0.1:${PORT[$px]}/"
        case $px in
        nginx) log_cmd "nginx -p \$RUN/state/ -c \$RUN/state/nginx-reload.conf -s reload   # x$RELOADS per run" ;;
        haproxy) log_cmd "kill -USR2 <haproxy master pid>   # x$RELOADS per run" ;;
        sluice) log_cmd "kill -HUP <sluice pid>  and  curl -X POST http://127.0.0.1:$ADMIN_PORT/reload   # alternating, x$RELOADS per run" ;;
        esac
        warm "$url"
        for ((run = 1; run <= RUNS; run++)); do
            # wrk runs in the background for the whole window; reloads are spread across it.
            local secs=$((DSEC + 2)) failed_reloads=0
            gap=$(awk -v s="$DSEC" -v n="$RELOADS" 'BEGIN {printf "%.3f", s / (n + 1)}')
            measure reload "$px" "$run" "$url" "$pid" "$secs" &
            wpid=$!
            sleep 1
            for ((i = 1; i <= RELOADS; i++)); do
                sleep "$gap"
                reload "$px" "$pid" "$i" || failed_reloads=$((failed_reloads + 1))
            done
            wait "$wpid" || true
            ((failed_reloads == 0)) || fail "reload: $failed_reloads of $RELOADS reload commands for $px failed"
            kill -0 "$pid" 2>/dev/null || { fail "reload: $px exited during the reloads"; break; }
        done
        stop "$pid"
    done
}

# ---------------------------------------------------------------- main
install_peers
build_sluice
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < IDLE_N + 1000)); then
    warn "open files limit $(ulimit -n) is below $IDLE_N + 1000: the idle scenario will fail; raise the hard limit"
fi

{
    echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "command:  bench/gateway.sh ${ARGS[*]}"
    echo "machine:  $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
    echo "versions: $(nginx -v 2>&1 | sed 's/.*: //'), HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), $(varnishd -V 2>&1 | awk 'NR==1 {print $2}' | tr -d '(' ) , wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}'), sluice $(cd "$ROOT" && git rev-parse --short HEAD)"
    echo "settings: $RUNS run(s) x $DURATION, wrk -t1 -c$CONNS, warm-up ${WARM}s, $IDLE_N idle connections, $RELOADS reloads per run"
    echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at start"
} >"$RUN_DIR/header.txt"
cat "$RUN_DIR/header.txt" >&2

start_upstream
only() { # only P...: the selected proxies among P...
    local out=() p
    for p in "$@"; do has "$PROXIES" "$p" && out+=("$p"); done
    echo "${out[@]}"
}

if has "$SCENARIOS" plain; then
    say "plain proxy"
    # shellcheck disable=SC2046
    load_scenario plain / direct $(only nginx haproxy varnish sluice)
fi
if has "$SCENARIOS" full; then
    say "full stack"
    # shellcheck disable=SC2046
    load_scenario full /api/v1/users $(only nginx sluice)
fi
if has "$SCENARIOS" cache; then
    say "cache hits"
    # shellcheck disable=SC2046
    load_scenario cache /c $(only nginx haproxy varnish sluice)
fi
if has "$SCENARIOS" idle; then
    say "$IDLE_N idle keep-alive connections"
    # shellcheck disable=SC2046
    idle_scenario $(only nginx haproxy varnish sluice)
fi
if has "$SCENARIOS" reload; then
    say "$RELOADS reloads under load"
    # shellcheck disable=SC2046
    reload_scenario $(only nginx haproxy sluice)
fi
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at end" >>"$RUN_DIR/header.txt"

python3 "$CONF/report.py" --header "$RUN_DIR/header.txt" --results "$RESULTS" --commands "$CMDS" \
    --idle-connections "$IDLE_N" --reloads "$RELOADS" | tee "$RUN_DIR/report.md"
echo "raw output: ${RUN_DIR#"$ROOT"/}" >&2
if [[ -e $RUN_DIR/FAILED ]]; then
    echo "FAILED: see the FAIL lines above" >&2
    exit 1
fi
