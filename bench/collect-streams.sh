#!/usr/bin/env bash
# Stream sources into SQLite, and the PostgreSQL sink across an outage.
# Called by bench/collect.sh:
#
#   bench/collect.sh streams [N] [RUNS]      N records per transport (default 200,000), RUNS runs (default 3)
#   bench/collect.sh pg-fault [N] [PER_SEC]  N records (default 60,000) published at PER_SEC (default 2,000)
#
# streams: for each transport, N records {"id":"I","n":I} go into one
# `sluice collect` with a SQLite sink (defaults: batches of 1,000, buffer
# 1,000, when_full = "block"), which runs pinned to CPU 1 under
# /usr/bin/time -v; the load tools and the private broker run on CPU 0.
#   nats   N messages pre-published to a fresh JetStream stream (file
#          storage, the machine's nats-server), then sluice started: the
#          time from its start to the N-th row committed (the drain).
#   mqtt   a private Mosquitto (port 18830, no queue limit, 1,000 in
#          flight) keeps N QoS 1 messages for the collector's persistent
#          session, then sluice started: the same drain timing.
#   http   sluice started, then N records POSTed as NDJSON (500 per
#          request, 8 requests at once, retried on 503): the time until
#          the last request is answered 200, which sluice does only after
#          the commit.
# Then SIGTERM, and the table checked: every n exactly once. Reported:
# median records/s, CPU seconds per 100,000 records (sluice's user+sys over
# its whole run), peak RSS, exactly-once.
#
# pg-fault: a private PostgreSQL 15 cluster (Debian's initdb/pg_ctl, port
# 55432, in a temp dir; the machine's own PostgreSQL is not touched), a
# JetStream source into the postgres sink, a paced publisher; 8 s in, the
# cluster is stopped with `pg_ctl stop -m immediate` for 10 s and started
# again. Then every n is checked exactly once. Everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

what=$1
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
MQTT_PORT=${MQTT_PORT:-18830}
HTTP_PORT=${HTTP_PORT:-19480}
PG_PORT=${PG_PORT:-55432}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
WORK=$(mktemp -d /tmp/sluice-streams-bench.XXXXXX)
LOAD=target/release/examples/stream_load
SLUICE=target/release/sluice
PIDS=()
CLEANUP=()

cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for c in "${CLEANUP[@]}"; do eval "$c" >/dev/null 2>&1; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building sluice and stream_load (release)"
# NO_BUILD=1 uses the binaries already built (e.g. while another build holds the lock).
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p sluice -p sluice-collect --bin sluice --example stream_load

# Start sluice collect pinned to CPU 1 under /usr/bin/time; sets TIME_PID, SLUICE_PID.
start_sluice() {
  local config=$1 name=$2
  /usr/bin/time -v -o "$WORK/$name.time" taskset -c 1 "$SLUICE" --log warn collect -c "$config" \
    2>"$WORK/$name.log" &
  TIME_PID=$!
  PIDS+=("$TIME_PID")
  SLUICE_PID=""
  for _ in $(seq 1 100); do
    SLUICE_PID=$(pgrep -P "$TIME_PID" || true)
    [ -n "$SLUICE_PID" ] && break
    sleep 0.01
  done
  [ -n "$SLUICE_PID" ] || { echo "sluice did not start" >&2; exit 1; }
}

# SIGTERM sluice and wait for /usr/bin/time to write its figures.
stop_sluice() {
  kill -TERM "$SLUICE_PID" 2>/dev/null || true
  wait "$TIME_PID" || true
}

# "cpu_seconds rss_kib" from a /usr/bin/time -v file.
time_figures() {
  awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {r=$2}
              END {printf "%.3f %d\n", u + s, r}' "$1"
}

sink_toml() {
  cat <<EOF

[sinks.db]
kind = "sqlite"
inputs = ["$1"]
path = "$2"
EOF
}

