#!/usr/bin/env bash
# bench/gateway-instructions.sh: instructions per request, sluice next to
# nginx and HAProxy, counted by valgrind's callgrind.
#
# Wall-clock CPU per request (bench/gateway.sh) moves by ±50% on this shared
# 2-core machine; instruction counts do not: the same binary and input give
# the same count whatever else runs. Each proxy runs alone under callgrind
# with instrumentation off, is warmed up by wrk, then counted over one wrk
# run; the count (user space only: syscalls are not instructions here)
# divided by the requests wrk completed is the figure. Same upstream (nginx,
# not counted), same configs as bench/gateway.sh.
#
# Scenarios: plain (/), full (/api/v1/users: routes, limiter, metrics,
# access log; nginx with its equivalent), cache (/c, hits). Prints a table
# and ratios; raw files under bench/out/instructions-<UTC stamp>/.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/gateway-instructions.sh [--duration 10s] [--scenarios plain,full,cache]
                                     [--proxies nginx,haproxy,sluice] [--no-build]
EOF
}

DURATION=10s
SCENARIOS=plain,full,cache
PROXIES=nginx,haproxy,sluice
BUILD=1
while (($#)); do
    case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --proxies) PROXIES=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
has() { [[ ",$1," == *",$2,"* ]]; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF=$ROOT/bench/gateway
RUN_DIR=$ROOT/bench/out/instructions-$(date -u +%Y%m%dT%H%M%SZ)
STATE=$RUN_DIR/state
mkdir -p "$STATE"
SLUICE=$ROOT/target/release/sluice
declare -A PORT=([nginx]=19081 [haproxy]=19082 [sluice]=19084)
declare -A PATH_OF=([plain]=/ [full]=/api/v1/users [cache]=/c)

missing=()
for c in valgrind callgrind_annotate nginx wrk curl taskset; do command -v "$c" >/dev/null || missing+=("$c"); done
has "$PROXIES" haproxy && ! command -v haproxy >/dev/null && missing+=(haproxy)
if ((${#missing[@]})); then
    echo "missing: ${missing[*]} (apt-get install -y valgrind nginx haproxy wrk curl)" >&2
    exit 2
fi
if ((BUILD)); then
    (cd "$ROOT" && cargo build --release -p sluice)
fi
ulimit -n 65536 2>/dev/null || true

render() { sed "s#@STATE@#$STATE#g" "$1" >"$2"; }
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
wait_http() {
    for _ in $(seq 1 200); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    return 1
}

mkdir -p "$STATE/upstream-tmp" "$STATE/nginx-body" "$STATE/nginx-proxy-tmp"
render "$CONF/upstream-nginx.conf" "$STATE/upstream.conf"
taskset -c 1 nginx -p "$STATE/" -e "$STATE/upstream.error.log" -c "$STATE/upstream.conf" &
PIDS+=($!)
wait_http "http://127.0.0.1:19000/" || { echo "upstream did not start" >&2; exit 1; }

# count PROXY SCENARIO: print "requests instructions".
count() {
    local px=$1 sc=$2 conf out url=http://127.0.0.1:${PORT[$1]}${PATH_OF[$2]}
    out=$RUN_DIR/callgrind.$px.$sc
    local cmd
    case $px in
    nginx)
        conf=$STATE/nginx-$sc.conf
        case $sc in full) src=nginx-full.conf ;; cache) src=nginx-cache.conf ;; *) src=nginx-proxy.conf ;; esac
        # One process: callgrind follows it without tracing children.
        { echo "master_process off;"; sed "s#@STATE@#$STATE#g" "$CONF/$src"; } >"$conf"
        rm -rf "$STATE/nginx-cache"
        cmd=(nginx -p "$STATE/" -e "$STATE/nginx.error.log" -c "$conf")
        ;;
    haproxy)
        conf=$STATE/haproxy-$sc.cfg
        if [[ $sc == cache ]]; then sed 's/^#cache //' "$CONF/haproxy.cfg" >"$conf"; else cp "$CONF/haproxy.cfg" "$conf"; fi
        cmd=(haproxy -db -f "$conf")
        ;;
    sluice)
        case $sc in full) src=sluice-full.toml ;; cache) src=sluice-cache.toml ;; *) src=sluice-proxy.toml ;; esac
        render "$CONF/$src" "$STATE/$src"
        cmd=("$SLUICE" gateway --config "$STATE/$src")
        ;;
    esac
    taskset -c 0 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out.%p" \
        "${cmd[@]}" >"$out.log" 2>&1 &
    local vpid=$!
    if ! wait_http "$url"; then
        echo "$px did not answer on $url in $sc (see $out.log)" >&2
        kill "$vpid" 2>/dev/null || true
        return 1
    fi
    taskset -c 1 wrk -t1 -c16 -d3s "$url" >/dev/null
    callgrind_control -i on "$vpid" >/dev/null 2>&1
    local n
    n=$(taskset -c 1 wrk -t1 -c16 -d"$DURATION" "$url" | awk '/requests in/{print $1}')
    callgrind_control -i off "$vpid" >/dev/null 2>&1
    callgrind_control -d "$vpid" >/dev/null 2>&1
    kill -INT "$vpid" 2>/dev/null || true
    sleep 1
    kill -9 "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    local ir
    ir=$(for f in "$out".*[0-9]; do callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}'; done | sort -n | tail -1)
    echo "$n $ir"
}

printf '\n%-8s %-8s %10s %14s %12s\n' scenario proxy requests instructions "instr/req"
declare -A PER
for sc in ${SCENARIOS//,/ }; do
    for px in ${PROXIES//,/ }; do
        [[ $px == haproxy && $sc == full ]] && continue # no equivalent config
        read -r n ir < <(count "$px" "$sc") || continue
        [[ -n ${n:-} && -n ${ir:-} && $n -gt 0 ]] || { echo "$px $sc: no count" >&2; continue; }
        PER[$sc.$px]=$((ir / n))
        printf '%-8s %-8s %10s %14s %12s\n' "$sc" "$px" "$n" "$ir" "${PER[$sc.$px]}"
    done
done
echo
for sc in ${SCENARIOS//,/ }; do
    s=${PER[$sc.sluice]:-}
    [[ -n $s ]] || continue
    for px in nginx haproxy; do
        p=${PER[$sc.$px]:-}
        [[ -n $p ]] && printf '%-6s sluice/%-8s %.2fx\n' "$sc" "$px" "$(awk -v a="$s" -v b="$p" 'BEGIN{print a/b}')"
    done
done
[[ -n ${PER[full.sluice]:-} && -n ${PER[plain.sluice]:-} ]] &&
    printf 'full/plain (sluice) %.2fx\n' "$(awk -v a="${PER[full.sluice]}" -v b="${PER[plain.sluice]}" 'BEGIN{print a/b}')"
echo "raw: ${RUN_DIR#$ROOT/}"
