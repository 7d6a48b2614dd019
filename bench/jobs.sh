#!/usr/bin/env bash
# bench/jobs.sh: the sluice jobs server side by side with Celery 5 on Redis and, with
# --peers ...,apalis, apalis 1.0 on SQLite and PostgreSQL (issue 3; see run_apalis).
#
# The system under test (Celery's workers; later sluice's server) runs on CPU0, the
# load generator (one Python producer) on CPU1, loopback only. Celery's broker and
# result backend is the Redis on 127.0.0.1:6379 (started here, on CPU0, if none is
# running), in a dedicated DB (--redis-db, default 13) that is flushed before and
# after; no other DB is touched. Durable settings for Celery: task_acks_late +
# task_reject_on_worker_lost, results stored in Redis, Redis with appendonly yes /
# appendfsync everysec for the run (the previous values are restored on exit).
# Scenarios:
#   drain    N no-op jobs queued with no worker running, then one worker started:
#            jobs/s from the first job taken to the queue and the unacked set empty,
#            CPU seconds of the worker's processes (and of Redis) over that window
#   enqueue  the same N jobs sent by one producer process: client-side jobs/s
#   latency  open-loop probes at fixed fractions (default 25%, 50%) of the measured
#            drain rate: enqueue-to-start p50/p99 (intended send time -> task start)
#   async    probes at a fixed rate (default 100/s), first idle, then while
#            CPU-burning jobs keep CPU0 busy: p50/p99 and the burn/idle ratio
#
# Printed: medians of --runs runs per scenario and system, sluice/peer ratios when
# both ran, the targets of issue 3 and the exact commands. Raw output:
# bench/out/jobs-<UTC stamp>/ (git-ignored). The Celery virtualenv lives in
# bench/out/.venv-celery (also git-ignored) and is reused across runs.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/jobs.sh [--runs N] [--jobs N] [--quick] [--scenarios drain,enqueue,latency,async]
                     [--peers celery,sluice,apalis] [--latency-secs S] [--fractions 0.25,0.5]
                     [--max-rate R] [--async-rate R] [--burn-ms MS]
                     [--celery-concurrency C] [--celery-prefetch P]
                     [--redis-db N] [--redis-persistence aof|asis]
                     [--sluice-backends sqlite,postgres] [--sluice-workers W] [--sluice-conc C]
                     [--apalis-backends sqlite,postgres] [--apalis-conc C] [--build]
  --runs N                measured runs per scenario and system; medians are reported (default 3)
  --jobs N                jobs queued in the drain/enqueue scenarios (default 100000)
  --quick                 smoke test: 1 run, 10,000 jobs, 5 s latency windows
  --scenarios LIST        comma-separated subset of the scenarios
  --peers LIST            comma-separated systems: celery, sluice, apalis (default celery,sluice:
                          apalis-bench is a separate Cargo workspace whose first build takes
                          minutes, and apalis-sqlite drains slower as its table grows (650
                          jobs/s with 2,000 queued, 61 with 20,000), so at the default 100,000
                          jobs its drain may run into its bound (N/25 + 120 s); add it
                          explicitly, e.g. --peers apalis --jobs 20000)
  --latency-secs S        length of one measured open-loop window (default 10)
  --fractions LIST        latency rates as fractions of the drain rate (default 0.25,0.5)
  --max-rate R            the rate the fractions apply to when drain is not run here
                          (default: a calibration drain of min(N, 10000) jobs)
  --async-rate R          probe rate of the async scenario, jobs/s (default 100)
  --burn-ms MS            length of one CPU-burning job (default 20)
  --celery-concurrency C  prefork processes of the Celery worker (default 2 = nproc, Celery's default)
  --celery-prefetch P     worker_prefetch_multiplier (default 64, the optimizing guide's advice
                          for many short tasks)
  --redis-db N            the Redis DB used and flushed (default 13)
  --redis-persistence M   aof: appendonly yes + appendfsync everysec for the run (default);
                          asis: leave the server as it is (the report says what it was)
  --sluice-backends LIST  stores under test: sqlite, postgres (default both; postgres is skipped
                          when the build or 127.0.0.1:5432 does not have it)
  --sluice-workers LIST   jobs run at once by the server (--workers) per store: N for all, or
                          sqlite=N,postgres=M (default sqlite=64,postgres=512; see bench/jobs/README.md)
  --sluice-conc C         connections of the one-job-per-request enqueue (default 32)
  --apalis-backends LIST  apalis stores: sqlite, postgres (default both; postgres is skipped when
                          127.0.0.1:5432 does not answer; its database apalis_bench is created
                          fresh per step and dropped on exit)
  --apalis-conc LIST      concurrency of the apalis worker (and its fetch batch, at least 10) per
                          store: N for all, or sqlite=N,postgres=M (default sqlite=64,postgres=512)
  --build                 build first (nice -n 19 cargo build --release): sluice and the load
                          generator, and with apalis in --peers bench/jobs/apalis (also built when
                          its binary is missing); APALIS_BIN, SLUICE_BIN, SLUICE_LOAD_BIN override
                          the binaries
apalis runs as one apalis-bench process pinned to CPU0 per step: its producer is in that
process (there is no separate load generator on CPU1), with its workers and, for SQLite,
the database. See bench/jobs/README.md.
EOF
}

RUNS=3
JOBS_N=100000
SCENARIOS=drain,enqueue,latency,async
PEERS=celery,sluice
LAT_SECS=10
FRACTIONS=0.25,0.5
MAX_RATE=""
ASYNC_RATE=100
BURN_MS=20
CELERY_CONC=2
CELERY_PREFETCH=64
REDIS_DB=13
REDIS_PERSIST=aof
SL_BACKENDS=sqlite,postgres
SL_WORKERS=sqlite=64,postgres=512
SL_SINGLE_CONC=32
AP_BACKENDS=sqlite,postgres
AP_CONC=sqlite=64,postgres=512
BUILD=0
QUICK=0
ARGS=("$@")
while (($#)); do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --jobs) JOBS_N=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --peers) PEERS=$2; shift 2 ;;
    --latency-secs) LAT_SECS=$2; shift 2 ;;
    --fractions) FRACTIONS=$2; shift 2 ;;
    --max-rate) MAX_RATE=$2; shift 2 ;;
    --async-rate) ASYNC_RATE=$2; shift 2 ;;
    --burn-ms) BURN_MS=$2; shift 2 ;;
    --celery-concurrency) CELERY_CONC=$2; shift 2 ;;
    --celery-prefetch) CELERY_PREFETCH=$2; shift 2 ;;
    --redis-db) REDIS_DB=$2; shift 2 ;;
    --redis-persistence) REDIS_PERSIST=$2; shift 2 ;;
    --sluice-backends) SL_BACKENDS=$2; shift 2 ;;
    --sluice-workers) SL_WORKERS=$2; shift 2 ;;
    --sluice-conc) SL_SINGLE_CONC=$2; shift 2 ;;
    --apalis-backends) AP_BACKENDS=$2; shift 2 ;;
    --apalis-conc) AP_CONC=$2; shift 2 ;;
    --build) BUILD=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if ((QUICK)); then
    RUNS=1
    [[ " ${ARGS[*]} " == *" --jobs "* ]] || JOBS_N=10000
    [[ " ${ARGS[*]} " == *" --latency-secs "* ]] || LAT_SECS=5
