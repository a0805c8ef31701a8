# shellcheck shell=bash
#! Shared settings for the seuss scripts: where caches live and how the kernel toolchain is called.
SEUSS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SEUSS_CACHE="${SEUSS_CACHE:-/var/cache/seuss}"
KSRC="$SEUSS_CACHE/src/linux-source-6.12"
KBUILD="$SEUSS_CACHE/build"
export PATH="$HOME/.cargo/bin:$PATH"
# The kernel's Rust must be Debian's rustc-web (it has the library source); userspace uses rustup's cargo.
KMAKE_ARGS=(LLVM=-19 RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc BINDGEN=bindgen)

# Hash of everything the built kernel depends on: Debian's source version, our patches, config fragment,
# the uapi header and the part of kernel.sh that shapes the build.
kernel_hash() {
    {
        dpkg-query -W -f='${Version}\n' linux-source-6.12
        cat "$SEUSS_ROOT"/kernel/patches/*.patch "$SEUSS_ROOT"/kernel/config/seuss.config \
            "$SEUSS_ROOT"/uapi/include/linux/seuss.h
        sed -n '/^# BUILD-RECIPE-BEGIN/,/^# BUILD-RECIPE-END/p' "$SEUSS_ROOT"/scripts/kernel.sh
        /usr/bin/rustc --version; clang-19 --version | head -1
    } | sha256sum | cut -c1-16
}
