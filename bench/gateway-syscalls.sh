#!/usr/bin/env bash
# bench/gateway-syscalls.sh: system calls per plain proxied request, sluice
# next to nginx, counted by `strace -c` attached to the proxy's process.
#
# Time per request includes the kernel; a system call the proxy need not
# make (a read that fails with EAGAIN, an extra epoll_wait) costs more than
# hundreds of user-space instructions. strace slows the proxy down, so the
# throughput under it means nothing; the count per request is what this
# prints. Same upstream and configs as bench/gateway.sh; raw strace output
# under bench/out/syscalls-<UTC stamp>/.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: bench/gateway-syscalls.sh [--duration 3s] [--proxies nginx,sluice] [--no-build]
USAGE
}

DURATION=3s
PROXIES=nginx,sluice
BUILD=1
while (($#)); do
    case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --proxies) PROXIES=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF=$ROOT/bench/gateway
RUN_DIR=$ROOT/bench/out/syscalls-$(date -u +%Y%m%dT%H%M%SZ)
STATE=$RUN_DIR/state
mkdir -p "$STATE/upstream-tmp" "$STATE/nginx-body" "$STATE/nginx-proxy-tmp"
SLUICE=$ROOT/target/release/sluice
declare -A PORT=([nginx]=19081 [sluice]=19084)

# shellcheck source=bench/gateway/common.sh
source "$CONF/common.sh"
require_tools "apt-get install -y strace nginx wrk curl" strace nginx wrk curl taskset
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

render "$CONF/upstream-nginx.conf" "$STATE/upstream.conf"
taskset -c 1 nginx -p "$STATE/" -e "$STATE/upstream.error.log" -c "$STATE/upstream.conf" &
PIDS+=($!)
wait_http "http://127.0.0.1:19000/" || { echo "upstream did not start" >&2; exit 1; }

# count PROXY: print one line per system call, "name calls-per-request".
count() {
    local px=$1 url=http://127.0.0.1:${PORT[$1]}/ pid traced
    case $px in
    nginx)
        render "$CONF/nginx-proxy.conf" "$STATE/nginx-plain.conf"
        taskset -c 0 nginx -p "$STATE/" -e "$STATE/nginx.error.log" -c "$STATE/nginx-plain.conf" &
        ;;
    sluice)
        render "$CONF/sluice-proxy.toml" "$STATE/sluice-plain.toml"
        taskset -c 0 "$SLUICE" gateway --config "$STATE/sluice-plain.toml" >"$RUN_DIR/sluice.log" 2>&1 &
        ;;
    esac
    pid=$!
    if ! wait_http "$url"; then
        echo "$px did not answer on $url" >&2
        kill "$pid" 2>/dev/null || true
        return 1
    fi
    taskset -c 1 wrk -t1 -c16 -d2s "$url" >/dev/null
    # nginx serves from its worker (the master's child); sluice from its
    # threads, which -f follows.
    traced=$pid
    [[ $px == nginx ]] && traced=$(pgrep -P "$pid" | head -1)
    strace -f -c -o "$RUN_DIR/strace.$px" -p "$traced" 2>/dev/null &
    local st=$!
    sleep 1
    local n
    n=$(taskset -c 1 wrk -t1 -c16 -d"$DURATION" "$url" | awk '/requests in/{print $1}')
    kill -INT "$st" 2>/dev/null || true
    wait "$st" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # strace -c columns: % time, seconds, usecs/call, calls, [errors,] name.
    awk -v n="$n" '$1 ~ /^[0-9.]+$/ && $NF != "total" {printf "%s %.2f\n", $NF, $4 / n}' "$RUN_DIR/strace.$px" |
        sort -k2 -nr
    echo "requests $n"
}

printf '\n%-8s %-14s %12s\n' proxy syscall "per request"
for px in ${PROXIES//,/ }; do
    count "$px" | while read -r name per; do
        [[ $name == requests ]] && continue
        [[ $(awk -v p="$per" 'BEGIN{print (p >= 0.01)}') == 1 ]] && printf '%-8s %-14s %12s\n' "$px" "$name" "$per"
    done
done
echo "raw: ${RUN_DIR#$ROOT/}"
