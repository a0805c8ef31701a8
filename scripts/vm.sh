#!/usr/bin/env bash
#! Boots the cached patched kernel in a TCG VM (virtme-ng, host root read-only over 9p), runs one shell
#! command there as root, and returns the command's real exit status and output to the host.
#!   scripts/vm.sh [--systemd] [--timeout SECONDS] -- 'command'
#! Fails loudly (exit 1, offending lines printed) if the guest's kernel log shows an oops, WARNING:, BUG:,
#! a lockdep report, KASAN/UBSAN, a panic or a hung task, even if the command itself succeeded.
#! The guest sees the host's files at the same paths; $SEUSS_OUT is a host directory it may write.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
systemd=(); timeout_s=3000
while (($#)); do
    case "$1" in
        # systemd as init reads its files through the 9p root and trips a netfs read-retry recursion in
        # 6.12 (stack overflow in PID 1); those runs use virtio-fs (virtiofsd from crates.io) instead.
        --systemd) systemd=(--systemd); shift ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
cmd="$*"
[[ -n "$cmd" ]] || { echo "usage: scripts/vm.sh [--systemd] [--timeout S] -- 'command'" >&2; exit 2; }
"$SEUSS_ROOT/scripts/kernel.sh" --check || "$SEUSS_ROOT/scripts/kernel.sh" >/dev/null
kimg="$KBUILD/arch/x86/boot/bzImage"
if ((${#systemd[@]})); then
    rootfs=()
    mkdir -p /usr/lib/modules   # vng --systemd wants the host's module directory to exist
else
    rootfs=(--force-9p)         # the root filesystem every other run was validated with
fi
out="$(mktemp -d /tmp/seuss-vm.XXXXXX)"
cat > "$out/guest.sh" <<GUEST
#!/bin/bash
export SEUSS_OUT=$out PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:\$PATH
cd "$PWD"
( $cmd ) > >(tee "$out/guest.log") 2>&1
echo \$? > "$out/rc"
sync
dmesg > "$out/dmesg"
sync
GUEST
chmod +x "$out/guest.sh"
echo "vm: booting $(basename "$kimg") ($(cat "$KBUILD/.seuss-hash")) under TCG; output in $out" >&2
set +e
if ((${#systemd[@]})); then
    # Under systemd virtme-ng-init does not run, so neither the --exec hook nor the shared output directory
    # exist: systemd runs the script itself (systemd.run=, kernel-command-line.service), the script writes
    # to the serial console between markers, and the guest powers off when it is done.
    gs="$SEUSS_ROOT/target/vm-guest-$(basename "$out").sh"
    mkdir -p "$SEUSS_ROOT/target"
    cat > "$gs" <<GUEST
#!/bin/bash
exec > /dev/ttyS0 2>&1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cd "$PWD"
echo "@@SEUSS-BEGIN@@"
( $cmd ) 2>&1 | tr -d '\r'
rc=\${PIPESTATUS[0]}
echo "@@SEUSS-END@@"
echo "@@SEUSS-RC=\$rc@@"
dmesg | sed 's/^/@@DMESG@@ /'
echo "@@SEUSS-DONE@@"
GUEST
    chmod +x "$gs"
    timeout --foreground -k 10 "$timeout_s" vng -v -r "$kimg" --disable-kvm -m 4G -p 2 "${systemd[@]}" \
        --append "systemd.run=$gs" --append systemd.run_success_action=poweroff \
        --append systemd.run_failure_action=poweroff </dev/null > "$out/console" 2>&1
    vrc=$?
    rm -f "$gs"
    tr -d '\r' < "$out/console" > "$out/console.txt"
    sed -n '/^@@SEUSS-BEGIN@@/,/^@@SEUSS-END@@/p' "$out/console.txt" | sed '1d;$d' > "$out/guest.log"
    sed -n 's/^@@DMESG@@ //p' "$out/console.txt" > "$out/dmesg"
    rcv="$(sed -n 's/^@@SEUSS-RC=\([0-9]*\)@@$/\1/p' "$out/console.txt" | tail -1)"
    [[ -n "$rcv" ]] && echo "$rcv" > "$out/rc"
    : > "$out/console"   # systemd's own status lines are not kernel reports; dmesg is checked below
else
    timeout --foreground -k 10 "$timeout_s" vng ${SEUSS_VM_VERBOSE:+-v} -r "$kimg" --disable-kvm -m 4G -p 2 --rwdir="$out" --rodir="$SEUSS_ROOT" "${rootfs[@]}" \
        --exec "bash $out/guest.sh" </dev/null > "$out/console" 2>&1
    vrc=$?
fi
set -e
cat "$out/guest.log" 2>/dev/null || true
if [[ ! -f "$out/rc" ]]; then
    echo "vm: the guest command did not finish (vng exit $vrc); console:" >&2
    tail -40 "$out/console" "$out/console.txt" 2>/dev/null >&2
    exit 1
fi
rc="$(cat "$out/rc")"
bad='(WARNING:|BUG:|Oops|KASAN|UBSAN|general protection fault|Kernel panic|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|INFO: task .* blocked|rcu_sched self-detected stall|refcount_t: |kernel BUG|list_add corruption|list_del corruption)'
if grep -Eq "$bad" "$out/dmesg" "$out/console" 2>/dev/null; then
    echo "vm: kernel problems in the guest log:" >&2
    grep -Eh -A20 "$bad" "$out/dmesg" "$out/console" | head -80 >&2
    exit 1
fi
echo "vm: guest command exited $rc; kernel log clean" >&2
exit "$rc"
