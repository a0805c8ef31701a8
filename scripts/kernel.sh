#!/usr/bin/env bash
#! Builds the patched Linux 6.12 kernel (with Rust) that seuss runs on, once per (Debian source version,
#! patches, config fragment, uapi header): the result is cached in $SEUSS_CACHE/build, so a second run takes
#! seconds. Prints the wall time of a build that really happened.
#!   scripts/kernel.sh          build if needed; prints the build dir (KDIR) on the last line
#!   scripts/kernel.sh --check  exit 0 if the cached kernel is current, 1 otherwise
#! SEUSS_FLAVOR=bench builds the benchmark kernel instead (no lock debugging; cached in $SEUSS_CACHE/build-bench),
#! SEUSS_FLAVOR=debug the debug kernel (KASAN, KFENCE, kmemleak, UBSAN, fault injection; $SEUSS_CACHE/build-debug).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [[ "${1:-}" == --check ]]; then
    [[ -f "$KBUILD/.seuss-hash" && "$(cat "$KBUILD/.seuss-hash")" == "$(kernel_hash)" ]] && exit 0 || exit 1
fi

"$SEUSS_ROOT/scripts/deps.sh"
mkdir -p "$SEUSS_CACHE"
exec 9>"$SEUSS_CACHE/kernel.lock"
flock 9   # never two kernel builds at once

hash="$(kernel_hash)"
if [[ -f "$KBUILD/.seuss-hash" && "$(cat "$KBUILD/.seuss-hash")" == "$hash" && -f "$KBUILD/arch/x86/boot/bzImage" ]]; then
    echo "kernel: cached build $hash is current" >&2
    echo "$KBUILD"
    exit 0
fi

# BUILD-RECIPE-BEGIN
start=$(date +%s)
# 1. Pristine source as a git tree: resetting it touches only the files our patches changed, so a changed
#    patch series rebuilds incrementally.
if [[ ! -d "$KSRC/.git" ]]; then
    echo "kernel: unpacking /usr/src/linux-source-6.12.tar.xz" >&2
    rm -rf "$KSRC"; mkdir -p "$(dirname "$KSRC")"
    tar -C "$(dirname "$KSRC")" -xf /usr/src/linux-source-6.12.tar.xz
    (cd "$KSRC" && git init -q && git add -f -A . &&
        git -c user.email=seuss@localhost -c user.name=seuss commit -qm pristine && git tag pristine)
fi
cd "$KSRC"
git reset -q --hard pristine
git clean -qfdx
# 2. The patch series, in order; then the uapi header (patch 0 is generated from the repo's header).
install -m 0644 "$SEUSS_ROOT/uapi/include/linux/seuss.h" include/uapi/linux/seuss.h
for p in "$SEUSS_ROOT"/kernel/patches/*.patch; do
    echo "kernel: applying $(basename "$p")" >&2
    git apply --whitespace=nowarn "$p"
done
# 3. Config: x86_64 defconfig + our fragment, verified. Only replaced when it changed, so Kbuild's
#    per-option dependency tracking keeps rebuilds incremental.
mkdir -p "$KBUILD"
tmp="$(mktemp -d)"
make -s O="$tmp" "${KMAKE_ARGS[@]}" defconfig >/dev/null
config_fragment > "$tmp/seuss.fragment"
KCONFIG_CONFIG="$tmp/.config" scripts/kconfig/merge_config.sh -m -O "$tmp" "$tmp/.config" \
    "$tmp/seuss.fragment" >/dev/null
make -s O="$tmp" "${KMAKE_ARGS[@]}" olddefconfig >/dev/null
bad=0
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*) grep -qx "$line" "$tmp/.config" || { echo "kernel: config: wanted $line, got: $(grep "^${line%%=*}=" "$tmp/.config" || echo unset)" >&2; bad=1; } ;;
        "# CONFIG_"*" is not set") opt="${line#\# }"; opt="${opt%% *}"; ! grep -q "^$opt=" "$tmp/.config" || { echo "kernel: config: wanted $opt unset, got $(grep "^$opt=" "$tmp/.config")" >&2; bad=1; } ;;
    esac
done < "$tmp/seuss.fragment"
if ((bad)); then echo "kernel: config fragment did not apply" >&2; exit 1; fi
cmp -s "$tmp/.config" "$KBUILD/.config" || cp "$tmp/.config" "$KBUILD/.config"
rm -rf "$tmp"
# 4. Build vmlinux, bzImage, in-tree modules and what out-of-tree modules need.
echo "kernel: building in $KBUILD (log: $KBUILD/build.log)" >&2
if ! make -C "$KSRC" O="$KBUILD" "${KMAKE_ARGS[@]}" -j"$(nproc)" all > "$KBUILD/build.log" 2>&1; then
    tail -40 "$KBUILD/build.log" >&2
    echo "kernel: build failed" >&2
    exit 1
fi
echo "$hash" > "$KBUILD/.seuss-hash"
echo "kernel: built $hash in $(( $(date +%s) - start )) s wall time" >&2
# BUILD-RECIPE-END
echo "$KBUILD"
