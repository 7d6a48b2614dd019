#!/usr/bin/env bash
# bench/gateway-paired.sh: sluice and nginx as plain proxies under load at the
# same time, sharing one CPU, for a CPU-per-request ratio that the machine's
# drift cannot tilt.
#
# bench/gateway.sh loads one proxy at a time; on this shared 2-core VM a
# proxy's CPU per request moves by ±25% from one 10 s run to the next (the
# machine has slow and fast spells), so a ratio of medians of a few runs
# lands anywhere within several percent. Here both proxies (one worker
# each, pinned to CPU0) are loaded at once by two wrk instances (CPU1, next
# to the shared upstream, as in bench/gateway.sh), so each run's ratio
# compares the two under the same spell. Sharing the CPU also means sharing
# its caches, which costs the proxy with the larger working set more: the
# comparison is not kinder to either. Each run's ratio is printed; the
# median and the spread of the per-run ratios are the result.
#
# Same configs as bench/gateway.sh's plain scenario (bench/gateway/).
# `--full` pairs sluice with itself instead: the plain config against the
# full stack (sluice-full.toml, GET /api/v1/users), for the issue's
# "full stack ≤ 1.3× sluice's own plain CPU per request".
# Raw output: bench/out/paired-<UTC stamp>/.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/gateway-paired.sh [--runs 9] [--duration 10s] [--connections 64] [--no-build]
                               [--same-headers | --full]
  --same-headers  both do the header work sluice does by default (request id both
                  ways, X-Forwarded-Proto/-Host, Via both ways): nginx runs
                  bench/gateway/nginx-proxy-same-headers.conf and sluice its defaults.
                  Without it, both do only nginx-proxy.conf's (Host, X-Forwarded-For).
  --full          sluice's plain config (side A, in nginx's place) against its full
                  stack (side B, bench/gateway/sluice-full.toml, GET /api/v1/users)
EOF
}

