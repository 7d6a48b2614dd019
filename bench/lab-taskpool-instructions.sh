#!/usr/bin/env bash
# bench/lab-taskpool-instructions.sh: instructions per job of sluice-taskpool,
# threadpool and rayon, counted by valgrind's callgrind.
#
# Wall-clock time per job on this shared 2-core machine moves with other
# people's load; an instruction count does not (much: see below). Each
# contender runs alone in its own process (`sluice-lab run taskpool --only
# NAME --runs 1`), once with N1 jobs and once with N2; the per-job figure is
# (instructions(N2) - instructions(N1)) / (N2 - N1), so start-up, pool
# creation and exit cancel out. Counts are user space only (a futex wait is
# one instruction here however long it sleeps) and include the spinning a
# lock does before it sleeps, which depends on how valgrind interleaves the
# threads: expect a few per cent between repeats, not zero.
#
# Prints a table with ratios to threadpool; raw callgrind files under
# bench/out/lab-taskpool-<UTC stamp>/.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: bench/lab-taskpool-instructions.sh [--n1 50000] [--n2 150000] [--threads 2]
                                          [--capacity 1024] [--repeats 1] [--no-build]
                                          [--cases "tiny:threadpool,tiny:sluice scoped"]
USAGE
}

N1=50000
N2=150000
THREADS=2
CAPACITY=1024
REPEATS=1
BUILD=1
CASES_ARG=
while (($#)); do
    case $1 in
    --n1) N1=$2; shift 2 ;;
    --n2) N2=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --capacity) CAPACITY=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --cases) CASES_ARG=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lab_setup taskpool
need_valgrind
if ((BUILD)); then build_lab; fi

# workload:contender pairs; the contender names are sluice-lab's.
# threadpool first in each workload: the ratios divide by it.
CASES=(
    "tiny:threadpool"
    "tiny:sluice execute"
    "tiny:rayon spawn"
    "tiny:rayon scope"
    "tiny:sluice submit+join"
    "tiny:sluice scoped"
    "batch:threadpool"
    "batch:sluice batch"
    "batch:rayon par_iter"
)

if [[ -n $CASES_ARG ]]; then
    IFS=, read -r -a CASES <<<"$CASES_ARG"
fi

# Total instructions (Ir) of one run under callgrind.
count() {
    local workload=$1 contender=$2 jobs=$3 rep=$4
    callgrind_ir "$OUT/${workload}-${contender// /_}-${jobs}-${rep}.out" \
        "$LAB" run taskpool --workload "$workload" --only "$contender" --runs 1 \
        --jobs "$jobs" --threads "$THREADS" --capacity "$CAPACITY"
}

declare -A PER_JOB
echo "instructions per job: (Ir at $N2 jobs - Ir at $N1 jobs) / $((N2 - N1)), threads=$THREADS capacity=$CAPACITY" | tee "$OUT/table.txt"
printf '  %-8s %-20s %12s %12s\n' workload contender "Ir/job" "x threadpool" | tee -a "$OUT/table.txt"
for case in "${CASES[@]}"; do
    workload=${case%%:*}
    contender=${case#*:}
    samples=()
    for ((r = 0; r < REPEATS; r++)); do
        a=$(count "$workload" "$contender" "$N1" "$r")
        b=$(count "$workload" "$contender" "$N2" "$r")
        samples+=("$(per_op "$a" "$b" $((N2 - N1)))")
    done
    # median of the repeats
    per=$(printf '%s\n' "${samples[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    PER_JOB[$case]=$per
    base=${PER_JOB[$workload:threadpool]:-}
    ratio=-
    [[ -n $base ]] && ratio=$(ratio "$per" "$base")
    printf '  %-8s %-20s %12s %12s   (runs: %s)\n' "$workload" "$contender" "$per" "$ratio" "${samples[*]}" | tee -a "$OUT/table.txt"
done
echo "raw: $OUT"