streams() {
  local N=${1:-200000} RUNS=${2:-3}
  cat >"$WORK/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 1000
log_dest stderr
log_type error
EOF
  taskset -c 0 mosquitto -c "$WORK/mosquitto.conf" 2>"$WORK/mosquitto.log" &
  PIDS+=("$!")
  for _ in $(seq 1 50); do ss -ltn | grep -q ":$MQTT_PORT " && break; sleep 0.1; done

  echo "== $RUNS runs, $N records per transport; sluice on CPU 1, load and Mosquitto on CPU 0"
  : >"$WORK/runs"
  for run in $(seq 1 "$RUNS"); do
    for t in nats mqtt http; do
      local dir="$WORK/$t-$run" secs
      mkdir -p "$dir"
      case $t in
        nats)
          local stream="BENCH_$$_$run"
          CLEANUP+=("$LOAD nats-delete $NATS_URL $stream")
          taskset -c 0 "$LOAD" nats-publish "$NATS_URL" "$stream" "bench.$$.$run" "$N" >"$dir/publish"
          cat >"$dir/collect.toml" <<EOF
data_dir = "$dir/data"
[sources.in]
kind = "nats"
url = "$NATS_URL"
subject = "bench.$$.$run"
when_full = "block"
jetstream = { stream = "$stream", consumer = "c" }
EOF
          sink_toml in "$dir/out.db" >>"$dir/collect.toml"
          start_sluice "$dir/collect.toml" "$t-$run"
          secs=$(taskset -c 0 "$LOAD" wait "$dir/out.db" "$N" 600 | sed -n 's/.* secs=\([0-9.]*\).*/\1/p')
          "$LOAD" nats-delete "$NATS_URL" "$stream"
          ;;
        mqtt)
          local id="sluice-bench-$$-$run" url="mqtt://127.0.0.1:$MQTT_PORT"
          taskset -c 0 "$LOAD" mqtt-session "$url" "$id" "bench/$$/$run/#"
          taskset -c 0 "$LOAD" mqtt-publish "$url" "bench/$$/$run/x" "$N" >"$dir/publish"
          cat >"$dir/collect.toml" <<EOF
data_dir = "$dir/data"
[sources.in]
kind = "mqtt"
url = "$url"
topics = ["bench/$$/$run/#"]
client_id = "$id"
max_inflight = 1000
when_full = "block"
EOF
          sink_toml in "$dir/out.db" >>"$dir/collect.toml"
          start_sluice "$dir/collect.toml" "$t-$run"
          secs=$(taskset -c 0 "$LOAD" wait "$dir/out.db" "$N" 600 | sed -n 's/.* secs=\([0-9.]*\).*/\1/p')
          "$LOAD" mqtt-drop-session "$url" "$id"
          ;;
        http)
          cat >"$dir/collect.toml" <<EOF
data_dir = "$dir/data"
[sources.in]
kind = "http_push"
address = "127.0.0.1:$HTTP_PORT"
path = "/ingest"
id_field = "id"
when_full = "block"
EOF
          sink_toml in "$dir/out.db" >>"$dir/collect.toml"
          start_sluice "$dir/collect.toml" "$t-$run"
          for _ in $(seq 1 100); do ss -ltn | grep -q ":$HTTP_PORT " && break; sleep 0.02; done
          secs=$(taskset -c 0 "$LOAD" http-push "http://127.0.0.1:$HTTP_PORT/ingest" "$N" 500 8 \
            | tee "$dir/publish" | sed -n 's/.* secs=\([0-9.]*\).*/\1/p')
          ;;
      esac
      stop_sluice
      local ok=yes
      "$LOAD" verify "$dir/out.db" "$N" >"$dir/verify" || ok=NO
      echo "$t $N $secs $(time_figures "$WORK/$t-$run.time") $ok $(cat "$dir/verify")" | tee -a "$WORK/runs"
      rm -rf "$dir/out.db"*
    done
  done

  python3 - "$WORK/runs" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    t, n, secs, cpu, rss, ok, *_ = line.split()
    rows.setdefault(t, []).append((int(n), float(secs), float(cpu), int(rss), ok))
print()
print(f'{"transport":10}{"records/s":>12}{"CPU s/100k":>12}{"peak RSS MiB":>14}{"exactly once":>14}')
for t in ("nats", "mqtt", "http"):
    r = rows.get(t)
    if not r:
        continue
    rate = statistics.median(n / s for n, s, *_ in r)
    cpu = statistics.median(c / n * 1e5 for n, _, c, *_ in r)
    rss = statistics.median(m / 1024 for *_, m, _ in r)
    ok = all(o == "yes" for *_, o in r)
    print(f'{t:10}{rate:12,.0f}{cpu:12.2f}{rss:14.1f}{"yes" if ok else "NO":>14}')
