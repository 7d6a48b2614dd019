#!/usr/bin/env bash
# Collect benchmarks: `crawl` (side by side with Scrapy), `streams` (broker
# and push sources into SQLite) and `pg-fault` (the PostgreSQL sink across
# a database outage).
#
#   bench/collect.sh crawl [PAGES] [RUNS]
#   bench/collect.sh streams [N] [RUNS]
#   bench/collect.sh pg-fault [N] [PER_SEC]
#
# crawl: serves the synthetic site (crates/collect/examples/crawl_site.rs:
# PAGES pages, default 10,000, plus / and PAGES/100 section pages;
# robots.txt disallows /private/; every page links off-domain) pinned to
# CPU 0, then crawls it with `sluice crawl` and with Scrapy (a CrawlSpider,
# installed from PyPI into a venv under /tmp), each pinned to CPU 1, RUNS
# times each (default 3), under /usr/bin/time -v. Reports the median
# pages/s, CPU seconds per 1,000 pages, peak RSS, and correctness from the
# site's own counters: every allowed page fetched exactly once, nothing
# disallowed, nothing unknown. Both crawlers use 16 requests at once, 8 per
# host, obey robots.txt and stay on 127.0.0.1.
#
# streams and pg-fault: see bench/collect-streams.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-crawl}
case "$what" in
  crawl) ;;
  streams | pg-fault) exec bench/collect-streams.sh "$@" ;;
  *) echo "usage: $0 crawl|streams|pg-fault [ARGS]" >&2; exit 2 ;;
esac
PAGES=${2:-10000}
RUNS=${3:-3}
PORT=${PORT:-18080}
SITE="http://127.0.0.1:$PORT"
WORK=$(mktemp -d /tmp/sluice-crawl-bench.XXXXXX)
VENV=${VENV:-/tmp/sluice-scrapy-venv}

echo "== building sluice and the site (release)"
cargo build --release -q -p sluice -p sluice-collect --bin sluice --example crawl_site

if [ ! -x "$VENV/bin/scrapy" ]; then
  echo "== installing Scrapy into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q scrapy
fi

taskset -c 0 target/release/examples/crawl_site "127.0.0.1:$PORT" "$PAGES" 2>/dev/null &
SITE_PID=$!
trap 'kill $SITE_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 50); do curl -sf "$SITE/robots.txt" >/dev/null && break; sleep 0.1; done

cat > "$WORK/spider.py" <<'PY'
import scrapy
from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule

class Site(CrawlSpider):
    name = "site"
    allowed_domains = ["127.0.0.1"]
    # No allow_domains on the extractor: it compares host:port; the offsite
    # middleware (allowed_domains) compares hosts.
    rules = (Rule(LinkExtractor(), callback="parse_page", follow=True),)

    def __init__(self, start=None, *a, **kw):
        super().__init__(*a, **kw)
        self.start_urls = [start]

    def parse_start_url(self, response):
        return self.parse_page(response)

    def parse_page(self, response):
        yield {"url": response.url, "status": response.status,
               "title": response.css("title::text").get()}
PY

# One run: $1 = name, rest = command. Prints "name pages secs cpu rss_kib correct".
run_one() {
  local name=$1; shift
  curl -sf -X POST "$SITE/__reset" >/dev/null
  /usr/bin/time -v -o "$WORK/time" taskset -c 1 "$@" >/dev/null 2>"$WORK/err" || { tail -5 "$WORK/err" >&2; }
  local hits wall user sys rss
  hits=$(curl -sf "$SITE/__hits")
  wall=$(awk -F': ' '/Elapsed/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$WORK/time")
  user=$(awk -F': ' '/User time/ {print $2}' "$WORK/time")
  sys=$(awk -F': ' '/System time/ {print $2}' "$WORK/time")
  rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$WORK/time")
  python3 - "$name" "$hits" "$wall" "$user" "$sys" "$rss" <<'PY'
import json, sys
name, hits, wall, user, sys_, rss = sys.argv[1], json.loads(sys.argv[2]), *map(float, sys.argv[3:7])
ok = (hits["distinct"] == hits["allowed"] and hits["duplicates"] == 0
      and hits["disallowed"] == 0 and hits["unknown"] == 0)
print(f'{name} {hits["distinct"]} {wall:.3f} {user + sys_:.3f} {int(rss)} '
      f'{"yes" if ok else "NO:" + json.dumps(hits, separators=(",", ":"))}')
PY
}

echo "== $RUNS runs each, $PAGES pages (+ sections and /), site on CPU 0, crawler on CPU 1"
for i in $(seq 1 "$RUNS"); do
  run_one sluice target/release/sluice crawl "$SITE/" --concurrency 16 --per-host 8 \
    --out "$WORK/sluice.jsonl" --log warn
  run_one scrapy "$VENV/bin/scrapy" runspider "$WORK/spider.py" -a "start=$SITE/" \
    -s ROBOTSTXT_OBEY=True -s CONCURRENT_REQUESTS=16 -s CONCURRENT_REQUESTS_PER_DOMAIN=8 \
    -s LOG_LEVEL=WARNING -s TELNETCONSOLE_ENABLED=False -O "$WORK/scrapy.jsonl"
done | tee "$WORK/runs"

python3 - "$WORK/runs" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, pages, wall, cpu, rss, ok = line.split(maxsplit=5)
    rows.setdefault(name, []).append((int(pages), float(wall), float(cpu), int(rss), ok.strip()))
def med(name):
    r = rows[name]
    pages = r[0][0]
    return {
        "pages/s": statistics.median(p / w for p, w, *_ in r),
        "CPU s / 1k pages": statistics.median(c / p * 1000 for p, _, c, *_ in r),
        "peak RSS MiB": statistics.median(m / 1024 for *_, m, _ in r),
        "correct": all(o == "yes" for *_, o in r),
        "pages": pages,
    }
s, p = med("sluice"), med("scrapy")
print()
print(f'{"":18}{"sluice":>12}{"Scrapy":>12}{"sluice/Scrapy":>15}')
for k in ("pages/s", "CPU s / 1k pages", "peak RSS MiB"):
    print(f'{k:18}{s[k]:12.2f}{p[k]:12.2f}{s[k] / p[k]:15.2f}')
print(f'{"correct":18}{str(s["correct"]):>12}{str(p["correct"]):>12}')
print(f'{"pages fetched":18}{s["pages"]:12}{p["pages"]:12}')
PY
