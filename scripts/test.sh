#!/usr/bin/env bash
#! The test command: installs what is missing, builds the patched kernel (cached), runs the host tests
#! (cargo test --workspace), builds seuss.ko, runs the KTAP selftests and the daemon's VM tests in a VM on
#! the patched kernel, and prints one closing line `N passed, N failed` over host and VM tests.
#! Exit status: 0 only if everything passed.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SEUSS_ROOT"
passed=0; failed=0
note() { echo "== $*" >&2; }
fail_stage() { echo "FAILED: $*" >&2; failed=$((failed + 1)); }

note "dependencies"
"$SEUSS_ROOT/scripts/deps.sh" || { fail_stage "deps"; echo "$passed passed, $failed failed"; exit 1; }

note "kernel (cached by hash of source version, patches, config)"
t0=$(date +%s)
if ! "$SEUSS_ROOT/scripts/kernel.sh" >/dev/null; then
    fail_stage "kernel build"; echo "$passed passed, $failed failed"; exit 1
fi
note "kernel ready after $(( $(date +%s) - t0 )) s"

note "host tests: cargo test --workspace"
log="$(mktemp)"
cargo test --workspace --release --no-fail-fast 2>&1 | tee "$log" >&2
crc=${PIPESTATUS[0]}
hp=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1/' | paste -sd+ - | bc 2>/dev/null || echo 0)
hf=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\2/' | paste -sd+ - | bc 2>/dev/null || echo 0)
passed=$((passed + ${hp:-0})); failed=$((failed + ${hf:-0}))
if ((crc != 0)) && (( ${hf:-0} == 0 )); then fail_stage "cargo test exited $crc"; fi

note "module"
if ! ko="$("$SEUSS_ROOT/scripts/module.sh" | tail -1)"; then
    fail_stage "module build"; echo "$passed passed, $failed failed"; exit 1
fi
cargo build --release --workspace --bins 2>&1 | tail -2 >&2

# Each VM run: count KTAP/TAP `ok`/`not ok` lines; a run that fails without reporting counts as one failure.
vm_run() {
    local name="$1"; shift
    local out; out="$(mktemp)"
    note "VM: $name"
    "$SEUSS_ROOT/scripts/vm.sh" "$@" 2>&1 | tee "$out" >&2
    local rc=${PIPESTATUS[0]}
    local p f
    p=$(grep -cE '^ok [0-9]+' "$out"); f=$(grep -cE '^not ok [0-9]+' "$out")
    passed=$((passed + p)); failed=$((failed + f))
    if ((rc != 0 && f == 0)); then fail_stage "VM run '$name' exited $rc"; fi
}
bin="$SEUSS_ROOT/target/release"
vm_run "selftests" --timeout 2400 -- "SEUSS_KO=$ko $bin/seuss_test all"
if [[ -x seussd/tests/vm/run.sh && -x "$bin/seussd" ]]; then
    vm_run "seussd" --timeout 1800 -- "insmod $ko && SEUSS_BIN=$bin SEUSS_KO=$ko bash seussd/tests/vm/run.sh"
fi
if [[ -x data/vm-systemd-test.sh && -x "$bin/seussctl" ]]; then
    vm_run "systemd" --systemd --timeout 1800 -- "SEUSS_BIN=$bin SEUSS_KO=$ko bash data/vm-systemd-test.sh"
fi
echo "$passed passed, $failed failed"
((failed == 0))
