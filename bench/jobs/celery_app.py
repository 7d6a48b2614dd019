"""Celery side of bench/jobs.sh: the app, its durable settings and the three tasks.

Configured from the environment so the script, the worker and the load generator
agree without a config file:
  BENCH_REDIS_URL   redis://127.0.0.1:6379/13 (a dedicated DB; the script flushes only it)
  BENCH_PREFETCH    worker_prefetch_multiplier (default 64: Celery's optimizing guide
                    says "lots of short tasks ... this number should be large", 64 or 128)

Durable settings (stated in bench/jobs/README.md and in every report):
  task_acks_late + task_reject_on_worker_lost: a message is acknowledged after the task
  ran, so a killed worker's jobs are redelivered (at-least-once, like sluice's lease);
  with the Redis transport the unacked messages live in Redis ("unacked" hash) until then.
  Results go to the Redis backend (every job's final state is stored, as sluice stores it).
  Redis itself runs with appendonly yes / appendfsync everysec for the run.
"""

import os
import time

from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

app = Celery("sluicebench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    # Durability: ack after the task ran; a worker lost mid-task requeues it.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_default_delivery_mode="persistent",
    broker_transport_options={"visibility_timeout": 3600},  # Celery's default, stated
    # Every job's state is recorded, as the sluice store records it.
    task_ignore_result=False,
    result_expires=86400,
    # Throughput settings from Celery's "Optimizing" guide for many short tasks.
    worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "64")),
    worker_disable_rate_limits=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)

_sinks = {}


def _sink(path):
    """One O_APPEND descriptor per process and path: small writes are atomic, so
    every child process can append to the same file without a lock."""
    fd = _sinks.get(path)
    if fd is None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _sinks[path] = fd
    return fd


@app.task(name="noop")
def noop():
    """The no-op job of the drain scenario."""
    return None


@app.task(name="probe")
def probe(t_enqueue, sink):
    """A no-op that records when it started, for enqueue-to-start latency.
    t_enqueue is the producer's intended send time (open loop), in seconds."""
    t_start = time.time()
    os.write(_sink(sink), b"%.6f %.6f\n" % (t_enqueue, t_start))
    return None


@app.task(name="burn")
def burn(ms):
    """CPU-bound busy work for ms milliseconds (the issue's `burn {ms}` kind)."""
    end = time.process_time() + ms / 1000.0
    x = 0
    while time.process_time() < end:
        for i in range(1000):
            x += i * i
    return x & 0xFF
