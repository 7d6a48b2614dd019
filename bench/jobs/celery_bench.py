"""Load generator and probes for the Celery side of bench/jobs.sh.

Every subcommand is bounded (a --timeout or a fixed count) and prints one JSON
object on stdout; bench/jobs.sh adds the run's labels and stores it.

  enqueue     send N no-op jobs from one producer, no worker running: jobs/s
  drain       watch a queue of N jobs drain once a worker starts: jobs/s and the
              CPU seconds of the worker's processes (its session, from /proc)
  latency     open-loop probes at a fixed rate: enqueue-to-start p50/p99
  burn-fill   queue CPU-burning jobs (for the async-under-saturation scenario)
  ping        wait until a named worker answers a remote-control ping

The producer is a Celery app with the broker only: with the Redis result backend
configured, Celery's apply_async/send_task subscribes the *caller* to every task's
result channel (RedisBackend.on_task_call), which a fire-and-forget producer (a web
request handing off work) does not want. The workers do store every result.
"""

import argparse
import json
import os
import sys
import time

import redis
from celery import Celery

CLK_TCK = os.sysconf("SC_CLK_TCK")


def producer(url):
    app = Celery("sluicebench-producer", broker=url)
    app.conf.update(task_default_delivery_mode="persistent", broker_connection_retry_on_startup=True)
    return app


def session_cpu_secs(sid):
    """utime+stime of every live process in session sid, plus the leader's reaped
    children (cutime+cstime), in seconds."""
    ticks = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                line = f.read()
        except OSError:
            continue
        f_ = line[line.rindex(")") + 2 :].split()
        # f_[0] is field 3 (state): session is field 6, utime 14, stime 15, cutime 16, cstime 17.
        if int(f_[3]) != sid:
            continue
        ticks += int(f_[11]) + int(f_[12])
        if int(name) == sid:
            ticks += int(f_[13]) + int(f_[14])
    return ticks / CLK_TCK


def pid_cpu_secs(pid):
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            line = f.read()
    except OSError:
        return 0.0
    f_ = line[line.rindex(")") + 2 :].split()
    return (int(f_[11]) + int(f_[12])) / CLK_TCK


def out(obj):
    print(json.dumps(obj), flush=True)


def cmd_enqueue(a):
    app = producer(a.redis_url)
    # Open the connection before the clock starts.
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)
    r0 = os.times()
    t0 = time.perf_counter()
    for _ in range(a.n):
        app.send_task("noop", queue=a.queue)
    t1 = time.perf_counter()
    r1 = os.times()
    secs = t1 - t0
    out(
        {
            "n": a.n,
            "secs": round(secs, 4),
            "jobs_per_s": round(a.n / secs, 1),
            "producer_cpu_us_per_job": round((r1.user + r1.system - r0.user - r0.system) / a.n * 1e6, 1),
        }
    )


def cmd_drain(a):
    r = redis.Redis.from_url(a.redis_url)
    deadline = time.monotonic() + a.timeout
    start_len = r.llen(a.queue)
    if start_len < a.n:
        out({"error": f"queue {a.queue} holds {start_len} jobs, expected {a.n}"})
        return 1
    print("watching", file=sys.stderr, flush=True)
    if a.ready_file:
        open(a.ready_file, "w").close()
    # The window opens at the first job taken, so worker boot is not counted.
    while r.llen(a.queue) >= a.n:
        if time.monotonic() > deadline:
            out({"error": "no worker took a job before the timeout"})
            return 1
        time.sleep(0.002)
    t0 = time.perf_counter()
    with open(a.pid_file) as f:
        sid = int(f.read().strip())
    c0 = session_cpu_secs(sid)
    b0 = pid_cpu_secs(a.redis_pid)
    seen_empty = None
    while True:
        pipe = r.pipeline(transaction=False)
        pipe.llen(a.queue).hlen("unacked")
        left, unacked = pipe.execute()
        now = time.perf_counter()
        if left == 0 and unacked == 0:
            # Two empty looks in a row: a message between BRPOP and the unacked
            # hash is in neither for a moment.
            if seen_empty is not None:
                break
            seen_empty = now
        else:
            seen_empty = None
        if time.monotonic() > deadline:
            out({"error": f"drain timed out: {left} queued, {unacked} unacked"})
            return 1
        time.sleep(0.005)
    t1 = seen_empty
    c1 = session_cpu_secs(sid)
    b1 = pid_cpu_secs(a.redis_pid)
    done = sum(1 for _ in r.scan_iter(match="celery-task-meta-*", count=5000))
    secs = t1 - t0
    out(
        {
            "n": a.n,
            "secs": round(secs, 3),
            "jobs_per_s": round(a.n / secs, 1),
            "worker_cpu_s": round(c1 - c0, 2),
            "worker_cpu_us_per_job": round((c1 - c0) / a.n * 1e6, 1),
            "broker_cpu_s": round(b1 - b0, 2) if a.redis_pid else None,
            "results_stored": done,
        }
    )
    return 0 if done >= a.n else 1


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def send_open_loop(app, rate, secs, sink, queue):
    """Send rate*secs probes on a fixed schedule. Each carries its *intended* send
    time, so a producer or broker that falls behind shows up as latency (no
    coordinated omission). Returns (sent, seconds actually taken)."""
    n = int(rate * secs)
    interval = 1.0 / rate
    wall0 = time.time() + 0.05
    mono0 = time.monotonic() + 0.05
    for i in range(n):
        due = mono0 + i * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        app.send_task("probe", args=[wall0 + i * interval, sink], queue=queue)
    return n, time.monotonic() - mono0


