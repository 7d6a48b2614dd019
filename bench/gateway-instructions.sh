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
#
# --cache-sim also simulates the caches (callgrind --cache-sim=yes) and adds
# first-level instruction misses (I1), first-level data misses (D1: reads +
# writes) and last-level data misses per request: the same number of
# instructions runs slower when its code or data is not in the first-level
# caches, and these say how much of each proxy's request is not.
# Use it with --connections 64 (bench/gateway.sh's count) so that the
# connections' state is as large as under the wall-clock load.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/gateway-instructions.sh [--duration 10s] [--scenarios plain,full,cache]
                                     [--proxies nginx,haproxy,sluice] [--no-build]
                                     [--connections 16] [--cache-sim] [--same-headers]
  --same-headers  plain: both do sluice's default header work (request id both ways,
                  X-Forwarded-Proto/-Host, Via): nginx-proxy-same-headers.conf, and
                  sluice without sluice-proxy.toml's [proxy_headers]. Without it,
                  both do only nginx-proxy.conf's (Host, X-Forwarded-For).
EOF
}

DURATION=10s
SCENARIOS=plain,full,cache
PROXIES=nginx,haproxy,sluice
BUILD=1
CONNS=16
CACHE_SIM=0
NGINX_PLAIN=nginx-proxy.conf
SLUICE_HEADERS=as-nginx
while (($#)); do
    case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --proxies) PROXIES=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --connections) CONNS=$2; shift 2 ;;
    --cache-sim) CACHE_SIM=1; shift ;;
    --same-headers) NGINX_PLAIN=nginx-proxy-same-headers.conf; SLUICE_HEADERS=defaults; shift ;;
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
SLUICE=${SLUICE_BIN:-$ROOT/target/release/sluice} # SLUICE_BIN: another build to count
declare -A PORT=([nginx]=19081 [haproxy]=19082 [sluice]=19084)
declare -A PATH_OF=([plain]=/ [full]=/api/v1/users [cache]=/c)

# shellcheck source=bench/gateway/common.sh
source "$CONF/common.sh"
tools=(valgrind callgrind_annotate nginx wrk curl taskset)
has "$PROXIES" haproxy && tools+=(haproxy)
require_tools "apt-get install -y valgrind nginx haproxy wrk curl" "${tools[@]}"
if ((BUILD)); then
    (cd "$ROOT" && cargo build --release -p sluice)
fi
ulimit -n 65536 2>/dev/null || true

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

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
        case $sc in full) src=nginx-full.conf ;; cache) src=nginx-cache.conf ;; *) src=$NGINX_PLAIN ;; esac
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
        # sluice's default header work: drop the section that matches nginx-proxy.conf.
        [[ $src == sluice-proxy.toml && $SLUICE_HEADERS == defaults ]] &&
            sluice_default_headers "$STATE/$src"
        cmd=("$SLUICE" gateway --config "$STATE/$src")
        ;;
    esac
    local sim=()
    ((CACHE_SIM)) && sim=(--cache-sim=yes)
    taskset -c 0 valgrind --tool=callgrind "${sim[@]}" --instr-atstart=no --callgrind-out-file="$out.%p" \
        "${cmd[@]}" >"$out.log" 2>&1 &
    local vpid=$!
    if ! wait_http "$url"; then
        echo "$px did not answer on $url in $sc (see $out.log)" >&2
        kill "$vpid" 2>/dev/null || true
        return 1
    fi
    taskset -c 1 wrk -t1 -c"$CONNS" -d3s "$url" >/dev/null
    callgrind_control -i on "$vpid" >/dev/null 2>&1
    local n
    n=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" "$url" | awk '/requests in/{print $1}')
    callgrind_control -i off "$vpid" >/dev/null 2>&1
    callgrind_control -d "$vpid" >/dev/null 2>&1
    kill -INT "$vpid" 2>/dev/null || true
    sleep 1
    kill -9 "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    # The totals of the process's file with the most instructions, by
    # event name (callgrind_annotate's header line names the columns).
    local totals
    totals=$(for f in "$out".*[0-9]; do
        callgrind_annotate "$f" 2>/dev/null | awk '
            /^Ir/ { for (i = 1; i <= NF; i++) name[i] = $i }
            /PROGRAM TOTALS/ {
                gsub(",", ""); j = 0
                for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) v[name[++j]] = $i
                print v["Ir"] + 0, v["I1mr"] + 0, v["D1mr"] + v["D1mw"], v["DLmr"] + v["DLmw"]
            }'
    done | sort -n | tail -1)
    # shellcheck disable=SC2086
    set -- $totals
    if ((CACHE_SIM)); then
        echo "$n $1 $2 $3 $4"
    else
        echo "$n $1"
    fi
}

printf '\n%-8s %-8s %10s %14s %12s' scenario proxy requests instructions "instr/req"
((CACHE_SIM)) && printf ' %10s %10s %10s' "I1miss/req" "D1miss/req" "LLmiss/req"
echo
declare -A PER
for sc in ${SCENARIOS//,/ }; do
    for px in ${PROXIES//,/ }; do
        [[ $px == haproxy && $sc == full ]] && continue # no equivalent config
        read -r n ir i1 d1 ll < <(count "$px" "$sc") || continue
        [[ -n ${n:-} && -n ${ir:-} && $n -gt 0 ]] || { echo "$px $sc: no count" >&2; continue; }
        PER[$sc.$px]=$((ir / n))
        printf '%-8s %-8s %10s %14s %12s' "$sc" "$px" "$n" "$ir" "${PER[$sc.$px]}"
        if ((CACHE_SIM)); then
            printf ' %10s %10s %10s' "$(awk -v a="$i1" -v b="$n" 'BEGIN{printf "%.0f", a/b}')" \
                "$(awk -v a="$d1" -v b="$n" 'BEGIN{printf "%.0f", a/b}')" \
                "$(awk -v a="$ll" -v b="$n" 'BEGIN{printf "%.1f", a/b}')"
        fi
        echo
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
