#!/usr/bin/env bash
#! The test command: installs what is missing, builds the patched kernel in two flavours (cached), runs the
#! host tests (cargo test --workspace), builds seuss.ko for each, and runs the VM tests:
#!   debug kernel (KASAN, KFENCE, kmemleak, UBSAN, lockdep, hung tasks, fault injection): the KTAP selftests
#!     (seuss_test all, fault-injection cases included) and the fuzzer (seuss_fuzz), each in its own VM
#!     that ends with a kmemleak scan;
#!   test kernel (lockdep): the two contended races at their full 10,000 rounds, seussd's VM tests and the
#!     systemd run.
#! The VM runs go in two chains side by side (chain a: the debug selftests; chain b: the fuzzer, then the
#! test-kernel runs), one vCPU each on the machine's two cores.
#! Any kernel report in a VM run fails it (scripts/vm.sh). Prints each stage's wall time to stderr and one
#! closing line `N passed, N failed` over host and VM tests. Exit status: 0 only if everything passed.
#! SEUSS_FUZZ_OPS sets the fuzzer's operation count (default 100000).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SEUSS_ROOT"
passed=0; failed=0
note() { echo "== $*" >&2; }
fail_stage() { echo "FAILED: $*" >&2; failed=$((failed + 1)); }
# Stage timings: `took NAME START` records and prints the wall time since START (date +%s).
t_all=$(date +%s); timings=()
took() {
    local s=$(( $(date +%s) - $2 ))
    timings+=("$(printf '%-28s %5d s' "$1" "$s")")
    note "$1: ${s} s (${SECONDS} s since start)"
}
finish() {
    timings+=("$(printf '%-28s %5d s' total $(( $(date +%s) - t_all )))")
    note "timings:"; printf '   %s\n' "${timings[@]}" >&2
    echo "$passed passed, $failed failed"
    ((failed == 0))
}

note "dependencies"
t=$(date +%s)
"$SEUSS_ROOT/scripts/deps.sh" || { fail_stage "deps"; finish; exit 1; }
took "dependencies" "$t"

# Both flavours are cached by a hash of source version, patches, config fragment (scripts/lib.sh).
note "kernel, test flavour"
t=$(date +%s)
if ! SEUSS_FLAVOR=test "$SEUSS_ROOT/scripts/kernel.sh" >/dev/null; then
    fail_stage "kernel build (test)"; finish; exit 1
fi
took "kernel build (test)" "$t"
note "kernel, debug flavour"
t=$(date +%s); debug=1
if ! SEUSS_FLAVOR=debug "$SEUSS_ROOT/scripts/kernel.sh" >/dev/null; then
    fail_stage "kernel build (debug)"; debug=0
fi
took "kernel build (debug)" "$t"

note "host tests: cargo test --workspace"
t=$(date +%s)
log="$(mktemp)"
cargo test --workspace --release --no-fail-fast 2>&1 | tee "$log" >&2
crc=${PIPESTATUS[0]}
hp=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1/' | paste -sd+ - | bc 2>/dev/null || echo 0)
hf=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\2/' | paste -sd+ - | bc 2>/dev/null || echo 0)
passed=$((passed + ${hp:-0})); failed=$((failed + ${hf:-0}))
if ((crc != 0)) && (( ${hf:-0} == 0 )); then fail_stage "cargo test exited $crc"; fi
took "host tests" "$t"

note "modules"
t=$(date +%s)
if ! ko="$(SEUSS_FLAVOR=test "$SEUSS_ROOT/scripts/module.sh" | tail -1)"; then
    fail_stage "module build (test)"; finish; exit 1
fi
if ((debug)) && ! dko="$(SEUSS_FLAVOR=debug "$SEUSS_ROOT/scripts/module.sh" | tail -1)"; then
    fail_stage "module build (debug)"; debug=0
fi
cargo build --release --workspace --bins 2>&1 | tail -2 >&2
took "modules and binaries" "$t"

