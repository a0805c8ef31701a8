#!/usr/bin/env bash
#! Builds kmod/seuss.ko against the cached patched kernel (scripts/kernel.sh builds it if needed).
#! Prints the path of the module on the last line: target/seuss.ko, or target/seuss-bench.ko for
#! SEUSS_FLAVOR=bench, target/seuss-debug.ko for SEUSS_FLAVOR=debug (a module only loads into the kernel it
#! was built against).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
kdir="$("$SEUSS_ROOT/scripts/kernel.sh" | tail -1)"
# Build in a copy outside the work tree so the checkout stays clean of Kbuild droppings.
out="$SEUSS_CACHE/kmod-build-$SEUSS_FLAVOR"
mkdir -p "$out"
rsync -a --delete --exclude '*.o' --exclude '*.ko' --exclude '.*.cmd' --exclude '*.mod*' \
    "$SEUSS_ROOT/Kbuild" "$SEUSS_ROOT/kmod" "$out/"
make -s -C "$kdir" M="$out" "${KMAKE_ARGS[@]}" -j"$(nproc)" modules >&2
# The VM sees the checkout (not /var, which it overlays): hand the module over there.
mkdir -p "$SEUSS_ROOT/target"
cp "$out/kmod/seuss.ko" "$SEUSS_KO"
echo "$SEUSS_KO"
