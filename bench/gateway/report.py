#!/usr/bin/env python3
"""Turn bench/gateway.sh's result rows into markdown tables, ratios and target verdicts.

Input: one JSON object per line (a wrk run, an idle-connections measurement or a
note). Figures are medians over runs, except errors (summed over runs) and peak RSS
(the highest VmHWM seen). Ratios are sluice / peer: below 1 means sluice used less.
"""
import argparse
import json
import statistics
from collections import OrderedDict

ORDER = ["direct", "nginx", "haproxy", "varnish", "sluice"]
TITLES = OrderedDict(
    plain="Plain proxy (GET /, 12-byte body, access logs off)",
    full="Full stack (GET /api/v1/users: routes, limiter that never denies, metrics, access log to a file)",
    cache="Cache hits (GET /c, Cache-Control: public, max-age=60)",
    reload="Reloads under load (GET /, plain config)",
)
LABEL = {
    ("plain", "direct"): "direct to upstream (no proxy; CPU is the upstream's)",
    ("plain", "varnish"): "varnish (pass)",
    ("full", "nginx"): "nginx (locations, limit_req, buffered JSON log)",
    ("cache", "nginx"): "nginx proxy_cache",
    ("cache", "haproxy"): "haproxy cache",
    ("cache", "varnish"): "varnish (default VCL)",
}


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, nd=1):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def ratio(a, b):
    if a is None or not b:
        return "–"
    return f"{a / b:.2f}"


def aggregate(rows):
    agg = OrderedDict()
    for r in rows:
        agg.setdefault((r["scenario"], r["proxy"]), []).append(r)
    out = {}
    for key, rs in agg.items():
        out[key] = dict(
            runs=len(rs),
            rps=med([r["rps"] for r in rs]),
            p50=med([r["p50_ms"] for r in rs]),
            p99=med([r["p99_ms"] for r in rs]),
            cpu=med([r["cpu_us"] for r in rs]),
            cpu_min=min(r["cpu_us"] for r in rs),
            cpu_max=max(r["cpu_us"] for r in rs),
            hwm_mb=max(r["hwm_kb"] for r in rs) / 1024,
            non2xx=sum(r["non2xx"] for r in rs),
            sock=sum(r["sock_err"] for r in rs),
            requests=sum(r["requests"] for r in rs),
        )
    return out


def load_table(sc, agg, lines):
    proxies = [p for p in ORDER if (sc, p) in agg]
    if not proxies:
        return
    s = agg.get((sc, "sluice"))
    lines.append(f"### {TITLES[sc]}\n")
    lines.append(
        "| proxy | req/s | p50 ms | p99 ms | CPU µs/req (min–max) | peak RSS MB | errors (non-2xx + socket) "
        "| sluice/peer CPU | sluice/peer p99 | sluice/peer req/s | sluice/peer RSS |"
    )
    lines.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for p in proxies:
        a = agg[(sc, p)]
        peer = p not in ("sluice", "direct") and s is not None
        lines.append(
            f"| {LABEL.get((sc, p), p)} | {fmt(a['rps'], 0)} | {fmt(a['p50'], 2)} | {fmt(a['p99'], 2)} "
            f"| {fmt(a['cpu'], 2)} ({fmt(a['cpu_min'], 2)}–{fmt(a['cpu_max'], 2)}) | {fmt(a['hwm_mb'], 1)} "
            f"| {a['non2xx']} + {a['sock']} "
            f"| {ratio(s['cpu'], a['cpu']) if peer else '–'} | {ratio(s['p99'], a['p99']) if peer else '–'} "
            f"| {ratio(s['rps'], a['rps']) if peer else '–'} | {ratio(s['hwm_mb'], a['hwm_mb']) if peer else '–'} |"
        )
    lines.append("")


def idle_table(idle, n, lines):
    if not idle:
        return
    lines.append(f"### {n:,} idle keep-alive connections (one request each, then idle)\n")
    lines.append(
        "| proxy | RSS idle MB | RSS with the connections MB | KiB per idle connection | PSS idle MB "
        "| PSS with the connections MB | peak RSS MB | opened / failed (seconds to open) | closed by the proxy while idle "
        "| sluice/peer KiB per connection |"
    )
    lines.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    s = idle.get("sluice")
    for p in [p for p in ORDER if p in idle]:
        r = idle[p]
        peer = p != "sluice" and s is not None
        took = f" ({r['open_secs']:.0f} s)" if "open_secs" in r else ""
        lines.append(
            f"| {p} | {r['rss_before_kb'] / 1024:.1f} | {r['rss_after_kb'] / 1024:.1f} | {fmt(r['per_conn_kib'], 2)} "
            f"| {r['pss_before_kb'] / 1024:.1f} | {r['pss_after_kb'] / 1024:.1f} "
            f"| {r['hwm_kb'] / 1024:.1f} | {r['opened']} / {r['failed']}{took} | {r['closed_while_idle']} "
            f"| {ratio(s['per_conn_kib'], r['per_conn_kib']) if peer else '–'} |"
        )
    lines.append(
        "\nRSS is VmRSS and PSS is Pss (smaps_rollup), each summed over the proxy's processes (summed RSS "
        "counts pages shared by a master and its workers twice; PSS does not); read before the connections "
        "are opened and 2 s after they all answered; per connection = (RSS with − RSS idle) / opened.\n"
    )