fi
for v in RUNS JOBS_N LAT_SECS ASYNC_RATE BURN_MS CELERY_CONC CELERY_PREFETCH REDIS_DB SL_SINGLE_CONC; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || { echo "bad value for ${v,,}: ${!v}" >&2; exit 2; }
done
[[ $SL_WORKERS =~ ^([0-9]+|((sqlite|postgres)=[0-9]+)(,(sqlite|postgres)=[0-9]+)*)$ ]] || { echo "bad value for --sluice-workers: $SL_WORKERS" >&2; exit 2; }
[[ $AP_CONC =~ ^([0-9]+|((sqlite|postgres)=[0-9]+)(,(sqlite|postgres)=[0-9]+)*)$ ]] || { echo "bad value for --apalis-conc: $AP_CONC" >&2; exit 2; }
[[ $REDIS_PERSIST == aof || $REDIS_PERSIST == asis ]] || { echo "--redis-persistence is aof or asis" >&2; exit 2; }
has() { [[ ",$1," == *",$2,"* ]]; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF=$ROOT/bench/jobs
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN_DIR=$ROOT/bench/out/jobs-$STAMP
STATE=$RUN_DIR/state
RESULTS=$RUN_DIR/results.jsonl
CMDS=$RUN_DIR/commands.txt
mkdir -p "$STATE"
: >"$RESULTS"
: >"$CMDS"
SLUICE=${SLUICE_BIN:-$ROOT/target/release/sluice}
LOADGEN=${SLUICE_LOAD_BIN:-$ROOT/target/release/examples/jobs_load}
VENV=$ROOT/bench/out/.venv-celery
CELERY_VERSION=5.7.0 # pinned, with its [redis] extra (redis-py), for comparable runs
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
REDIS_URL=redis://$REDIS_HOST:$REDIS_PORT/$REDIS_DB

say() { printf '\n== %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
note() { printf '{"note":%s}\n' "$(json_str "$1")" >>"$RESULTS"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    : >"$RUN_DIR/FAILED"
    note "FAIL: $*"
}
# Record a command line for the report (paths relative to the repository, $RUN for the run's directory).
log_cmd() {
    local c=${*//$RUN_DIR/\$RUN}
    printf '%s\n' "${c//$ROOT\//}" >>"$CMDS"
}
# row SCENARIO SYSTEM RUN JSON [KEY=VALUE...]: the JSON object with its labels, to results.jsonl.
row() {
    local sc=$1 sys=$2 run=$3 js=$4
    shift 4
    python3 - "$sc" "$sys" "$run" "$js" "$@" >>"$RESULTS" <<'EOF'
import json, sys
sc, sys_, run, js = sys.argv[1:5]
d = {"scenario": sc, "system": sys_, "run": int(run)}
d.update(json.loads(js))
for kv in sys.argv[5:]:
    k, v = kv.split("=", 1)
    try:
        v = float(v)
    except ValueError:
        pass
    d[k] = v
print(json.dumps(d))
EOF
}
jget() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"; }

# ---------------------------------------------------------------- install
install_deps() {
    local missing=()
    command -v python3 >/dev/null || missing+=(python3)
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v curl >/dev/null || missing+=(curl)
    { { has "$PEERS" sluice && has "$SL_BACKENDS" postgres; } || { has "$PEERS" apalis && has "$AP_BACKENDS" postgres; }; } &&
        ! command -v psql >/dev/null && missing+=(postgresql-client)
    if ! redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1; then
        command -v redis-server >/dev/null || missing+=(redis-server)
    fi
    if ((${#missing[@]})); then
        ((EUID == 0)) || { echo "missing: ${missing[*]}; run as root or: apt-get install -y ${missing[*]}" >&2; exit 1; }
        say "installing ${missing[*]}"
        timeout 300 apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if has "$PEERS" celery; then
        if ! "$VENV/bin/python" -c "import celery, redis, sys; sys.exit(celery.__version__ != '$CELERY_VERSION')" 2>/dev/null; then
            say "installing celery[redis]==$CELERY_VERSION into ${VENV#"$ROOT"/}"
            rm -rf "$VENV"
            python3 -m venv "$VENV"
            timeout 600 "$VENV/bin/pip" install -q --disable-pip-version-check "celery[redis]==$CELERY_VERSION"
        fi
    fi
}

build_sluice() {
    ((BUILD)) && has "$PEERS" sluice || return 0
    say "building sluice and the load generator (release, nice -n 19)"
    (cd "$ROOT" && nice -n 19 cargo build --release -p sluice && nice -n 19 cargo build --release -p sluice-jobs --example jobs_load)
}

# ---------------------------------------------------------------- processes
STARTED=() # session ids (= pids) of everything started here
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

# stop PID: TERM its session, wait up to 10 s (a Celery warm shutdown), then KILL what is left.
stop() {
    local pid=$1 i p
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
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

REDIS_OURS=0
REDIS_RESTORE=() # CONFIG SET arguments that put the shared server back as it was
rcli() { timeout 30 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }
flush_db() { rcli -n "$REDIS_DB" flushdb >/dev/null; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${STARTED[@]}"; do stop "$pid"; done
    declare -F pg_cleanup >/dev/null && pg_cleanup
    declare -F apalis_pg_cleanup >/dev/null && apalis_pg_cleanup
    if ((!REDIS_OURS)) && rcli ping >/dev/null 2>&1; then
        flush_db || true
        if ((${#REDIS_RESTORE[@]})); then
            rcli config set "${REDIS_RESTORE[@]}" >/dev/null || warn "could not restore Redis settings ${REDIS_RESTORE[*]}"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- redis
REDIS_PID=0
setup_redis() {
    if ! rcli ping >/dev/null 2>&1; then
        say "no Redis on $REDIS_HOST:$REDIS_PORT: starting one on CPU0 (AOF everysec, data in \$RUN/state)"
        start redis 0 redis-server --bind "$REDIS_HOST" --port "$REDIS_PORT" --save '' \
            --appendonly yes --appendfsync everysec --dir "$STATE"
        REDIS_OURS=1
        local i
        for ((i = 0; i < 100; i++)); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done
        rcli ping >/dev/null 2>&1 || { echo "redis-server did not start ($STATE/redis.log)" >&2; exit 1; }
        note "Redis: started by the script, pinned to CPU0 with the workers"
    else
        note "Redis: the server already running on $REDIS_HOST:$REDIS_PORT (not pinned by the script; its CPU is reported separately)"
    fi
    REDIS_PID=$(rcli info server | tr -d '\r' | awk -F: '$1 == "process_id" {print $2}')
    local aof fsync
    aof=$(rcli config get appendonly | sed -n 2p)
    fsync=$(rcli config get appendfsync | sed -n 2p)
    if [[ $REDIS_PERSIST == aof && ($aof != yes || $fsync != everysec) ]]; then
        REDIS_RESTORE=(appendonly "$aof" appendfsync "$fsync")
        rcli config set appendonly yes appendfsync everysec >/dev/null
        local i
        for ((i = 0; i < 300; i++)); do # the initial AOF rewrite, at most 30 s
            rcli info persistence | tr -d '\r' | grep -q '^aof_rewrite_in_progress:0' && break
            sleep 0.1
        done
        note "Redis: appendonly yes, appendfsync everysec for the run (was appendonly $aof, appendfsync $fsync; restored on exit)"
    else
        note "Redis: appendonly $aof, appendfsync $fsync (as found)"
    fi
    flush_db
}

# ---------------------------------------------------------------- celery
# py SECONDS ARGS...: the load generator (celery_bench.py) on CPU1, bounded.
py() {
    local secs=$1
    shift
    log_cmd "taskset -c 1 env PYTHONPATH=$CONF BENCH_REDIS_URL=$REDIS_URL $VENV/bin/python $CONF/celery_bench.py $*"
    timeout "$secs" taskset -c 1 env PYTHONPATH="$CONF" BENCH_REDIS_URL="$REDIS_URL" \
        "$VENV/bin/python" "$CONF/celery_bench.py" "$@" 2>>"$STATE/loadgen.log"
}

# celery_worker NAME QUEUE CONCURRENCY PREFETCH: one worker on CPU0; sets LAST_PID.
celery_worker() {
    local name=$1 queue=$2 conc=$3 prefetch=$4
    start "celery-$name" 0 env PYTHONPATH="$CONF" BENCH_REDIS_URL="$REDIS_URL" BENCH_PREFETCH="$prefetch" \
        "$VENV/bin/celery" -A celery_app worker -P prefork -c "$conc" -Q "$queue" -n "$name@bench" \
        --without-gossip --without-mingle --without-heartbeat -l WARNING
}

# celery_ready NAME PID: bounded wait (30 s) for the worker to answer a ping.
celery_ready() {
    if ! py 40 ping --name "$1@bench" --timeout 30 >/dev/null; then
        fail "celery worker $1 did not come up (log: $STATE/celery-$1.log)"
        tail -5 "$STATE/celery-$1.log" >&2 || true
        stop "$2"
        return 1
    fi
}

DRAIN_RATES=()
drain_timeout() { echo $((JOBS_N / 100 + 60)); } # bounded: assumes at least 100 jobs/s

# celery_drain RUN [calibrate]: enqueue N (scenario enqueue), then drain them (scenario drain).
celery_drain() {
    local run=$1 mode=${2:-} n=$JOBS_N res pidf=$STATE/drain.pid ready=$STATE/drain.ready wpid dpid
    [[ $mode == calibrate ]] && n=$((JOBS_N < 10000 ? JOBS_N : 10000))
    flush_db
    if ! res=$(py $((n / 50 + 60)) enqueue --n "$n" --queue jobs); then
        fail "celery enqueue of $n jobs failed ($STATE/loadgen.log)"
        return 1
    fi
    if [[ -z $mode ]] && has "$SCENARIOS" enqueue; then
        row enqueue celery "$run" "$res"
        printf '   enqueue  celery run %d: %8s jobs/s  (%s jobs, one producer)\n' "$run" "$(jget "$res" jobs_per_s)" "$n" >&2
    fi
    if [[ -z $mode ]] && ! has "$SCENARIOS" drain; then
        flush_db
        return 0
    fi
    rm -f "$pidf" "$ready"
    py "$(drain_timeout)" drain --n "$n" --queue jobs --pid-file "$pidf" --ready-file "$ready" \
        --redis-pid "$REDIS_PID" --timeout "$(drain_timeout)" >"$STATE/drain.json" &
    dpid=$!
    local i
    for ((i = 0; i < 100; i++)); do # the watcher is in place within 10 s
        [[ -e $ready ]] && break
        sleep 0.1
    done
    celery_worker drain jobs "$CELERY_CONC" "$CELERY_PREFETCH"
    wpid=$LAST_PID
    echo "$wpid" >"$pidf"
    local ok=1
    wait "$dpid" || ok=0
    stop "$wpid"
    res=$(cat "$STATE/drain.json")
    if ((!ok)) || [[ -z $(jget "$res" jobs_per_s) ]]; then
        fail "celery drain of $n jobs failed: $res"
        return 1
    fi
    DRAIN_RATES+=("$(jget "$res" jobs_per_s)")
    if [[ -z $mode ]]; then
        row drain celery "$run" "$res"
        printf '   drain    celery run %d: %8s jobs/s  worker %s µs/job  Redis %s s CPU  results stored %s/%s\n' "$run" \
            "$(jget "$res" jobs_per_s)" "$(jget "$res" worker_cpu_us_per_job)" "$(jget "$res" broker_cpu_s)" \
            "$(jget "$res" results_stored)" "$n" >&2
    else
        note "celery: calibration drain of $n jobs: $(jget "$res" jobs_per_s) jobs/s (sets the latency rates)"
    fi
    flush_db
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {if (NR) print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }

# latency_window SYSTEM SCENARIO RUN RATE [KEY=VALUE...]: one open-loop window; appends a row.
latency_window() {
    local sys=$1 sc=$2 run=$3 rate=$4
    shift 4
    local sink res
    sink=$STATE/lat-$sc-$run-$rate-$RANDOM.txt
    if ! res=$(py $((LAT_SECS + 100)) latency --rate "$rate" --secs "$LAT_SECS" --warm 1 --sink "$sink" --queue jobs --wait 60); then
        fail "$sys $sc at $rate jobs/s: probes missing or the generator failed: ${res:-no output}"
        [[ -n $res ]] || return 1
    fi
    window_row "$sys" "$sc" "$run" "$rate" "$res" "$@"
}

# window_row SYSTEM SCENARIO RUN RATE JSON [KEY=VALUE...]: store and print one latency window.
window_row() {
    local sys=$1 sc=$2 run=$3 rate=$4 res=$5
    shift 5
    row "$sc" "$sys" "$run" "$res" "$@"
    printf '   %-8s %s run %d: %6s/s (sent at %s/s)  p50 %s ms  p99 %s ms  max %s ms  missing %s  %s\n' "$sc" "$sys" "$run" \
        "$rate" "$(jget "$res" achieved_rate)" "$(jget "$res" p50_ms)" "$(jget "$res" p99_ms)" "$(jget "$res" max_ms)" \
        "$(jget "$res" missing)" "$*" >&2
    local ach
    ach=$(jget "$res" achieved_rate)
    if [[ -n $ach ]] && awk -v a="$ach" -v r="$rate" 'BEGIN {exit !(a < 0.95 * r)}'; then
        note "$sys $sc run $run: the producer sent at $ach/s, below the intended $rate/s (its lag counts as latency)"
    fi
}

celery_latency() {
    local max=$MAX_RATE
    if [[ -z $max ]]; then
        if ((${#DRAIN_RATES[@]})); then
            max=$(median "${DRAIN_RATES[@]}")
        else
            say "celery: calibration drain for the latency rates"
            celery_drain 0 calibrate || return 1
            max=${DRAIN_RATES[-1]}
        fi
    fi
    note "celery: latency rates are fractions $FRACTIONS of $max jobs/s"
    flush_db
    celery_worker lat jobs "$CELERY_CONC" "$CELERY_PREFETCH"
    local wpid=$LAST_PID frac rate run
    celery_ready lat "$wpid" || return 1
    for frac in ${FRACTIONS//,/ }; do
        rate=$(awk -v m="$max" -v f="$frac" 'BEGIN {r = int(m * f + 0.5); print (r < 1 ? 1 : r)}')
        for ((run = 1; run <= RUNS; run++)); do
            latency_window celery latency "$run" "$rate" "fraction=$frac" "max_rate=$max"
        done
    done
    stop "$wpid"
    flush_db
}

celery_async() {
    flush_db
    celery_worker async jobs "$CELERY_CONC" "$CELERY_PREFETCH"
    local npid=$LAST_PID
    celery_ready async "$npid" || return 1
    # Long CPU-bound jobs get their own worker with prefetch 1, as Celery's optimizing
    # guide advises for a mix of short and long tasks; both share CPU0.
    celery_worker burn burn "$CELERY_CONC" 1
    local bpid=$LAST_PID run left k
    celery_ready burn "$bpid" || { stop "$npid"; return 1; }
    k=$(((LAT_SECS + 1 + 20) * 1000 / BURN_MS)) # CPU0 at most fully busy: enough for the window and slack
    for ((run = 1; run <= RUNS; run++)); do
        latency_window celery async "$run" "$ASYNC_RATE" phase=idle
        rcli -n "$REDIS_DB" del burn >/dev/null
        py 120 burn-fill --n "$k" --ms "$BURN_MS" --queue burn >/dev/null || { fail "celery burn-fill failed"; break; }
        sleep 1 # let the burn worker fill its processes
        latency_window celery async "$run" "$ASYNC_RATE" phase=burn "burn_ms=$BURN_MS"
        left=$(rcli -n "$REDIS_DB" llen burn)
        if ((left == 0)); then
            note "celery async run $run: the burn queue ran dry during the window: CPU0 was not saturated throughout"
        fi
        rcli -n "$REDIS_DB" del burn >/dev/null
        sleep $((BURN_MS * 2 * CELERY_CONC / 1000 + 1)) # the burn jobs already taken finish
    done
    stop "$bpid"
    stop "$npid"
    flush_db
}

run_celery() {
    local run
    if has "$SCENARIOS" drain || has "$SCENARIOS" enqueue; then
        say "celery: enqueue and drain $JOBS_N no-op jobs"
        for ((run = 1; run <= RUNS; run++)); do celery_drain "$run" || true; done
    fi
    if has "$SCENARIOS" latency; then
        say "celery: enqueue-to-start latency at fractions $FRACTIONS of the drain rate"
        celery_latency || true
    fi
    if has "$SCENARIOS" async; then
        say "celery: no-op latency at $ASYNC_RATE/s, idle and with $BURN_MS ms burn jobs on CPU0"
        celery_async || true
    fi
}

# ---------------------------------------------------------------- sluice
# The same scenarios against `sluice server`: the server (API, store writer and
# workers in one process; SQLite inside it) on CPU0, the Rust load generator
# (crates/jobs/examples/jobs_load) on CPU1. Rows are labelled sluice-sqlite and
# sluice-postgres. Each step starts from an empty store: a fresh SQLite file
# under $RUN/state, or the database sluice_bench_<stamp> dropped and created
# again on 127.0.0.1:5432 (dropped on exit).
SL_PORT=""
SL_URL=""
SL_PID=""
SL_DB=""
SL_BACKEND=""
PG_DB=""
PG_ADMIN=(psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt)

# lg SECONDS ARGS...: the sluice load generator on CPU1, bounded, against the running server.
lg() {
    local secs=$1
    shift
    log_cmd "taskset -c 1 $LOADGEN $* --url $SL_URL"
    timeout "$secs" taskset -c 1 "$LOADGEN" "$@" --url "$SL_URL" 2>>"$STATE/loadgen-sluice.log"
}

# sl_workers: the server's --workers for the current backend.
sl_workers() {
    if [[ $SL_WORKERS =~ ^[0-9]+$ ]]; then echo "$SL_WORKERS"; return; fi
    local kv
    for kv in ${SL_WORKERS//,/ }; do
        [[ ${kv%%=*} == "$SL_BACKEND" ]] && { echo "${kv#*=}"; return; }
    done
    echo 64 # the server's default
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# sluice_fresh_db: an empty store for the current backend; sets SL_DB.
sluice_fresh_db() {
    case $SL_BACKEND in
    sqlite)
        rm -f "$STATE"/sluice.db "$STATE"/sluice.db-wal "$STATE"/sluice.db-shm
        SL_DB=sqlite://$STATE/sluice.db
        ;;
    postgres)
        timeout 60 "${PG_ADMIN[@]}" -c "DROP DATABASE IF EXISTS $PG_DB" -c "CREATE DATABASE $PG_DB" >/dev/null
        SL_DB=postgres://postgres@127.0.0.1:5432/$PG_DB
        ;;
    esac
}

# sluice_start WORKERS [SERVER ARGS...]: `sluice server` on CPU0 on SL_DB, bounded wait for /healthz.
sluice_start() {
    local workers=$1 i
    shift
    SL_PORT=$(free_port)
    SL_URL=http://127.0.0.1:$SL_PORT
    start "sluice-$SL_BACKEND" 0 "$SLUICE" server --db "$SL_DB" --listen "127.0.0.1:$SL_PORT" --workers "$workers" \
        --cpu-threads 1 "$@"
    SL_PID=$LAST_PID
    for ((i = 0; i < 300; i++)); do
        curl -fsS -o /dev/null "$SL_URL/healthz" 2>/dev/null && return 0
        kill -0 "$SL_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z ${SL_QUIET:-} ]]; then
        fail "sluice server ($SL_BACKEND) did not come up (log: $STATE/sluice-$SL_BACKEND.log)"
        tail -5 "$STATE/sluice-$SL_BACKEND.log" >&2 || true
    fi
    stop "$SL_PID"
    return 1
}

SL_DRAIN_RATES=()
SL_E2E_RATES=()
# sluice_through RUN [calibrate]: N no-op jobs one per POST /v1/jobs from $SL_SINGLE_CONC
# connections to a server with workers, until none is unfinished: the end-to-end rate
# (scenario through). The server does the API's work and the jobs' on the same CPU, so
# this, not the drain rate, is the most it sustains when jobs arrive one per request:
# the latency rates are fractions of it.
sluice_through() {
    local run=$1 mode=${2:-} n=$JOBS_N res sys=sluice-$SL_BACKEND
    [[ $mode == calibrate ]] && n=$((JOBS_N < 10000 ? JOBS_N : 10000))
    sluice_fresh_db
    sluice_start "$(sl_workers)" || return 1
    if ! res=$(lg $((n / 50 + 660)) enqueue --n "$n" --batch 1 --conc "$SL_SINGLE_CONC" --wait-done true); then
        fail "$sys end-to-end run of $n jobs failed: $res"
        stop "$SL_PID"
        return 1
    fi
    stop "$SL_PID"
    SL_E2E_RATES+=("$(jget "$res" done_jobs_per_s)")
    if [[ -z $mode ]]; then
        row through "$sys" "$run" "$res" "workers=$(sl_workers)"
        printf '   through  %s run %d: %8s jobs/s  (%s jobs one per request, %s connections, submitted at %s jobs/s)\n' "$sys" "$run" \
            "$(jget "$res" done_jobs_per_s)" "$n" "$SL_SINGLE_CONC" "$(jget "$res" jobs_per_s)" >&2
    else
        note "$sys: calibration end-to-end run of $n jobs: $(jget "$res" done_jobs_per_s) jobs/s (sets the latency rates)"
    fi
}

# sluice_drain RUN [calibrate]: queue N no-op jobs in batches of 1,000 through the API
# with no workers (scenario enqueue), then restart the server with workers and time
# the drain (scenario drain); then, for enqueue, N jobs one per POST /v1/jobs.
sluice_drain() {
    local run=$1 mode=${2:-} n=$JOBS_N res sys=sluice-$SL_BACKEND ids=$STATE/drain-ids.txt
    [[ $mode == calibrate ]] && n=$((JOBS_N < 10000 ? JOBS_N : 10000))
    sluice_fresh_db
    sluice_start 0 || return 1
    if ! res=$(lg $((n / 50 + 60)) enqueue --n "$n" --batch 1000 --conc 1 --ids "$ids"); then
        fail "$sys enqueue of $n jobs failed: $res"
        stop "$SL_PID"
        return 1
    fi
    stop "$SL_PID"
    if [[ -z $mode ]] && has "$SCENARIOS" enqueue; then
        row enqueue "$sys" "$run" "$res"
        printf '   enqueue  %s run %d: %8s jobs/s  (%s jobs, %s)\n' "$sys" "$run" "$(jget "$res" jobs_per_s)" "$n" "$(jget "$res" mode)" >&2
    fi
    if [[ -n $mode ]] || has "$SCENARIOS" drain; then
        sluice_start "$(sl_workers)" || return 1
        local ok=1
        local broker=()
        [[ $SL_BACKEND == postgres ]] && broker=(--broker-comm postgres)
        res=$(lg "$(drain_timeout)" drain-wait --ids "$ids" --n "$n" --pid "$SL_PID" "${broker[@]}" --timeout "$(drain_timeout)") || ok=0
        stop "$SL_PID"
        if ((!ok)) || [[ -z $(jget "$res" jobs_per_s) ]]; then
            fail "$sys drain of $n jobs failed: $res"
            return 1
        fi
        SL_DRAIN_RATES+=("$(jget "$res" jobs_per_s)")
        if [[ -z $mode ]]; then
            row drain "$sys" "$run" "$res" "workers=$(sl_workers)"
            printf '   drain    %s run %d: %8s jobs/s  server %s µs/job  database %s s CPU  results stored %s/%s\n' "$sys" "$run" \
                "$(jget "$res" jobs_per_s)" "$(jget "$res" worker_cpu_us_per_job)" "$(jget "$res" broker_cpu_s)" "$(jget "$res" results_stored)" "$n" >&2
        else
            note "$sys: calibration drain of $n jobs: $(jget "$res" jobs_per_s) jobs/s (sets the latency rates)"
        fi
    fi
    if [[ -z $mode ]] && has "$SCENARIOS" enqueue; then
        sluice_fresh_db
        sluice_start 0 || return 1
        if res=$(lg $((n / 50 + 60)) enqueue --n "$n" --batch 1 --conc "$SL_SINGLE_CONC"); then
            row enqueue "$sys" "$run" "$res"
            printf '   enqueue  %s run %d: %8s jobs/s  (%s jobs, %s)\n' "$sys" "$run" "$(jget "$res" jobs_per_s)" "$n" "$(jget "$res" mode)" >&2
        else
            fail "$sys enqueue of $n single jobs failed: $res"
        fi
        stop "$SL_PID"
    fi
}

# sluice_window SCENARIO RUN RATE [KEY=VALUE...]: one open-loop window against the running server.
sluice_window() {
    local sc=$1 run=$2 rate=$3 res
    shift 3
    if ! res=$(lg $((LAT_SECS + 100)) latency --rate "$rate" --secs "$LAT_SECS" --warm 1 --wait 60); then
        fail "sluice-$SL_BACKEND $sc at $rate jobs/s: probes missing or the generator failed: ${res:-no output}"
        [[ -n $res ]] || return 1
    fi
    window_row "sluice-$SL_BACKEND" "$sc" "$run" "$rate" "$res" "$@"
}

sluice_latency() {
    local max=$MAX_RATE frac rate run sys=sluice-$SL_BACKEND
    if [[ -z $max ]]; then
        if ((${#SL_E2E_RATES[@]})); then
            max=$(median "${SL_E2E_RATES[@]}")
        else
            say "$sys: calibration end-to-end run for the latency rates"
            sluice_through 0 calibrate || return 1
            max=${SL_E2E_RATES[-1]}
        fi
    fi
    note "$sys: latency rates are fractions $FRACTIONS of $max jobs/s, its end-to-end rate with one job per request (scenario through); its drain rate counts only running queued jobs, while here the same CPU also serves every submission"
    sluice_fresh_db
    sluice_start "$(sl_workers)" || return 1
    for frac in ${FRACTIONS//,/ }; do
        rate=$(awk -v m="$max" -v f="$frac" 'BEGIN {r = int(m * f + 0.5); print (r < 1 ? 1 : r)}')
        for ((run = 1; run <= RUNS; run++)); do
            sluice_window latency "$run" "$rate" "fraction=$frac" "max_rate=$max"
        done
    done
    stop "$SL_PID"
}

# The burn jobs go to a queue of their own, bounded to one more job than the CPU
# pool has threads (so the pool never waits for work): the no-op probes on the
# default queue keep their share of job slots, as Celery's separate burn worker does.
sluice_async() {
    local run k left res sys=sluice-$SL_BACKEND
    k=$(((LAT_SECS + 1 + 20) * 1000 / BURN_MS))
    for ((run = 1; run <= RUNS; run++)); do
        sluice_fresh_db
        sluice_start "$(sl_workers)" --queues default,burn:2 || return 1
        sluice_window async "$run" "$ASYNC_RATE" phase=idle
        if ! lg 120 burn-fill --n "$k" --ms "$BURN_MS" --queue burn >/dev/null; then
            fail "$sys burn-fill failed"
            stop "$SL_PID"
            return 1
        fi
        sleep 1 # the pool is busy before the window opens
        sluice_window async "$run" "$ASYNC_RATE" phase=burn "burn_ms=$BURN_MS"
        res=$(lg 30 queued --queue burn) || true
        left=$(jget "$res" queued)
        if [[ ${left:-0} == 0 ]]; then
            note "$sys async run $run: the burn queue ran dry during the window: CPU0 was not saturated throughout"
        fi
        stop "$SL_PID"
    done
}

# sluice_backend_ok: whether this build's server opens the current backend (the
# PostgreSQL store may not be in the build yet).
sluice_backend_ok() {
    local out
    if sluice_fresh_db && SL_QUIET=1 sluice_start 0; then
        stop "$SL_PID"
        return 0
    fi
    out=$(tail -3 "$STATE/sluice-$SL_BACKEND.log" 2>/dev/null | tr '\n' ' ')
    say "sluice: the $SL_BACKEND store does not open in this build; skipped ($out)"
    note "sluice-$SL_BACKEND: skipped, the server does not open it in this build: $out"
    return 1
}

pg_cleanup() {
    [[ -n $PG_DB ]] || return 0
    timeout 60 "${PG_ADMIN[@]}" -c "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || warn "could not drop database $PG_DB"
}

run_sluice() {
    if ! timeout 10 "$SLUICE" server --help >/dev/null 2>&1; then
        say "sluice: $SLUICE server --help fails (build with --build); skipped"
        note "sluice: $SLUICE not built; skipped"
        return 0
    fi
    if [[ ! -x $LOADGEN ]]; then
        say "sluice: load generator $LOADGEN missing (build with --build); skipped"
        note "sluice: load generator not built; skipped"
        return 0
    fi
    local backend run
    for backend in ${SL_BACKENDS//,/ }; do
        SL_BACKEND=$backend
        SL_DRAIN_RATES=()
        SL_E2E_RATES=()
        if [[ $backend == postgres ]]; then
            if ! timeout 10 "${PG_ADMIN[@]}" -c 'select 1' >/dev/null 2>&1; then
                say "sluice: no PostgreSQL on 127.0.0.1:5432 (user postgres, trust); postgres skipped"
                note "sluice-postgres: skipped, no PostgreSQL on 127.0.0.1:5432"
                continue
            fi
            PG_DB=sluice_bench_${STAMP,,}
            note "sluice-postgres: its server is not pinned (as Redis is not for Celery): its CPU, all postgres processes' (other users' included), is the broker CPU of the drain; PostgreSQL $(timeout 10 "${PG_ADMIN[@]}" -c 'show server_version'), synchronous_commit $(timeout 10 "${PG_ADMIN[@]}" -c 'show synchronous_commit'), fsync $(timeout 10 "${PG_ADMIN[@]}" -c 'show fsync') (as found; not changed), database $PG_DB (dropped on exit)"
        else
            note "sluice-sqlite: WAL, synchronous=NORMAL (sluice's default): a commit survives a crash of the process; a power loss may lose the last commits (as Redis's appendfsync everysec may lose up to a second)"
        fi
        sluice_backend_ok || continue
        if has "$SCENARIOS" drain || has "$SCENARIOS" enqueue; then
            say "sluice-$backend: enqueue and drain $JOBS_N no-op jobs (server --workers $(sl_workers))"
            for ((run = 1; run <= RUNS; run++)); do sluice_drain "$run" || true; done
        fi
        if has "$SCENARIOS" enqueue || { has "$SCENARIOS" latency && [[ -z $MAX_RATE ]]; }; then
            say "sluice-$backend: $JOBS_N no-op jobs one per request, enqueued and run (end to end)"
            for ((run = 1; run <= RUNS; run++)); do sluice_through "$run" || true; done
        fi
        if has "$SCENARIOS" latency; then
            say "sluice-$backend: enqueue-to-start latency at fractions $FRACTIONS of the drain rate"
            sluice_latency || true
        fi
        if has "$SCENARIOS" async; then
            say "sluice-$backend: no-op latency at $ASYNC_RATE/s, idle and with $BURN_MS ms burn jobs on CPU0"
            sluice_async || true
        fi
    done
}

# ---------------------------------------------------------------- apalis
# The same scenarios against apalis 1.0 (bench/jobs/apalis: apalis-bench, its own
# Cargo workspace). One apalis-bench process per step, pinned to CPU0, holds the
# producer (in process: a thread on the intended times and tokio tasks pushing),
# the workers, and for SQLite the database; nothing runs on CPU1. Rows are
# labelled apalis-sqlite and apalis-postgres. Each step starts from an empty store:
# a fresh SQLite file under $RUN/state, or the database apalis_bench on
# 127.0.0.1:5432, dropped and created again (and dropped on exit).
APALIS=${APALIS_BIN:-$ROOT/bench/jobs/apalis/target/release/apalis-bench}
AP_BACKEND=""
AP_DB=""
AP_PG_DB=apalis_bench
AP_PG_USED=0
AP_DRAIN_RATES=()

build_apalis() {
    has "$PEERS" apalis || return 0
    ((BUILD)) || [[ ! -x $APALIS ]] || return 0
    say "building apalis-bench (release, nice -n 19; its own workspace and target dir)"
    log_cmd "nice -n 19 cargo build --release --manifest-path $ROOT/bench/jobs/apalis/Cargo.toml"
    nice -n 19 cargo build --release --manifest-path "$ROOT/bench/jobs/apalis/Cargo.toml" || warn "apalis-bench did not build"
}

apalis_pg_cleanup() {
    ((${AP_PG_USED:-0})) || return 0
    timeout 60 "${PG_ADMIN[@]}" -c "DROP DATABASE IF EXISTS $AP_PG_DB" >/dev/null 2>&1 || warn "could not drop database $AP_PG_DB"
}

# ap_conc: the workers' concurrency for the current backend.
ap_conc() {
    if [[ $AP_CONC =~ ^[0-9]+$ ]]; then echo "$AP_CONC"; return; fi
    local kv
    for kv in ${AP_CONC//,/ }; do
        [[ ${kv%%=*} == "$AP_BACKEND" ]] && { echo "${kv#*=}"; return; }
    done
    echo 64
}

# ap_fresh_db: an empty store for the current backend; sets AP_DB.
ap_fresh_db() {
    case $AP_BACKEND in
    sqlite)
        rm -f "$STATE"/apalis.db "$STATE"/apalis.db-wal "$STATE"/apalis.db-shm
        AP_DB=$STATE/apalis.db
        ;;
    postgres)
        timeout 60 "${PG_ADMIN[@]}" -c "DROP DATABASE IF EXISTS $AP_PG_DB" -c "CREATE DATABASE $AP_PG_DB" >/dev/null
        AP_DB=postgres://postgres@127.0.0.1:5432/$AP_PG_DB
        ;;
    esac
}

# ab SECONDS CMD [ARGS...]: apalis-bench CMD on a fresh store, pinned to CPU0, bounded;
# its JSON lines on stdout. Called in $(...): a subshell, so it sets nothing here.
ab() {
    local secs=$1 cmd=$2
    shift 2
    ap_fresh_db || return 1
    log_cmd "taskset -c 0 $APALIS $cmd $AP_BACKEND $AP_DB $*"
    timeout "$secs" taskset -c 0 "$APALIS" "$cmd" "$AP_BACKEND" "$AP_DB" "$@" 2>>"$STATE/apalis-$AP_BACKEND.log"
}

# apalis_drain RUN [calibrate]: N no-op jobs pushed in chunks of 1,000 (scenario enqueue),
# then drained by one worker (scenario drain); then, for enqueue, N pushed one at a time.
apalis_drain() {
    local run=$1 mode=${2:-} n=$JOBS_N res enq sys=apalis-$AP_BACKEND ok=1
    [[ $mode == calibrate ]] && n=$((JOBS_N < 10000 ? JOBS_N : 10000))
    if [[ -n $mode ]] || has "$SCENARIOS" drain; then
        # bounded: assumes at least 25 jobs/s (apalis-sqlite's fetch slows as its table grows)
        res=$(ab $((n / 25 + 120)) drain --n "$n" --conc "$(ap_conc)") || ok=0
        enq=$(sed -n 1p <<<"$res")
        res=$(sed -n 2p <<<"$res")
        if ((!ok)) || [[ -z $res || -z $(jget "$res" jobs_per_s) ]]; then
            fail "$sys drain of $n jobs failed: ${res:-no output} (log: $STATE/apalis-$AP_BACKEND.log)"
            return 1
        fi
        AP_DRAIN_RATES+=("$(jget "$res" jobs_per_s)")
        if [[ -n $mode ]]; then
            note "$sys: calibration drain of $n jobs: $(jget "$res" jobs_per_s) jobs/s (sets the latency rates)"
            return 0
        fi
        row drain "$sys" "$run" "$res"
        local db_cpu
        db_cpu=$(jget "$res" broker_cpu_s)
        db_cpu=${db_cpu:+$db_cpu s}
        printf '   drain    %s run %d: %8s jobs/s  process %s µs/job  database CPU %s  results stored %s/%s  (concurrency %s)\n' "$sys" "$run" \
            "$(jget "$res" jobs_per_s)" "$(jget "$res" worker_cpu_us_per_job)" "${db_cpu:-in process}" "$(jget "$res" results_stored)" "$n" "$(ap_conc)" >&2
    elif ! enq=$(ab $((n / 50 + 60)) enqueue --n "$n" --batch 1000); then
        fail "$sys enqueue of $n jobs failed: ${enq:-no output}"
        return 1
    fi
    has "$SCENARIOS" enqueue || return 0
    row enqueue "$sys" "$run" "$enq"
    printf '   enqueue  %s run %d: %8s jobs/s  (%s jobs, %s)\n' "$sys" "$run" "$(jget "$enq" jobs_per_s)" "$n" "$(jget "$enq" mode)" >&2
    if res=$(ab $((n / 50 + 60)) enqueue --n "$n" --batch 1); then
        row enqueue "$sys" "$run" "$res"
        printf '   enqueue  %s run %d: %8s jobs/s  (%s jobs, %s)\n' "$sys" "$run" "$(jget "$res" jobs_per_s)" "$n" "$(jget "$res" mode)" >&2
    else
        fail "$sys enqueue of $n single jobs failed: ${res:-no output}"
    fi
}

# apalis_window SCENARIO RUN RATE [KEY=VALUE...]: one latency window in its own process.
apalis_window() {
    local sc=$1 run=$2 rate=$3 res
    shift 3
    if ! res=$(ab $((LAT_SECS + 200)) latency --rate "$rate" --secs "$LAT_SECS" --warm 1 --wait 60 --conc "$(ap_conc)"); then
        fail "apalis-$AP_BACKEND $sc at $rate jobs/s: probes missing or the program failed: ${res:-no output}"
        [[ -n $res ]] || return 1
    fi
    window_row "apalis-$AP_BACKEND" "$sc" "$run" "$rate" "$res" "$@"
}

apalis_latency() {
    local max=$MAX_RATE frac rate run sys=apalis-$AP_BACKEND
    if [[ -z $max ]]; then
        if ((${#AP_DRAIN_RATES[@]})); then
            max=$(median "${AP_DRAIN_RATES[@]}")
        else
            say "$sys: calibration drain for the latency rates"
            apalis_drain 0 calibrate || return 1
            max=${AP_DRAIN_RATES[-1]}
        fi
    fi
    note "$sys: latency rates are fractions $FRACTIONS of $max jobs/s, its drain rate (its producer runs in the same process, on the same CPU)"
    for frac in ${FRACTIONS//,/ }; do
        rate=$(awk -v m="$max" -v f="$frac" 'BEGIN {r = int(m * f + 0.5); print (r < 1 ? 1 : r)}')
        for ((run = 1; run <= RUNS; run++)); do
            apalis_window latency "$run" "$rate" "fraction=$frac" "max_rate=$max"
        done
    done
}

# The burn jobs go to a queue of their own with a worker of their own (concurrency 2,
# fetching 2 at a time), in the same process as the probes' worker, as Celery's
# separate burn worker (prefetch 1) and sluice's burn:2 queue do. A burn job runs its
# busy loop on tokio's blocking pool: apalis has no CPU pool of its own.
apalis_async() {
    local run k res idle burn left sys=apalis-$AP_BACKEND
    k=$(((LAT_SECS + 1 + 20) * 1000 / BURN_MS))
    for ((run = 1; run <= RUNS; run++)); do
        if ! res=$(ab $((2 * LAT_SECS + 300)) async --rate "$ASYNC_RATE" --secs "$LAT_SECS" --warm 1 --wait 60 --conc "$(ap_conc)" \
            --burn-ms "$BURN_MS" --burn-n "$k" --burn-conc 2); then
            fail "$sys async run $run: probes missing or the program failed: ${res:-no output}"
            [[ -n $res ]] || return 1
        fi
        idle=$(sed -n 1p <<<"$res")
        burn=$(sed -n 2p <<<"$res")
        [[ -n $idle ]] && window_row "$sys" async "$run" "$ASYNC_RATE" "$idle" phase=idle
        [[ -n $burn ]] || continue
        window_row "$sys" async "$run" "$ASYNC_RATE" "$burn" phase=burn "burn_ms=$BURN_MS"
        left=$(jget "$burn" burn_left)
        if [[ ${left:-0} == 0 ]]; then
            note "$sys async run $run: the burn queue ran dry during the window: CPU0 was not saturated throughout"
        fi
    done
}

run_apalis() {
    if [[ ! -x $APALIS ]]; then
        say "apalis: $APALIS missing (it did not build); skipped"
        note "apalis: apalis-bench not built; skipped"
        return 0
    fi
    local backend run
    for backend in ${AP_BACKENDS//,/ }; do
        AP_BACKEND=$backend
        AP_DRAIN_RATES=()
        if [[ $backend == postgres ]]; then
            if ! timeout 10 "${PG_ADMIN[@]}" -c 'select 1' >/dev/null 2>&1; then
                say "apalis: no PostgreSQL on 127.0.0.1:5432 (user postgres, trust); postgres skipped"
                note "apalis-postgres: skipped, no PostgreSQL on 127.0.0.1:5432"
                continue
            fi
            AP_PG_USED=1 # dropped on exit
            note "apalis-postgres: the apalis-bench process (producer and workers) on CPU0; PostgreSQL not pinned (its CPU, all postgres processes', is the drain's broker CPU), synchronous_commit $(timeout 10 "${PG_ADMIN[@]}" -c 'show synchronous_commit'), fsync $(timeout 10 "${PG_ADMIN[@]}" -c 'show fsync') (as found; not changed), database $AP_PG_DB created fresh per step (dropped on exit); workers woken by LISTEN/NOTIFY (apalis's Pubsub, as with_pubsub(), with the notifications coalesced: see bench/jobs/README.md)"
        else
            note "apalis-sqlite: one apalis-bench process on CPU0 holds the producer (in process), the workers and the database; WAL, synchronous=NORMAL on every measured connection (as sluice); workers woken by an update hook on inserts (as apalis's SqliteStorageWithHook, with the events coalesced: see bench/jobs/README.md)"
        fi
        if has "$SCENARIOS" drain || has "$SCENARIOS" enqueue; then
            say "apalis-$backend: enqueue and drain $JOBS_N no-op jobs (concurrency $(ap_conc))"
            for ((run = 1; run <= RUNS; run++)); do apalis_drain "$run" || true; done
        fi
        if has "$SCENARIOS" latency; then
            say "apalis-$backend: enqueue-to-start latency at fractions $FRACTIONS of the drain rate"
            apalis_latency || true
        fi
        if has "$SCENARIOS" async; then
            say "apalis-$backend: no-op latency at $ASYNC_RATE/s, idle and with $BURN_MS ms burn jobs on CPU0"
            apalis_async || true
        fi
    done
}

# ---------------------------------------------------------------- main
install_deps
build_sluice
build_apalis
setup_redis

{
    echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "command:  bench/jobs.sh ${ARGS[*]}"
    echo "machine:  $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
    echo "versions: Celery $("$VENV/bin/python" -c 'import celery; print(celery.__version__)' 2>/dev/null || echo -), kombu $("$VENV/bin/python" -c 'import kombu; print(kombu.__version__)' 2>/dev/null || echo -), redis-py $("$VENV/bin/python" -c 'import redis; print(redis.__version__)' 2>/dev/null || echo -), Redis $(rcli info server | tr -d '\r' | awk -F: '$1 == "redis_version" {print $2}'), Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo -), sluice $(cd "$ROOT" && git rev-parse --short HEAD)"
    echo "settings: $RUNS run(s), $JOBS_N jobs, latency windows ${LAT_SECS}s (+1 s warm-up) at fractions $FRACTIONS, async probes at ${ASYNC_RATE}/s with ${BURN_MS} ms burn jobs"
    has "$PEERS" celery && echo "celery:   prefork -c $CELERY_CONC, worker_prefetch_multiplier $CELERY_PREFETCH, task_acks_late, task_reject_on_worker_lost, results in Redis DB $REDIS_DB, --without-gossip --without-mingle --without-heartbeat, -l WARNING; worker on CPU0, producer on CPU1"
    has "$PEERS" sluice && echo "sluice:   server --workers ($SL_WORKERS) --cpu-threads 1 on CPU0 (API, store and workers in one process), load generator target/release/examples/jobs_load on CPU1; stores: $SL_BACKENDS; SQLite WAL synchronous=NORMAL$(has "$SL_BACKENDS" postgres && printf '; PostgreSQL synchronous_commit %s' "$(timeout 5 psql -h 127.0.0.1 -U postgres -d postgres -qAt -c 'show synchronous_commit' 2>/dev/null || echo -)")"
    has "$PEERS" apalis && echo "apalis:   apalis 1.0.0, apalis-sqlite/apalis-postgres 1.0.0 (bench/jobs/apalis), one process per step on CPU0 (producer in process, workers, SQLite inside); concurrency ($AP_CONC); stores: $AP_BACKENDS; SQLite WAL synchronous=NORMAL"
    echo "redis:    appendonly $(rcli config get appendonly | sed -n 2p), appendfsync $(rcli config get appendfsync | sed -n 2p), save '$(rcli config get save | sed -n 2p)'"
    echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at start"
} >"$RUN_DIR/header.txt"
cat "$RUN_DIR/header.txt" >&2

has "$PEERS" celery && run_celery
has "$PEERS" sluice && run_sluice
has "$PEERS" apalis && run_apalis
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at end" >>"$RUN_DIR/header.txt"

python3 "$CONF/report.py" --header "$RUN_DIR/header.txt" --results "$RESULTS" --commands "$CMDS" | tee "$RUN_DIR/report.md"
echo "raw output: ${RUN_DIR#"$ROOT"/}" >&2
if [[ -e $RUN_DIR/FAILED ]]; then
    echo "FAILED: see the FAIL lines above" >&2
    exit 1
fi
