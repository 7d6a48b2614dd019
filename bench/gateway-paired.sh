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
# Raw output: bench/out/paired-<UTC stamp>/.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/gateway-paired.sh [--runs 9] [--duration 10s] [--connections 64] [--no-build]
                               [--same-headers]
  --same-headers  both do the header work sluice does by default (request id both
                  ways, X-Forwarded-Proto/-Host, Via both ways): nginx runs
                  bench/gateway/nginx-proxy-same-headers.conf and sluice its defaults.
                  Without it, both do only nginx-proxy.conf's (Host, X-Forwarded-For).
EOF
}

RUNS=9
DURATION=10s
CONNS=64
BUILD=1
NGINX_CONF=nginx-proxy.conf
SLUICE_HEADERS=as-nginx
while (($#)); do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --same-headers) NGINX_CONF=nginx-proxy-same-headers.conf; SLUICE_HEADERS=defaults; shift ;;
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

missing=()
for c in nginx wrk curl taskset setsid; do command -v "$c" >/dev/null || missing+=("$c"); done
if ((${#missing[@]})); then
    echo "missing: ${missing[*]} (apt-get install -y nginx wrk curl)" >&2
    exit 2
fi
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
render() { sed "s#@STATE@#$STATE#g" "$1" >"$2"; }
# start NAME CPU CMD...: in its own session (its processes are that session's).
start() {
    local name=$1 cpu=$2
    shift 2
    setsid taskset -c "$cpu" "$@" >"$STATE/$name.log" 2>&1 </dev/null &
    SESSIONS+=($!)
}
wait_http() {
    for _ in $(seq 1 100); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
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
render "$CONF/$NGINX_CONF" "$STATE/nginx.conf"
render "$CONF/sluice-proxy.toml" "$STATE/sluice.toml"
# sluice's default header work: drop the section that matches nginx-proxy.conf.
[[ $SLUICE_HEADERS == defaults ]] && sed -i '/^\[proxy_headers\]/,$d' "$STATE/sluice.toml"
start upstream 1 nginx -p "$STATE/" -e "$STATE/upstream.error.log" -c "$STATE/upstream.conf"
wait_http http://127.0.0.1:19000/
start nginx 0 nginx -p "$STATE/" -e "$STATE/nginx.error.log" -c "$STATE/nginx.conf"
NGINX=${SESSIONS[-1]}
start sluice 0 "$SLUICE" gateway --config "$STATE/sluice.toml"
SLUICE_S=${SESSIONS[-1]}
wait_http http://127.0.0.1:19081/
wait_http http://127.0.0.1:19084/

# p99 FILE: wrk's 99th percentile latency, in ms.
p99() {
    awk '$1 == "99%" {v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v)
        print (u == "us" ? v / 1000 : u == "s" ? v * 1000 : v)}' "$1"
}

# load: both proxies at once for DUR; prints "nginx_requests sluice_requests".
load() {
    local dur=$1
    taskset -c 1 wrk -t1 -c"$CONNS" -d"$dur" --latency http://127.0.0.1:19081/ >"$STATE/wrk.nginx" &
    local a=$!
    taskset -c 1 wrk -t1 -c"$CONNS" -d"$dur" --latency http://127.0.0.1:19084/ >"$STATE/wrk.sluice" &
    local b=$!
    wait "$a" "$b"
    for px in nginx sluice; do
        if grep -q "Non-2xx\|Socket errors" "$STATE/wrk.$px"; then
            echo "$px answered errors:" >&2
            cat "$STATE/wrk.$px" >&2
            exit 1
        fi
    done
    echo "$(awk '/requests in/{print $1}' "$STATE/wrk.nginx") $(awk '/requests in/{print $1}' "$STATE/wrk.sluice")"
}

load 3s >/dev/null # warm-up: pools filled, caches and allocators settled
echo "paired plain proxy: $RUNS runs x $DURATION, wrk -t1 -c$CONNS per proxy, both on CPU0 at once; nginx: $NGINX_CONF"
printf '%-4s %10s %10s %12s %12s %8s %9s %9s %8s %15s %15s\n' run nginx_req sluice_req "nginx_us/req" \
    "sluice_us/req" ratio nginx_p99 sluice_p99 p99_ratio "nginx_usr+sys" "sluice_usr+sys"
RATIOS=()
P99S=()
for ((r = 1; r <= RUNS; r++)); do
    read -r nu0 ns0 < <(ticks "$NGINX")
    read -r su0 ss0 < <(ticks "$SLUICE_S")
    read -r nreq sreq < <(load "$DURATION")
    read -r nu1 ns1 < <(ticks "$NGINX")
    read -r su1 ss1 < <(ticks "$SLUICE_S")
    line=$(awk -v nu=$((nu1 - nu0)) -v ns=$((ns1 - ns0)) -v su=$((su1 - su0)) -v ss=$((ss1 - ss0)) \
        -v nr="$nreq" -v sr="$sreq" -v hz="$CLK_TCK" 'BEGIN {
        k = 1e6 / hz; n = (nu + ns) * k / nr; s = (su + ss) * k / sr
        printf "%10d %10d %12.2f %12.2f %8.3f", nr, sr, n, s, s / n }')
    split=$(awk -v nu=$((nu1 - nu0)) -v ns=$((ns1 - ns0)) -v su=$((su1 - su0)) -v ss=$((ss1 - ss0)) \
        -v nr="$nreq" -v sr="$sreq" -v hz="$CLK_TCK" 'BEGIN {
        k = 1e6 / hz; printf "%7.2f+%-7.2f %7.2f+%-7.2f", nu * k / nr, ns * k / nr, su * k / sr, ss * k / sr }')
    np=$(p99 "$STATE/wrk.nginx")
    sp=$(p99 "$STATE/wrk.sluice")
    RATIOS+=("$(awk '{print $NF}' <<<"$line")")
    P99S+=("$(awk -v a="$sp" -v b="$np" 'BEGIN {printf "%.3f", a / b}')")
    printf '%-4s %s %9s %9s %8s %s\n' "$r" "$line" "$np" "$sp" "${P99S[-1]}" "$split" | tee -a "$RUN_DIR/runs.txt"
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
            printf "sluice/nginx %s: median %.3f, runs %.3f-%.3f (%d runs)\n", what, m, v[1], v[NR], NR
        }' | tee -a "$RUN_DIR/runs.txt"
}
summary "CPU per request" "${RATIOS[@]}"
summary "p99 latency" "${P99S[@]}"
echo "raw: ${RUN_DIR#$ROOT/}"