# Each VM run: count KTAP/TAP `ok`/`not ok` lines; a kernel report (scripts/vm.sh: "vm: kernel problems",
# kmemleak suspects) counts as one more failure; a run that fails without reporting counts as one failure.
# The runs go in two chains side by side (each VM has one vCPU and the machine two cores: run one after
# the other they took longer than CI's 90 minutes). A run's output goes to the log with its chain's prefix
# as it comes (tee'd to $res/NAME.out); its counts go to $res/NAME.{p,f,took} and are added up once both chains are done.
res="$(mktemp -d)"
vm_run() {
    local name="$1" flavor="$2"; shift 2
    local out="$res/$name.out"
    local t; t=$(date +%s)
    note "VM ($flavor kernel): $name"
    SEUSS_FLAVOR="$flavor" "$SEUSS_ROOT/scripts/vm.sh" "$@" 2>&1 | tee "$out"
    local rc=${PIPESTATUS[0]}
    local p f bad=0
    p=$(grep -cE '^ok [0-9]+' "$out"); f=$(grep -cE '^not ok [0-9]+' "$out")
    if grep -qE '^vm: kernel problems|^vm: kmemleak: (check failed|the final scan|[0-9]+ suspected)' "$out"; then
        echo "FAILED: VM run '$name': kernel report (in its output)" >> "$out"; bad=1
    fi
    if ((rc != 0 && f == 0 && !bad)); then echo "FAILED: VM run '$name' exited $rc" >> "$out"; bad=1; fi
    echo "$p" > "$res/$name.p"; echo "$((f + bad))" > "$res/$name.f"
    echo "$(( $(date +%s) - t ))" > "$res/$name.took"
    note "VM $name ($flavor): $(cat "$res/$name.took") s, $p ok, $((f + bad)) failed (${SECONDS} s since start)"
}
bin="$SEUSS_ROOT/target/release"
# On the debug kernel the module is unloaded after the command (rmmod must succeed: nothing left behind), so
# the final kmemleak scan also sees what the module's exit failed to free. If the debug kernel or module
# could not be built (counted above), the selftests still run, on the test kernel.
unload='rc=$?; if grep -q "^seuss " /proc/modules; then rmmod seuss || { echo "rmmod seuss failed"; rc=1; }; fi; exit $rc'
runs=()
chain_a() {
    if ((debug)); then
        # The two contended races get 30 s each here (KASAN under TCG does 6-15 rounds/s) and their full
        # 10,000 rounds on the test kernel in the other chain. Measured in a clean-clone CI run: 2247 s, of
        # which 548 s are the 1000 deploy/exit cycles of the 8-thread snapshot.
        vm_run "selftests" debug --timeout 3600 -- "SEUSS_KO=$dko SEUSS_RACE_SECS=30 $bin/seuss_test all; $unload"
    else
        vm_run "selftests" test --timeout 2400 -- "SEUSS_KO=$ko $bin/seuss_test all"
    fi
}
chain_b() {
    if ((debug)) && [[ -x "$bin/seuss_fuzz" ]]; then
        vm_run "fuzz" debug --timeout 2400 -- "SEUSS_KO=$dko $bin/seuss_fuzz --ops ${SEUSS_FUZZ_OPS:-100000}; $unload"
    fi
    # SNAP_RELEASE vs DEPLOY and RESUME vs CAPTURE, 10,000 rounds each (measured beside a kernel build: 32 and
    # 66 rounds/s, so ~310 s and ~150 s; the time cap only guards a much slower machine).
    vm_run "races" test --timeout 1500 -- "SEUSS_KO=$ko SEUSS_RACE_SECS=480 $bin/seuss_test races race_"
    if [[ -x seussd/tests/vm/run.sh && -x "$bin/seussd" ]]; then
        vm_run "seussd" test --timeout 1800 -- "insmod $ko && SEUSS_BIN=$bin SEUSS_KO=$ko bash seussd/tests/vm/run.sh"
    fi
    if [[ -x data/vm-systemd-test.sh && -x "$bin/seussctl" ]]; then
        vm_run "systemd" test --systemd --timeout 1800 -- "SEUSS_BIN=$bin SEUSS_KO=$ko bash data/vm-systemd-test.sh"
    fi
}
t=$(date +%s)
chain_a 2>&1 | sed -u 's/^/[a] /' >&2 &
pa=$!
chain_b 2>&1 | sed -u 's/^/[b] /' >&2 &
pb=$!
wait "$pa" "$pb"
# The sums, and each run's failures again below the interleaved output.
for n in selftests fuzz races seussd systemd; do
    [[ -f "$res/$n.p" ]] || continue
    grep -hE '^not ok ' "$res/$n.out" | sed "s/^/$n: /" >&2 || true
    passed=$((passed + $(cat "$res/$n.p"))); failed=$((failed + $(cat "$res/$n.f")))
    grep -h '^FAILED: ' "$res/$n.out" >&2 || true
    timings+=("$(printf '%-28s %5d s' "VM $n" "$(cat "$res/$n.took")")")
done
took "VM runs (two chains)" "$t"
finish
