# shellcheck shell=bash
#! Shared settings for the seuss scripts: where caches live and how the kernel toolchain is called.
SEUSS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SEUSS_CACHE="${SEUSS_CACHE:-/var/cache/seuss}"
KSRC="$SEUSS_CACHE/src/linux-source-6.12"
# Kernel flavour (SEUSS_FLAVOR; each is built, cached and hashed on its own, with its own module build):
#   test   kernel/config/seuss.config: lockdep, atomic-sleep, list and mm (DEBUG_VM) checks. The default;
#          scripts/test.sh runs the daemon's VM tests (seussd, systemd) on it.
#   bench  + bench.config: the test kernel without the lock and mm debugging that multiplies the cost of
#          every lock in the kernel paths a benchmark measures (scripts/bench.sh).
#   debug  + debug.config: the test kernel plus KASAN (generic), KFENCE, kmemleak, UBSAN, hung-task detection
#          (30 s) and fault injection (failslab, fail_page_alloc, /proc/<tid>/fail-nth); scripts/test.sh runs
#          the KTAP selftests and the fuzzer on it, and scripts/vm.sh ends each run on it with a kmemleak scan.
SEUSS_FLAVOR="${SEUSS_FLAVOR:-test}"
case "$SEUSS_FLAVOR" in
    test) KBUILD="$SEUSS_CACHE/build"; SEUSS_KO="$SEUSS_ROOT/target/seuss.ko" ;;
    bench) KBUILD="$SEUSS_CACHE/build-bench"; SEUSS_KO="$SEUSS_ROOT/target/seuss-bench.ko" ;;
    debug) KBUILD="$SEUSS_CACHE/build-debug"; SEUSS_KO="$SEUSS_ROOT/target/seuss-debug.ko" ;;
    *) echo "SEUSS_FLAVOR must be test, bench or debug, not '$SEUSS_FLAVOR'" >&2; exit 2 ;;
esac
export PATH="$HOME/.cargo/bin:$PATH"
# The kernel's Rust must be Debian's rustc-web (it has the library source); userspace uses rustup's cargo.
KMAKE_ARGS=(LLVM=-19 RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc BINDGEN=bindgen)

# The config fragment of the flavour: kernel/config/seuss.config, with the options that
# kernel/config/$SEUSS_FLAVOR.config names replaced by its lines (test has no such file: seuss.config alone).
config_fragment() {
    local extra="$SEUSS_ROOT/kernel/config/$SEUSS_FLAVOR.config"
    if [[ ! -f "$extra" ]]; then cat "$SEUSS_ROOT/kernel/config/seuss.config"; return; fi
    local opts
    opts="$(grep -oE 'CONFIG_[A-Z0-9_]+' "$extra" | sort -u | paste -sd'|')"
    grep -vE "(^|[# ])($opts)([= ]|\$)" "$SEUSS_ROOT/kernel/config/seuss.config"
    cat "$extra"
}

# Hash of everything the built kernel depends on: Debian's source version, our patches, the flavour's config
# fragment (seuss.config merged with $SEUSS_FLAVOR.config, so editing debug.config rebuilds only the debug
# kernel), the uapi header, the part of kernel.sh that shapes the build, the compilers and bindgen.
kernel_hash() {
    {
        dpkg-query -W -f='${Version}\n' linux-source-6.12
        cat "$SEUSS_ROOT"/kernel/patches/*.patch "$SEUSS_ROOT"/uapi/include/linux/seuss.h
        config_fragment
        sed -n '/^# BUILD-RECIPE-BEGIN/,/^# BUILD-RECIPE-END/p' "$SEUSS_ROOT"/scripts/kernel.sh
        /usr/bin/rustc --version; clang-19 --version | head -1; bindgen --version
    } | sha256sum | cut -c1-16
}