PY
  echo
  echo "raw runs (transport N secs cpu_s rss_kib exactly_once verify):"
  cat "$WORK/runs"
}

pg_fault() {
  local N=${1:-60000} PER_SEC=${2:-2000}
  local pg="$WORK/pg" stream="PGFAULT_$$" dir="$WORK/pgfault"
  mkdir -p "$pg" "$dir"
  chmod 711 "$WORK"   # the postgres user must reach its directory
  chown postgres "$pg"
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  as_pg "$PG_BIN/initdb" -D "$pg/data" -A trust -U postgres >/dev/null
  local opts="-p $PG_PORT -k $pg -c listen_addresses=127.0.0.1"
  CLEANUP+=("runuser -u postgres -- $PG_BIN/pg_ctl -D $pg/data -m immediate stop || $PG_BIN/pg_ctl -D $pg/data -m immediate stop")
  CLEANUP+=("$LOAD nats-delete $NATS_URL $stream")
  as_pg "$PG_BIN/pg_ctl" -D "$pg/data" -o "$opts" -l "$pg/log" -w start >/dev/null
  local url="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  cat >"$dir/collect.toml" <<EOF
data_dir = "$dir/data"
[sources.in]
kind = "nats"
url = "$NATS_URL"
subject = "pgfault.$$"
jetstream = { stream = "$stream", consumer = "c" }

[sinks.pg]
kind = "postgres"
inputs = ["in"]
url = "$url"
timeout = "2s"
retry = { initial = "100ms", max = "1s" }
EOF
  echo "== pg-fault: $N records at $PER_SEC/s through JetStream into a private PostgreSQL on :$PG_PORT"
  start_sluice "$dir/collect.toml" pgfault
  taskset -c 0 "$LOAD" nats-publish "$NATS_URL" "$stream" "pgfault.$$" "$N" "$PER_SEC" >"$dir/publish" &
  local pub=$!
  sleep 8
  local before
  before=$("$LOAD" wait "$url" 1 5 | sed -n 's/rows=\([0-9]*\).*/\1/p')
  as_pg "$PG_BIN/pg_ctl" -D "$pg/data" -m immediate stop >/dev/null
  echo "stopped PostgreSQL (-m immediate) at $(date -u +%T) with $before rows"
  sleep 10
  as_pg "$PG_BIN/pg_ctl" -D "$pg/data" -o "$opts" -l "$pg/log" -w start >/dev/null
  echo "started PostgreSQL again at $(date -u +%T)"
  local t0
  t0=$(date +%s.%N)
  local caught
  caught=$("$LOAD" wait "$url" "$N" 300)
  wait "$pub"
  echo "publisher: $(cat "$dir/publish")"
  echo "all $N rows $(echo "$(date +%s.%N) - $t0" | bc) s after the restart ($caught)"
  # Longer than a redelivery would take to show up as an extra row.
  sleep 2
  stop_sluice
  local ok=yes
  # Text payloads are stored as JSON strings in JSONB: unwrap, then read n.
  local check
  check=$(psql "$url" -Atc "WITH v AS (SELECT ((payload #>> '{}')::jsonb ->> 'n')::bigint AS n FROM records)
    SELECT count(*), count(DISTINCT n), min(n), max(n) FROM v")
  echo "rows|distinct n|min n|max n: $check"
  [ "$check" = "$N|$N|0|$((N - 1))" ] || ok=NO
  echo "write retries logged by sluice: $(grep -c 'write failed; retrying' "$WORK/pgfault.log" || true)"
  echo "sluice: cpu_s rss_kib = $(time_figures "$WORK/pgfault.time")"
  echo "exactly once: $ok"
  [ "$ok" = yes ]
}

case "$what" in
  streams) streams "${2:-}" "${3:-}" ;;
  pg-fault) pg_fault "${2:-}" "${3:-}" ;;
  *) echo "usage: bench/collect.sh streams [N] [RUNS] | pg-fault [N] [PER_SEC]" >&2; exit 2 ;;
esac
