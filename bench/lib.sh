# bench/lib.sh: what the lab's callgrind scripts share; sourced, not run.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   lab_setup taskpool     # sets ROOT, TARGET, LAB, OUT and creates OUT
#   need_valgrind
#   ((BUILD)) && build_lab
#   ir=$(callgrind_ir "$OUT/x.out" "$LAB" run taskpool ...)
#   per_op "$ir_small" "$ir_large" $((N2 - N1))
#
# The method, shared too: run the same workload twice under callgrind, at N1
# and at N2 operations, and divide the difference of the two instruction
# totals by N2 - N1, so that start-up, set-up and exit cancel out.

# ROOT: the repository; TARGET: the release build these scripts use (its own
# target dir, so a debug build's cache is left alone); LAB: the sluice-lab
# binary; OUT: a fresh bench/out/lab-NAME-<UTC stamp>/ for the raw files.
lab_setup() {
    ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    TARGET=$ROOT/target/lab
    LAB=$TARGET/release/sluice-lab
    OUT=$ROOT/bench/out/lab-$1-$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$OUT"
}

# Installs valgrind from Debian if it is missing.
need_valgrind() {
    command -v valgrind >/dev/null && return
    echo "valgrind missing; installing it with apt-get" >&2
    if [[ $(id -u) == 0 ]]; then apt-get install -y valgrind; else sudo apt-get install -y valgrind; fi
}

# Builds sluice-lab in release mode into $TARGET, at the lowest priority (the
# machine is shared).
build_lab() {
    (cd "$ROOT" && nice -n 19 cargo build --release -p sluice-lab --target-dir "$TARGET")
}

# callgrind_ir FILE COMMAND...: runs COMMAND under callgrind with its output
# in FILE (stdout and stderr beside it) and prints the total instructions.
callgrind_ir() {
    local file=$1
    shift
    valgrind --tool=callgrind --callgrind-out-file="$file" "$@" >"$file.stdout" 2>"$file.stderr"
    awk '/^(summary|totals):/ { print $2; exit }' "$file"
}

# per_op IR_SMALL IR_LARGE OPS: (IR_LARGE - IR_SMALL) / OPS to one decimal.
per_op() {
    awk -v a="$1" -v b="$2" -v d="$3" 'BEGIN { printf "%.1f", (b - a) / d }'
}

# ratio VALUE BASE: VALUE / BASE to two decimals.
ratio() {
    awk -v p="$1" -v b="$2" 'BEGIN { printf "%.2f", p / b }'
}
