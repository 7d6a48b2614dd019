#!/usr/bin/env bash
# bench/lab-minirt-instructions.sh: instructions per operation of
# sluice-minirt and tokio's current-thread runtime (spawn, yield,
# channel ping-pong), counted by valgrind's callgrind.
#
# Each runtime runs alone in its own process (`sluice-lab run minirt
# --workload W --only R --runs 1`), once with N1 ops and once with N2; the
# per-op figure is (instructions(N2) - instructions(N1)) / (N2 - N1), so
# start-up, runtime creation and exit cancel out. Both runtimes run on one
# thread, so the count is deterministic up to allocator and hash-seed noise.
#
# Prints a table with ratios to tokio; raw callgrind files under
# bench/out/lab-minirt-<UTC stamp>/.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: bench/lab-minirt-instructions.sh [--n1 20000] [--n2 60000] [--no-build]
                                        [--workloads spawn,yield,pingpong]
USAGE
}

N1=20000
N2=60000
BUILD=1
WORKLOADS=spawn,yield,pingpong
while (($#)); do
    case $1 in
    --n1) N1=$2; shift 2 ;;
    --n2) N2=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lab_setup minirt
need_valgrind
if ((BUILD)); then build_lab; fi

# Total instructions (Ir) of one run under callgrind.
count() {
    local workload=$1 runtime=$2 ops=$3
    callgrind_ir "$OUT/${workload}-${runtime}-${ops}.out" \
        "$LAB" run minirt --workload "$workload" --only "$runtime" --runs 1 --ops "$ops"
}

echo "instructions per op: (Ir at $N2 ops - Ir at $N1 ops) / $((N2 - N1))" | tee "$OUT/table.txt"
printf '  %-9s %-8s %10s %9s\n' workload runtime "Ir/op" "x tokio" | tee -a "$OUT/table.txt"
IFS=, read -r -a LIST <<<"$WORKLOADS"
for workload in "${LIST[@]}"; do
    declare -A PER=()
    for runtime in tokio minirt; do
        a=$(count "$workload" "$runtime" "$N1")
        b=$(count "$workload" "$runtime" "$N2")
        PER[$runtime]=$(per_op "$a" "$b" $((N2 - N1)))
    done
    for runtime in tokio minirt; do
        ratio=$(ratio "${PER[$runtime]}" "${PER[tokio]}")
        printf '  %-9s %-8s %10s %9s\n' "$workload" "$runtime" "${PER[$runtime]}" "$ratio" | tee -a "$OUT/table.txt"
    done
    unset PER
done
echo "raw: $OUT"
