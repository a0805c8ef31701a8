#!/usr/bin/env bash
#! The benchmarks, in one VM run on the benchmark kernel (SEUSS_FLAVOR=bench: the test kernel without lock
#! debugging, cached beside it; the first run builds it, ~12-15 minutes). Prints tables and JSON; asserts no
#! speed. Figures are ratios measured side by side in one run (absolute TCG times mean little).
#!   scripts/bench.sh                 engine (seuss_bench) and seussd (seussd-bench), full sizes
#!   scripts/bench.sh seussd [OPTS]   seussd-bench only, OPTS as in seussd/tests/vm/bench.sh
#!   scripts/bench.sh engine          seuss_bench only (python3, then `threads`: 8 vs 1 threads, heaps)
#! The JSON files land in the VM's output directory (printed by scripts/vm.sh).
#! SEUSS_FLAVOR=test scripts/bench.sh ... measures on the test kernel (lockdep on) instead.
set -euo pipefail
export SEUSS_FLAVOR="${SEUSS_FLAVOR:-bench}"
source "$(dirname "$0")/lib.sh"
cd "$SEUSS_ROOT"
"$SEUSS_ROOT/scripts/deps.sh"
"$SEUSS_ROOT/scripts/kernel.sh" >/dev/null
ko="$("$SEUSS_ROOT/scripts/module.sh" | tail -1)"
cargo build --release --workspace --bins 2>&1 | tail -1 >&2
what="${1:-all}"; shift || true
engine="SEUSS_KO=$ko target/release/seuss_bench 200 200 && SEUSS_KO=$ko target/release/seuss_bench threads 100"
seussd="{ grep -q '^seuss ' /proc/modules || insmod $ko; } && SEUSS_BIN=$SEUSS_ROOT/target/release bash seussd/tests/vm/bench.sh $*"
case "$what" in
    all) cmd="$engine && $seussd" ;;
    engine) cmd="$engine" ;;
    seussd) cmd="$seussd" ;;
    *) echo "usage: scripts/bench.sh [all|engine|seussd [options]]" >&2; exit 2 ;;
esac
exec "$SEUSS_ROOT/scripts/vm.sh" --timeout 5400 -- "cd $SEUSS_ROOT && $cmd"