RUNS=9
DURATION=10s
CONNS=64
BUILD=1
NGINX_CONF=nginx-proxy.conf
SLUICE_HEADERS=as-nginx
FULL=0
while (($#)); do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --same-headers) NGINX_CONF=nginx-proxy-same-headers.conf; SLUICE_HEADERS=defaults; shift ;;
    --full) FULL=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 && $CONNS =~ ^[0-9]+$ ]] || { usage >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF=$ROOT/bench/gateway
RUN_DIR=$ROOT/bench/out/paired-$(date -u +%Y%m%dT%H%M%SZ)
STATE=$RUN_DIR/state
mkdir -p "$STATE/upstream-tmp" "$STATE/nginx-body" "$STATE/nginx-proxy-tmp"
SLUICE=${SLUICE_BIN:-$ROOT/target/release/sluice} # SLUICE_BIN: another build to compare

# shellcheck source=bench/gateway/common.sh
source "$CONF/common.sh"
require_tools "apt-get install -y nginx wrk curl" nginx wrk curl taskset setsid
if ((BUILD)); then
    (cd "$ROOT" && nice -n 19 cargo build --release -p sluice)
fi
[[ -x $SLUICE ]] || { echo "no $SLUICE; drop --no-build" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true

SESSIONS=()
cleanup() {
    for s in "${SESSIONS[@]}"; do kill -TERM -- "-$s" 2>/dev/null || true; done
    sleep 0.5
    for s in "${SESSIONS[@]}"; do kill -KILL -- "-$s" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
# start NAME CPU CMD...: in its own session (its processes are that session's).
start() {
    local name=$1 cpu=$2
    shift 2
    setsid taskset -c "$cpu" "$@" >"$STATE/$name.log" 2>&1 </dev/null &
    SESSIONS+=($!)
}
# ticks SESSION: "utime stime" of every process of the session, in clock ticks.
ticks() {
    local user=0 sys=0 p line
    for p in $(pgrep -s "$1" 2>/dev/null); do
        line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        read -r -a f <<<"${line##*) }"
        user=$((user + f[11]))
        sys=$((sys + f[12]))
    done
    echo "$user $sys"
}
CLK_TCK=$(getconf CLK_TCK)

render "$CONF/upstream-nginx.conf" "$STATE/upstream.conf"
render "$CONF/sluice-proxy.toml" "$STATE/sluice.toml"
# sluice's default header work: drop the section that matches nginx-proxy.conf.
[[ $SLUICE_HEADERS == defaults ]] && sluice_default_headers "$STATE/sluice.toml"
start upstream 1 nginx -p "$STATE/" -e "$STATE/upstream.error.log" -c "$STATE/upstream.conf"
wait_http http://127.0.0.1:19000/
# Side A listens on 19081, side B on 19084; each is one process session.
A_URL=http://127.0.0.1:19081/
B_URL=http://127.0.0.1:19084/
if ((FULL)); then
    A_NAME=plain B_NAME=full
    # The plain config moved to side A's ports (proxy 19081, admin 19086).
    sed -i 's/127.0.0.1:19084/127.0.0.1:19081/; s/127.0.0.1:19085/127.0.0.1:19086/' "$STATE/sluice.toml"
    render "$CONF/sluice-full.toml" "$STATE/sluice-full.toml"
    start sluice-plain 0 "$SLUICE" gateway --config "$STATE/sluice.toml"
    A_S=${SESSIONS[-1]}
    start sluice-full 0 "$SLUICE" gateway --config "$STATE/sluice-full.toml"
    B_S=${SESSIONS[-1]}
    B_URL=http://127.0.0.1:19084/api/v1/users
else
    A_NAME=nginx B_NAME=sluice
    render "$CONF/$NGINX_CONF" "$STATE/nginx.conf"
    start nginx 0 nginx -p "$STATE/" -e "$STATE/nginx.error.log" -c "$STATE/nginx.conf"
    A_S=${SESSIONS[-1]}
    start sluice 0 "$SLUICE" gateway --config "$STATE/sluice.toml"
    B_S=${SESSIONS[-1]}
fi
wait_http "$A_URL"
wait_http "$B_URL"

# p99 FILE: wrk's 99th percentile latency, in ms.
p99() {
    awk '$1 == "99%" {v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v)
        print (u == "us" ? v / 1000 : u == "s" ? v * 1000 : v)}' "$1"
}

# load: both sides at once for DUR; prints "a_requests b_requests".
load() {
    local dur=$1
    taskset -c 1 wrk -t1 -c"$CONNS" -d"$dur" --latency "$A_URL" >"$STATE/wrk.a" &
    local a=$!
    taskset -c 1 wrk -t1 -c"$CONNS" -d"$dur" --latency "$B_URL" >"$STATE/wrk.b" &
    local b=$!
    wait "$a" "$b"
    for side in a b; do
        if grep -q "Non-2xx\|Socket errors" "$STATE/wrk.$side"; then
            echo "side $side answered errors:" >&2
            cat "$STATE/wrk.$side" >&2
            exit 1
        fi
    done
    echo "$(awk '/requests in/{print $1}' "$STATE/wrk.a") $(awk '/requests in/{print $1}' "$STATE/wrk.b")"
}

load 3s >/dev/null # warm-up: pools filled, caches and allocators settled
if ((FULL)); then
    echo "paired sluice plain (A) and full stack (B): $RUNS runs x $DURATION, wrk -t1 -c$CONNS per side, both on CPU0 at once"
else
    echo "paired plain proxy: $RUNS runs x $DURATION, wrk -t1 -c$CONNS per proxy, both on CPU0 at once; nginx: $NGINX_CONF"
fi
printf '%-4s %10s %10s %12s %12s %8s %9s %9s %8s %15s %15s\n' run "${A_NAME}_req" "${B_NAME}_req" "${A_NAME}_us/req" \
    "${B_NAME}_us/req" ratio "${A_NAME}_p99" "${B_NAME}_p99" p99_ratio "${A_NAME}_usr+sys" "${B_NAME}_usr+sys"
RATIOS=()
P99S=()
for ((r = 1; r <= RUNS; r++)); do
    read -r au0 as0 < <(ticks "$A_S")
    read -r bu0 bs0 < <(ticks "$B_S")
    read -r areq breq < <(load "$DURATION")
    read -r au1 as1 < <(ticks "$A_S")
    read -r bu1 bs1 < <(ticks "$B_S")
    line=$(awk -v au=$((au1 - au0)) -v as=$((as1 - as0)) -v bu=$((bu1 - bu0)) -v bs=$((bs1 - bs0)) \
        -v ar="$areq" -v br="$breq" -v hz="$CLK_TCK" 'BEGIN {
        k = 1e6 / hz; a = (au + as) * k / ar; b = (bu + bs) * k / br
        printf "%10d %10d %12.2f %12.2f %8.3f", ar, br, a, b, b / a }')
    split=$(awk -v au=$((au1 - au0)) -v as=$((as1 - as0)) -v bu=$((bu1 - bu0)) -v bs=$((bs1 - bs0)) \
        -v ar="$areq" -v br="$breq" -v hz="$CLK_TCK" 'BEGIN {
        k = 1e6 / hz; printf "%7.2f+%-7.2f %7.2f+%-7.2f", au * k / ar, as * k / ar, bu * k / br, bs * k / br }')
    ap=$(p99 "$STATE/wrk.a")
    bp=$(p99 "$STATE/wrk.b")
    RATIOS+=("$(awk '{print $NF}' <<<"$line")")
    P99S+=("$(awk -v b="$bp" -v a="$ap" 'BEGIN {printf "%.3f", b / a}')")
    printf '%-4s %s %9s %9s %8s %s\n' "$r" "$line" "$ap" "$bp" "${P99S[-1]}" "$split" | tee -a "$RUN_DIR/runs.txt"
    sleep 1
done
# summary WHAT VALUES...: median and range of per-run ratios.
summary() {
    local what=$1
    shift
    printf '%s\n' "$@" | sort -n | awk -v what="$what" '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%s: median %.3f, runs %.3f-%.3f (%d runs)\n", what, m, v[1], v[NR], NR
        }' | tee -a "$RUN_DIR/runs.txt"
}
summary "$B_NAME/$A_NAME CPU per request" "${RATIOS[@]}"
summary "$B_NAME/$A_NAME p99 latency" "${P99S[@]}"
echo "raw: ${RUN_DIR#$ROOT/}"
