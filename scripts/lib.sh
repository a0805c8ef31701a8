# shellcheck shell=bash
#! Shared settings for the seuss scripts: where caches live and how the kernel toolchain is called.
SEUSS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SEUSS_CACHE="${SEUSS_CACHE:-/var/cache/seuss}"
KSRC="$SEUSS_CACHE/src/linux-source-6.12"
# Kernel flavour: "test" (lockdep and friends on: what the tests run on) or "bench" (the same kernel without
# the lock debugging that multiplies the cost of every lock in the kernel paths a benchmark measures).
SEUSS_FLAVOR="${SEUSS_FLAVOR:-test}"
case "$SEUSS_FLAVOR" in
    test) KBUILD="$SEUSS_CACHE/build"; SEUSS_KO="$SEUSS_ROOT/target/seuss.ko" ;;
    bench) KBUILD="$SEUSS_CACHE/build-bench"; SEUSS_KO="$SEUSS_ROOT/target/seuss-bench.ko" ;;
    *) echo "SEUSS_FLAVOR must be test or bench, not '$SEUSS_FLAVOR'" >&2; exit 2 ;;
esac
export PATH="$HOME/.cargo/bin:$PATH"
# The kernel's Rust must be Debian's rustc-web (it has the library source); userspace uses rustup's cargo.
KMAKE_ARGS=(LLVM=-19 RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc BINDGEN=bindgen)

# The config fragment of the flavour: kernel/config/seuss.config, with the options that
# kernel/config/$SEUSS_FLAVOR.config names replaced by its lines.
config_fragment() {
    local extra="$SEUSS_ROOT/kernel/config/$SEUSS_FLAVOR.config"
    if [[ ! -f "$extra" ]]; then cat "$SEUSS_ROOT/kernel/config/seuss.config"; return; fi
    local opts
    opts="$(grep -oE 'CONFIG_[A-Z0-9_]+' "$extra" | sort -u | paste -sd'|')"
    grep -vE "(^|[# ])($opts)([= ]|\$)" "$SEUSS_ROOT/kernel/config/seuss.config"
    cat "$extra"
}

# Hash of everything the built kernel depends on: Debian's source version, our patches, config fragment,
# the uapi header and the part of kernel.sh that shapes the build.
kernel_hash() {
    {
        dpkg-query -W -f='${Version}\n' linux-source-6.12
        cat "$SEUSS_ROOT"/kernel/patches/*.patch "$SEUSS_ROOT"/uapi/include/linux/seuss.h
        config_fragment
        sed -n '/^# BUILD-RECIPE-BEGIN/,/^# BUILD-RECIPE-END/p' "$SEUSS_ROOT"/scripts/kernel.sh
        /usr/bin/rustc --version; clang-19 --version | head -1
    } | sha256sum | cut -c1-16
}
