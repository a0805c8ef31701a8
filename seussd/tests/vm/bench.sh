#!/bin/bash
# seussd benchmark, run inside the VM as root with seuss.ko loaded (prints a table and JSON; asserts no speed).
#
#   SEUSS_BIN=/work/main/target/release seussd/tests/vm/bench.sh [seussd-bench options]
#
# Options go to seussd-bench (--n 200 --n-cold 200 --n-runtime 200 --burst 500 --python /usr/bin/python3).
# The JSON goes to $SEUSS_OUT/seussd-bench.json when SEUSS_OUT is set (scripts/vm.sh sets it).
# Exits 4 (skip) if the environment is missing.
set -u
BIN=${SEUSS_BIN:?set SEUSS_BIN to the directory holding seussd-bench and seuss-stub}
[ "$(id -u)" = 0 ] || { echo "# SKIP not root"; exit 4; }
[ -c /dev/seuss ] || { echo "# SKIP /dev/seuss missing (load seuss.ko)"; exit 4; }
[ -x "$BIN/seussd-bench" ] && [ -x "$BIN/seuss-stub" ] || { echo "# SKIP no binaries in $BIN"; exit 4; }
echo "# $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)" MiB"}' /proc/meminfo); start $(date -u +%T)"
"$BIN/seussd-bench" "$@"
rc=$?
echo "# end $(date -u +%T), exit $rc"
exit $rc