def verdict(ok):
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**missed**"


def targets(agg, idle, n_idle, reloads, lines, no_cache=False):
    def get(sc, p, k):
        a = agg.get((sc, p))
        return a[k] if a else None

    rows = []
    s, n = get("plain", "sluice", "cpu"), get("plain", "nginx", "cpu")
    rows.append((
        "plain proxy: CPU/req ≤ nginx",
        f"sluice {fmt(s, 2)} µs vs nginx {fmt(n, 2)} µs (ratio {ratio(s, n)})",
        None if s is None or n is None else s <= n,
    ))
    s, n = get("plain", "sluice", "p99"), get("plain", "nginx", "p99")
    rows.append((
        "plain proxy: p99 ≤ 1.2× nginx",
        f"sluice {fmt(s, 2)} ms vs nginx {fmt(n, 2)} ms (ratio {ratio(s, n)})",
        None if s is None or n is None else s <= 1.2 * n,
    ))
    f, s = get("full", "sluice", "cpu"), get("plain", "sluice", "cpu")
    rows.append((
        "full stack: CPU/req ≤ 1.3× sluice plain",
        f"full {fmt(f, 2)} µs vs plain {fmt(s, 2)} µs (ratio {ratio(f, s)})",
        None if f is None or s is None else f <= 1.3 * s,
    ))
    s = get("cache", "sluice", "cpu")
    n, v = get("cache", "nginx", "cpu"), get("cache", "varnish", "cpu")
    rows.append((
        "cache hit: CPU/req ≤ nginx proxy_cache and Varnish",
        f"sluice {fmt(s, 2)} µs vs nginx {fmt(n, 2)} µs (ratio {ratio(s, n)}), Varnish {fmt(v, 2)} µs (ratio {ratio(s, v)})",
        None if s is None or n is None or v is None else s <= n and s <= v,
    ))
    if no_cache:
        name, measured, _ = rows[-1]
        rows[-1] = (name, measured + "; sluice did not cache (pass-through)", False)
    si = idle.get("sluice")
    rows.append((
        "idle RSS < 15 MB",
        f"sluice {si['rss_before_kb'] / 1024:.1f} MB" if si else "–",
        None if not si else si["rss_before_kb"] < 15 * 1024,
    ))
    quick = "" if n_idle == 10000 else f" (measured with {n_idle:,}, not 10,000)"
    rows.append((
        "< 10 KiB per idle connection",
        (f"sluice {fmt(si['per_conn_kib'], 2)} KiB{quick}" if si else "–"),
        None if not si or si["per_conn_kib"] is None or si["failed"] else si["per_conn_kib"] < 10,
    ))
    r = agg.get(("reload", "sluice"))
    rq = "" if reloads == 10 else f" ({reloads} per run, not 10)"
    rows.append((
        "zero failed requests across 10 reloads under load",
        (f"sluice: {r['non2xx']} non-2xx + {r['sock']} socket errors in {r['requests']:,} requests, "
         f"{r['runs']} run(s) × {reloads} reloads{rq}" if r else "–"),
        None if not r else r["non2xx"] + r["sock"] == 0,
    ))
    lines.append("### Targets (issue 2)\n")
    lines.append("| target | measured | verdict |")
    lines.append("|---|---|---|")
    for name, measured, ok in rows:
        lines.append(f"| {name} | {measured} | {verdict(ok)} |")
    lines.append("")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--header", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--commands", required=True)
    ap.add_argument("--idle-connections", type=int, default=10000)
    ap.add_argument("--reloads", type=int, default=10)
    a = ap.parse_args()

    rows, notes, idle_rows = [], [], []
    with open(a.results) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if "note" in r:
                notes.append(r["note"])
            elif r["scenario"] == "idle":
                idle_rows.append(r)
            else:
                rows.append(r)
    agg = aggregate(rows)
    idle = {}
    for r in idle_rows:
        r = dict(r)
        r["per_conn_kib"] = (r["rss_after_kb"] - r["rss_before_kb"]) / r["opened"] if r["opened"] else None
        idle[r["proxy"]] = r

    lines = ["## Gateway benchmark\n", "```"]
    with open(a.header) as f:
        lines += [l.rstrip("\n") for l in f]
    lines += ["```", ""]
    for sc in TITLES:
        if sc == "reload":
            idle_table(idle, a.idle_connections, lines)
        load_table(sc, agg, lines)
    if agg.get(("reload", "sluice")) or any(k[0] == "reload" for k in agg):
        lines.append(
            f"Reload rows: wrk runs for the whole window while {a.reloads} reloads are spread across it; "
            "errors must be 0 + 0. CPU/req includes the reloads' own work.\n"
        )
    no_cache = any(n.startswith("sluice cache: 'cache = true' is accepted but") for n in notes)
    targets(agg, idle, a.idle_connections, a.reloads, lines, no_cache)
    if notes:
        lines.append("### Notes\n")
        lines += [f"- {n}" for n in dict.fromkeys(notes)]
        lines.append("")
    lines.append("### Commands\n")
    lines.append("```")
    with open(a.commands) as f:
        lines += list(dict.fromkeys(l.rstrip("\n") for l in f if l.strip()))
    lines.append("```")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
