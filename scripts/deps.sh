#!/usr/bin/env bash
#! Installs every tool seuss needs on a fresh Debian 12 machine, only when missing.
#! Idempotent: a second run costs a few seconds.
set -euo pipefail

need_apt=()
pkgs=(linux-source-6.12 rustc-web rust-web-src clang-19 lld-19 llvm-19 libclang-19-dev
      qemu-system-x86 flex bison bc libelf-dev libssl-dev dwarves cpio kmod python3-pip
      busybox-static dbus systemd xz-utils rsync pkg-config)
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if ((${#need_apt[@]})); then
    echo "deps: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

export PATH="$HOME/.cargo/bin:$PATH"
# 0.72.1, not 0.73: 0.73 emits struct padding as an 8-byte-aligned wrapper (`__BindgenOpaqueArray8<[u8; 4]>`
# takes 8 bytes at an 8-aligned offset), which put every task_struct field from `se` on 64 bytes late in
# the kernel's Rust bindings (rust-bindgen issue 3406; docs/kernel-notes.md). seuss.ko refuses to load
# on such bindings.
if ! command -v bindgen >/dev/null || ! bindgen --version | grep -qx 'bindgen 0\.72\.1'; then
    echo "deps: cargo install bindgen-cli 0.72.1"
    cargo install --locked --quiet --force bindgen-cli@0.72.1
fi

# virtio-fs for VMs that boot systemd (see scripts/vm.sh); the Rust virtiofsd is on crates.io.
if ! command -v virtiofsd >/dev/null; then
    echo "deps: cargo install virtiofsd"
    apt-get install -y -qq --no-install-recommends libseccomp-dev libcap-ng-dev >/dev/null
    cargo install --locked --quiet virtiofsd
fi

if ! command -v vng >/dev/null; then
    echo "deps: pip install virtme-ng"
    pip3 install --quiet virtme-ng || pip3 install --quiet --break-system-packages virtme-ng
fi
