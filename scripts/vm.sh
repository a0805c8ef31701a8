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
timeout --foreground -k 10 "$timeout_s" vng ${SEUSS_VM_VERBOSE:+-v} -r "$kimg" --disable-kvm -m 4G -p 2 --rwdir="$out" --rodir="$SEUSS_ROOT" "${systemd[@]}" \
    --exec "bash $out/guest.sh" </dev/null > "$out/console" 2>&1
vrc=$?
set -e
cat "$out/guest.log" 2>/dev/null || true
if [[ ! -f "$out/rc" ]]; then
    echo "vm: the guest command did not finish (vng exit $vrc); console:" >&2
    tail -40 "$out/console" >&2
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
