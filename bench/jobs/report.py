"""Markdown report of a bench/jobs.sh run: medians per scenario and system, ratios of
every system to Celery once both ran, sluice/apalis ratios on the same store
(sluice-sqlite / apalis-sqlite, sluice-postgres / apalis-postgres), the targets of
issue 3, the notes and the exact commands."""

import argparse
import json
import statistics
from collections import OrderedDict, defaultdict

PEER = "celery"
STORES = ("sqlite", "postgres")


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def spread(vals, digits=1):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt(m, digits)
    return f"{fmt(m, digits)} ({fmt(min(vals), digits)}–{fmt(max(vals), digits)})"


def ratio(a, b, digits=2):
    if a is None or b in (None, 0):
        return "–"
    return f"{a / b:.{digits}f}×"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--header", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--commands", required=True)
    a = p.parse_args()

    rows, notes = [], []
    with open(a.results) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            (notes.append(d["note"]) if "note" in d else rows.append(d))

    by = defaultdict(list)
    for r in rows:
        by[(r["scenario"], r["system"])].append(r)
    systems = list(OrderedDict.fromkeys(r["system"] for r in rows))

    def col(sc, sys_, key, pred=None):
        return [r.get(key) for r in by[(sc, sys_)] if pred is None or pred(r)]

    out = []
    with open(a.header) as f:
        out.append("```\n" + f.read().rstrip() + "\n```\n")

    if any(sc == "drain" for sc, _ in by):
        n = next(r["n"] for r in rows if r["scenario"] == "drain")
        out.append(f"#### Drain {int(n):,} queued no-op jobs\n")
        out.append("| system | jobs/s (min–max) | worker CPU µs/job | broker CPU µs/job | results stored | jobs/s vs Celery |")
        out.append("|---|--:|--:|--:|--:|--:|")
        peer = med(col("drain", PEER, "jobs_per_s"))
        for s in systems:
            if not by[("drain", s)]:
                continue
            broker = [
                (r["broker_cpu_s"] / r["n"] * 1e6) if r.get("broker_cpu_s") is not None else None
                for r in by[("drain", s)]
            ]
            stored = col("drain", s, "results_stored")
            out.append(
                f"| {s} | {spread(col('drain', s, 'jobs_per_s'))} | {spread(col('drain', s, 'worker_cpu_us_per_job'), 0)} "
                f"| {spread(broker, 0)} | {int(min(stored)):,}/{int(max(col('drain', s, 'n'))):,} | "
                f"{'–' if s == PEER else ratio(med(col('drain', s, 'jobs_per_s')), peer)} |"
            )
        out.append("")

    if any(sc == "enqueue" for sc, _ in by):
        out.append("#### Enqueue throughput (client side, one producer: on CPU1; apalis's in its own process on CPU0)\n")
        out.append("| system | how | jobs/s (min–max) | producer CPU µs/job | jobs/s vs Celery |")
        out.append("|---|---|--:|--:|--:|")
        peer = med(col("enqueue", PEER, "jobs_per_s"))
        for s in systems:
            # A system may be measured several ways (sluice: batches, one job per request).
            modes = list(OrderedDict.fromkeys(r.get("mode", "send_task, one at a time") for r in by[("enqueue", s)]))
            for m in modes:
                rs = [r for r in by[("enqueue", s)] if r.get("mode", "send_task, one at a time") == m]
                jps = [r.get("jobs_per_s") for r in rs]
                cpu = [r.get("producer_cpu_us_per_job") for r in rs]
                out.append(
                    f"| {s} | {m} | {spread(jps)} | {spread(cpu, 0)} "
                    f"| {'–' if s == PEER else ratio(med(jps), peer)} |"
                )
        out.append("")

    if any(sc == "through" for sc, _ in by):
        out.append("#### Enqueued one per request and run, end to end (first request to no job unfinished)\n")
        out.append("| system | how | jobs/s (min–max) | submitted at jobs/s | jobs/s vs Celery's drain |")
        out.append("|---|---|--:|--:|--:|")
        peer = med(col("drain", PEER, "jobs_per_s"))
        for s in systems:
            rs = by[("through", s)]
            if rs:
                done = [r.get("done_jobs_per_s") for r in rs]
                out.append(
                    f"| {s} | {rs[0].get('mode', '')}, workers running | {spread(done)} "
                    f"| {spread([r.get('jobs_per_s') for r in rs])} | {ratio(med(done), peer)} |"
                )
        out.append("")

    if any(sc == "latency" for sc, _ in by):
        out.append("#### Enqueue-to-start latency, open loop (intended send time to task start)\n")
        out.append("Rates are fractions of each system's maximum: Celery's drain rate (its producer and Redis")
        out.append("are off the worker's CPU), sluice's end-to-end rate (its server also serves every submission),")
        out.append("apalis's drain rate (its producer is in the same process, on the same CPU).\n")
        out.append("| system | fraction of its max rate | rate jobs/s (sent at) | p50 ms | p99 ms | max ms | missing |")
        out.append("|---|--:|--:|--:|--:|--:|--:|")
        for s in systems:
            fr = sorted({r["fraction"] for r in by[("latency", s)]})
            for f_ in fr:
                rs = [r for r in by[("latency", s)] if r["fraction"] == f_]
                out.append(
                    f"| {s} | {f_:g} | {fmt(med([r['rate'] for r in rs]), 0)} ({fmt(med([r.get('achieved_rate') for r in rs]), 0)}) "
                    f"| {spread([r.get('p50_ms') for r in rs], 2)} | {spread([r.get('p99_ms') for r in rs], 2)} "
                    f"| {fmt(med([r.get('max_ms') for r in rs]), 2)} | {int(sum(r.get('missing', 0) for r in rs))} |"
                )
        out.append("")

    if any(sc == "async" for sc, _ in by):
        out.append("#### No-op latency while CPU-burning jobs saturate the system's CPU\n")
        out.append("| system | phase | rate jobs/s | p50 ms | p99 ms | max ms | missing | p50 burn/idle | p99 burn/idle |")
        out.append("|---|---|--:|--:|--:|--:|--:|--:|--:|")
        for s in systems:
            rs = by[("async", s)]
            if not rs:
                continue
            idle = [r for r in rs if r.get("phase") == "idle"]
            burn = [r for r in rs if r.get("phase") == "burn"]
            for ph, grp in (("idle", idle), ("burn", burn)):
                if not grp:
                    continue
                r50 = r99 = ""
                if ph == "burn":
                    r50 = ratio(med([r.get("p50_ms") for r in burn]), med([r.get("p50_ms") for r in idle]), 1)
                    r99 = ratio(med([r.get("p99_ms") for r in burn]), med([r.get("p99_ms") for r in idle]), 1)
                label = ph if ph == "idle" else f"burn ({fmt(grp[0].get('burn_ms'), 0)} ms jobs)"
                out.append(
                    f"| {s} | {label} | {fmt(med([r['rate'] for r in grp]), 0)} | {spread([r.get('p50_ms') for r in grp], 2)} "
                    f"| {spread([r.get('p99_ms') for r in grp], 2)} | {fmt(med([r.get('max_ms') for r in grp]), 2)} "
                    f"| {int(sum(r.get('missing', 0) for r in grp))} | {r50} | {r99} |"
                )
        out.append("")

    def p99_half(s):
        rs = [r for r in by[("latency", s)] if abs(r.get("fraction", 0) - 0.5) < 1e-9]
        return med([r.get("p99_ms") for r in rs])

    def async_p99(s, phase):
        return med([r.get("p99_ms") for r in by[("async", s)] if r.get("phase") == phase])

    def async_ratio(s):
        return ratio(async_p99(s, "burn"), async_p99(s, "idle"), 1)

    def enqueue_jps(s, batched):
        # Batched: sluice's POST /v1/batches, apalis's push_all; single: one job per request / push.
        return med(
            [
                r.get("jobs_per_s")
                for r in by[("enqueue", s)]
                if (r.get("batch", 1) > 1) == batched
            ]
        )

    # sluice / apalis on the same store: above 1 sluice is ahead (for latencies, apalis/sluice).
    pairs = [(st, f"sluice-{st}", f"apalis-{st}") for st in STORES if f"sluice-{st}" in systems and f"apalis-{st}" in systems]
    if pairs:
        out.append("#### sluice vs apalis on the same store\n")
        out.append("Ratios above 1× favour sluice: throughputs are sluice/apalis, latencies apalis/sluice.\n")
        out.append("| measure | " + " | ".join(st for st, _, _ in pairs) + " |")
        out.append("|---|" + "--:|" * len(pairs))
        lines = [
            ("drain jobs/s", lambda sl, ap: ratio(med(col("drain", sl, "jobs_per_s")), med(col("drain", ap, "jobs_per_s")))),
            ("enqueue jobs/s, batches of 1,000", lambda sl, ap: ratio(enqueue_jps(sl, True), enqueue_jps(ap, True))),
            ("enqueue jobs/s, one job at a time", lambda sl, ap: ratio(enqueue_jps(sl, False), enqueue_jps(ap, False))),
            ("latency p99 at half its own max rate", lambda sl, ap: ratio(p99_half(ap), p99_half(sl))),
            ("async p99 idle", lambda sl, ap: ratio(async_p99(ap, "idle"), async_p99(sl, "idle"))),
            ("async p99 under burn", lambda sl, ap: ratio(async_p99(ap, "burn"), async_p99(sl, "burn"))),
        ]
        for label, fn in lines:
            out.append(f"| {label} | " + " | ".join(fn(sl, ap) for _, sl, ap in pairs) + " |")
        out.append("")

    # Targets of issue 3: judged only for sluice systems; Celery's and apalis's figures are references.
    out.append("#### Targets (issue 3)\n")
    out.append("| target | Celery (reference) | apalis (reference) | sluice |")
    out.append("|---|--:|---|---|")
    sl = [s for s in systems if s.startswith("sluice")]
    ap = [s for s in systems if s.startswith("apalis")]
    peer_drain = med(col("drain", PEER, "jobs_per_s"))

    def per(group, fn):
        return "; ".join(f"{s}: {fn(s)}" for s in group) if group else "not measured"

    def both(fn):
        return f"{per(ap, fn)} | {per(sl, fn)}"

    out.append(
        f"| drain ≥ 10× Celery | {fmt(peer_drain)} jobs/s | "
        + both(lambda s: ratio(med(col("drain", s, "jobs_per_s")), peer_drain, 1))
        + " |"
    )
    out.append(
        "| drain ≥ 5,000 jobs/s (SQLite), ≥ 8,000 jobs/s (PostgreSQL) | – | "
        + both(lambda s: f"{fmt(med(col('drain', s, 'jobs_per_s')))} jobs/s")
        + " |"
    )
    out.append(
        f"| p99 enqueue-to-start < 20 ms at half the max rate | {fmt(p99_half(PEER), 2)} ms | "
        + both(lambda s: f"{fmt(p99_half(s), 2)} ms")
        + " |"
    )
    out.append(f"| async p99 under CPU saturation within 2× of idle | {async_ratio(PEER)} | " + both(async_ratio) + " |")
    out.append("")

    if notes:
        out.append("#### Notes\n")
        out.extend(f"- {n}" for n in notes)
        out.append("")

    with open(a.commands) as f:
        cmds = list(OrderedDict.fromkeys(line.rstrip("\n") for line in f if line.strip()))
    out.append("#### Commands\n")
    out.append("```")
    out.extend(cmds)
    out.append("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