def wait_lines(path, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                if sum(1 for _ in f) >= n:
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.05)


def cmd_latency(a):
    app = producer(a.redis_url)
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)
    if a.warm > 0:
        warm_sink = a.sink + ".warm"
        n, _ = send_open_loop(app, a.rate, a.warm, warm_sink, a.queue)
        wait_lines(warm_sink, n, a.wait)
    sent, took = send_open_loop(app, a.rate, a.secs, a.sink, a.queue)
    wait_lines(a.sink, sent, a.wait)
    lat = []
    try:
        with open(a.sink) as f:
            for line in f:
                t_enq, t_start = line.split()
                lat.append((float(t_start) - float(t_enq)) * 1000.0)
    except FileNotFoundError:
        pass
    lat.sort()
    res = {
        "rate": a.rate,
        "secs": a.secs,
        "sent": sent,
        "achieved_rate": round(sent / took, 1) if took > 0 else None,
        "started": len(lat),
        "missing": sent - len(lat),
        "p50_ms": round(percentile(lat, 50), 3) if lat else None,
        "p90_ms": round(percentile(lat, 90), 3) if lat else None,
        "p99_ms": round(percentile(lat, 99), 3) if lat else None,
        "max_ms": round(lat[-1], 3) if lat else None,
    }
    out(res)
    return 0 if res["missing"] == 0 else 1


def cmd_burn_fill(a):
    app = producer(a.redis_url)
    for _ in range(a.n):
        app.send_task("burn", args=[a.ms], queue=a.queue)
    out({"queued": a.n, "ms": a.ms})


def cmd_ping(a):
    from celery_app import app  # the worker's app: control replies come back through it

    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        try:
            replies = app.control.ping(destination=[a.name], timeout=0.5)
        except Exception:  # the broker may still be settling; retry until the deadline
            replies = []
            time.sleep(0.2)
        if replies:
            out({"ready": a.name})
            return 0
    out({"error": f"worker {a.name} did not answer a ping within {a.timeout}s"})
    return 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("enqueue")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--queue", default="jobs")

    s = sub.add_parser("drain")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--queue", default="jobs")
    s.add_argument("--pid-file", required=True, help="holds the worker's session id once it is started")
    s.add_argument("--ready-file", help="created once the watcher is in place")
    s.add_argument("--redis-pid", type=int, default=0)
    s.add_argument("--timeout", type=float, required=True)

    s = sub.add_parser("latency")
    s.add_argument("--rate", type=float, required=True)
    s.add_argument("--secs", type=float, required=True)
    s.add_argument("--warm", type=float, default=1.0)
    s.add_argument("--sink", required=True)
    s.add_argument("--queue", default="jobs")
    s.add_argument("--wait", type=float, default=60.0, help="how long to wait for the last probes to start")

    s = sub.add_parser("burn-fill")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--ms", type=int, required=True)
    s.add_argument("--queue", default="burn")

    s = sub.add_parser("ping")
    s.add_argument("--name", required=True)
    s.add_argument("--timeout", type=float, default=30.0)

    a = p.parse_args()
    fn = {
        "enqueue": cmd_enqueue,
        "drain": cmd_drain,
        "latency": cmd_latency,
        "burn-fill": cmd_burn_fill,
        "ping": cmd_ping,
    }[a.cmd]
    sys.exit(fn(a) or 0)


if __name__ == "__main__":
    main()
