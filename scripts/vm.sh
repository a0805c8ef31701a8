#!/usr/bin/env bash
#! Boots the cached patched kernel in a TCG VM (virtme-ng, host root read-only over 9p), runs one shell
#! command there as root, and returns the command's real exit status and output to the host.
#!   scripts/vm.sh [--systemd] [--timeout SECONDS] -- 'command'
#! --systemd boots with systemd as PID 1 (QEMU started directly, root over virtio-fs with a tmpfs overlay);
#! the command then runs as systemd's kernel-command-line.service and the guest powers off after it.
#! Fails loudly (exit 1, offending lines printed) if the guest's kernel log shows an oops, WARNING:, BUG:,
#! a lockdep report, a KASAN, KFENCE, UBSAN or kmemleak report, a panic, an RCU stall or a hung task, even if
#! the command itself succeeded. On a kernel with kmemleak (the debug flavour) the run also ends with a
#! kmemleak scan: suspects from before the command (boot) are cleared first, any found after it fail the run
#! (report in $out/kmemleak).
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
# One vCPU: under TCG with two, a static key flipped while other vCPUs run (perf's sched-in key toggles
# whenever the first or last per-task perf event, e.g. our breakpoints, comes or goes) left a stale int3
# in a translated block: "Oops: int3" in finish_task_switch, a panic of the emulator's making, not the
# kernel's (real CPUs serialise cross-modified code). SEUSS_VM_CPUS overrides.
VCPUS="${SEUSS_VM_CPUS:-1}"
# Kernel command line for every boot. no_timer_check: on a loaded host TCG can be too slow for the boot-time
# IO-APIC timer probe, which then panics ("IO-APIC + timer doesn't work!") before anything ran.
# A KASAN kernel (the debug flavour) gets no5lvl: under -cpu max (LA57) the kernel runs with 5-level paging,
# and identify_cpu() clears boot_cpu_data's capabilities while it re-reads them, so for that moment
# pgtable_l5_enabled() is false and KASAN takes every direct-map address for a wild one: an interrupt in
# that window gave "BUG: KASAN: wild-memory-access in rcu_is_watching" at 0-5 s uptime (and lockdep off for
# the run). 4-level paging there; the test kernel keeps 5-level, so seuss's page walks run under both.
kargs_extra=(no_timer_check)
! grep -qx 'CONFIG_KASAN=y' "$KBUILD/.config" || kargs_extra+=(no5lvl)
if ((${#systemd[@]})); then
    rootfs=()                   # unused: the --systemd run starts QEMU itself (below)
else
    rootfs=(--force-9p)         # the root filesystem every other run was validated with
fi
out="$(mktemp -d /tmp/seuss-vm.XXXXXX)"
# Guest side of the kmemleak check, sourced by both guest.sh variants; a no-op on kernels without kmemleak.
# kmemleak reports an object only if no pointer to it was found, it is at least 5 s old at the start of the
# scan, and its contents did not change since the previous scan (a first scan sees every object as changed),
# so each check is two scans with the age condition in between. Writes $out/kmemleak.on (kmemleak present),
# $out/kmemleak-boot (suspects from before the command, cleared), $out/kmemleak (after the command; written
# only once complete) or $out/kmemleak.err.
cat > "$out/kmemleak.sh" <<'KMEMLEAK'
KML=/sys/kernel/debug/kmemleak
uptime_cs() { local u; read -r u _ < /proc/uptime; echo "${u/./}"; }   # centiseconds since boot
kml_scan() { echo scan 2>/dev/null > "$KML"; }                         # fails if kmemleak turned itself off
# Scans twice, the second time once every object allocated before uptime $1 (cs) is old enough to be reported.
kml_scan_twice() {
    local t="$1"
    kml_scan || return 1
    while (( $(uptime_cs) < t + 550 )); do sleep 0.2; done
    kml_scan
}
secs() { printf '%d.%02d' $(($1 / 100)) $(($1 % 100)); }
kmemleak_begin() {
    mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
    [[ -e $KML ]] || return 0
    : > "$SEUSS_OUT/kmemleak.on"
    local t0; t0=$(uptime_cs)
    # Suspects from boot are not this run's (and not seuss's): report them, keep the report, clear them.
    if kml_scan_twice "$t0" && cat "$KML" > "$SEUSS_OUT/kmemleak-boot" && echo clear > "$KML"; then
        echo "vm: kmemleak: $(grep -c '^unreferenced object' "$SEUSS_OUT/kmemleak-boot") boot-time suspects cleared at $(secs "$t0") s uptime (scans took $(secs $(($(uptime_cs) - t0))) s)" > "$SEUSS_OUT/kmemleak.log"
    else
        echo "the scan before the command failed (kmemleak disabled?)" >> "$SEUSS_OUT/kmemleak.err"
    fi
}
kmemleak_end() {
    [[ -e $SEUSS_OUT/kmemleak.on ]] || return 0
    local t1; t1=$(uptime_cs)   # the command has ended: what it leaked was allocated before now
    if kml_scan_twice "$t1" && cat "$KML" > "$SEUSS_OUT/kmemleak.tmp"; then
        mv "$SEUSS_OUT/kmemleak.tmp" "$SEUSS_OUT/kmemleak"
        echo "vm: kmemleak: final scans took $(secs $(($(uptime_cs) - t1))) s" >> "$SEUSS_OUT/kmemleak.log"
    else
        echo "the scan after the command failed (kmemleak disabled?)" >> "$SEUSS_OUT/kmemleak.err"
    fi
}
KMEMLEAK
cat > "$out/guest.sh" <<GUEST
#!/bin/bash
export SEUSS_OUT=$out PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:\$PATH
cd "$PWD"
source "$out/kmemleak.sh"
kmemleak_begin
( $cmd ) > >(tee "$out/guest.log") 2>&1
echo \$? > "$out/rc"
kmemleak_end
sync
dmesg > "$out/dmesg"
sync
GUEST
chmod +x "$out/guest.sh"
echo "vm: booting $(basename "$kimg") ($(cat "$KBUILD/.seuss-hash")) under TCG; output in $out" >&2
set +e
if ((${#systemd[@]})); then
    # QEMU is started directly here, not through vng: the host root carries /.dockerenv, so systemd in
    # the guest detected "docker", took PID 1's argv for the kernel command line and ignored every
    # systemd.* option (systemd.run=, systemd.mask=), and vng's own init hook never ran either.
    # Our init ($out/init.sh, PID 1 until systemd) puts a tmpfs overlay over the read-only virtio-fs
    # root with /.dockerenv whited out (nothing written reaches the host), mounts $out (a second,
    # writable virtio-fs share) at the same path, pivots into the overlay and execs systemd.
    # systemd runs guest.sh as kernel-command-line.service (systemd.run=) and powers off after it.
    qemu_pids=(); vfs_pids=()
    vfs="$(mktemp -d /tmp/seuss-vfs.XXXXXX)"
    # shellcheck disable=SC2317,SC2329 # called from the trap
    cleanup_vm() {
        local p
        for p in "${qemu_pids[@]}" "${vfs_pids[@]}"; do kill "$p" 2>/dev/null || true; done
        rm -rf "$vfs"
    }
    trap cleanup_vm EXIT
    moddir="$KBUILD/.virtme_mods/lib/modules/0.0.0"
    cat > "$out/init.sh" <<INIT
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
fail() { echo "seuss-init: \$*" > /dev/console; exit 1; }   # PID 1 exits: panic=-1, QEMU -no-reboot ends
mount -t proc proc /proc || fail "mount /proc"
mount -t tmpfs -o mode=0755 seuss-root /run || fail "tmpfs on /run"
mkdir -p /run/upper/etc /run/work /run/root || fail mkdir
mknod /run/upper/.dockerenv c 0 0 || fail "whiteout /.dockerenv"
: > /run/upper/etc/fstab
mount -t overlay seuss-root -o lowerdir=/,upperdir=/run/upper,workdir=/run/work /run/root || fail "overlay root"
mount -t virtiofs seussout /run/root$out || fail "virtio-fs $out"
if [ -d "$moddir" ]; then mkdir -p /run/root/usr/lib/modules && ln -sfn "$moddir" "/run/root/usr/lib/modules/\$(uname -r)"; fi
cd /run/root && mkdir -p .seuss-oldroot && pivot_root . .seuss-oldroot || fail pivot_root
exec chroot . /bin/sh -c 'mount -t proc proc /proc; umount -l /.seuss-oldroot && rmdir /.seuss-oldroot; exec /sbin/init' \
    < /dev/console > /dev/console 2>&1
INIT
    cat > "$out/guest.sh" <<GUEST
#!/bin/bash
export SEUSS_OUT=$out PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cd "$PWD"
source "$out/kmemleak.sh"
kmemleak_begin
( $cmd ) > "$out/guest.log" 2>&1 < /dev/null
echo \$? > "$out/rc"
kmemleak_end
dmesg > "$out/dmesg"
sync
exit 0
GUEST
    chmod +x "$out/init.sh" "$out/guest.sh"
    virtiofsd --socket-path "$vfs/root.sock" --shared-dir / --readonly --sandbox none --cache always \
        --no-announce-submounts > "$vfs/root.log" 2>&1 &
    vfs_pids+=($!)
    virtiofsd --socket-path "$vfs/out.sock" --shared-dir "$out" --sandbox none --cache auto \
        --no-announce-submounts > "$vfs/out.log" 2>&1 &
    vfs_pids+=($!)
    for _ in $(seq 1 100); do [[ -S "$vfs/root.sock" && -S "$vfs/out.sock" ]] && break; sleep 0.1; done
    kargs=(console=ttyS0 loglevel=5 panic=-1 root=ROOTFS rootfstype=virtiofs ro raid=noautodetect
        audit=off luks=no systemd.zram=0 systemd.hostname=seuss-vm
        systemd.mask=serial-getty@ttyS0.service systemd.mask=getty@tty1.service
        "systemd.run=$out/guest.sh" systemd.run_success_action=poweroff systemd.run_failure_action=poweroff
        "init=$out/init.sh" "${kargs_extra[@]}")
    timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 -name seuss-vm-systemd -machine q35 -cpu max \
        -m 4G -smp "$VCPUS" -object memory-backend-memfd,id=mem,size=4G,share=on -numa node,memdev=mem \
        -chardev socket,id=vfsroot,path="$vfs/root.sock" -device vhost-user-fs-pci,chardev=vfsroot,tag=ROOTFS \
        -chardev socket,id=vfsout,path="$vfs/out.sock" -device vhost-user-fs-pci,chardev=vfsout,tag=seussout \
        -parallel none -net none -vga none -display none -monitor none -no-reboot \
        -serial "file:$out/console.txt" -kernel "$kimg" -append "${kargs[*]}" </dev/null > "$out/qemu.log" 2>&1 &
    qemu_pids+=($!)
    wait "${qemu_pids[0]}"
    vrc=$?
    qemu_pids=()
    cat "$out/qemu.log" >> "$out/console.txt"
    # Kernel lines only (loglevel=5: warnings and worse, including those after dmesg was saved, at
    # shutdown); systemd's status lines on the same console are not kernel reports.
    tr -d '\r' < "$out/console.txt" | grep -aE '^\[ *[0-9]+\.[0-9]+\] ' > "$out/console" || true
else
    timeout --foreground -k 10 "$timeout_s" vng -v -r "$kimg" --disable-kvm -m 4G -p "$VCPUS" --rwdir="$out" --rodir="$SEUSS_ROOT" "${rootfs[@]}" \
        --append "${kargs_extra[*]}" \
        --exec "bash $out/guest.sh" </dev/null > "$out/console" 2>&1
    vrc=$?
    # A timed-out vng can leave its QEMU behind; QEMU's command line names $out (the --rwdir share).
    pkill -9 -f -- "$out" 2>/dev/null || true
fi
set -e
cat "$out/guest.log" 2>/dev/null || true
if [[ ! -f "$out/rc" ]]; then
    echo "vm: the guest command did not finish (VM exit $vrc); console:" >&2
    tail -n 40 "$out/console" "$out/console.txt" 2>/dev/null >&2
    exit 1
fi
rc="$(cat "$out/rc")"
# What counts as a kernel problem. WARNING: is every WARN*() and most lockdep reports ("WARNING: possible
# circular locking dependency detected", "... inconsistent lock state", "... bad unlock balance"); BUG: is
# BUG_ON, KFENCE ("BUG: KFENCE: use-after-free read in ..."), KASAN ("BUG: KASAN: slab-out-of-bounds in
# ..."), soft lockups, sleeping in atomic context and bad page state. The rest: reports that use neither
# (SLUB's "BUG kmalloc-64 (Not tainted): ...", hung tasks, RCU stalls, kmemleak in verbose mode or out of
# memory for its own metadata), and lockdep switching itself off, after which nothing more is checked.
bad='WARNING:|BUG:|BUG [^ ]+ \((Not t|T)ainted\)|Oops|KASAN|KFENCE|UBSAN|general protection fault|Kernel panic'
bad+='|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage'
bad+='|INFO: trying to register non-static key|turning off the locking correctness validator'
bad+='|Disabling lock debugging due to kernel taint'
bad+='|INFO: task .* blocked for more than|self-detected stall|detected stalls on CPU'
bad+='|unreferenced object 0x|kmemleak: (Cannot allocate|Memory pool empty|Kernel memory leak detector disabled)'
bad+='|refcount_t: |kernel BUG|list_add corruption|list_del corruption'
problems=0
if grep -Eq "$bad" "$out/dmesg" "$out/console" 2>/dev/null; then
    echo "vm: kernel problems in the guest log:" >&2
    grep -Eh -A20 "$bad" "$out/dmesg" "$out/console" | head -80 >&2
    problems=1
fi
if [[ -e "$out/kmemleak.on" ]]; then
    cat "$out/kmemleak.log" >&2 2>/dev/null
    if [[ -s "$out/kmemleak.err" ]]; then
        echo "vm: kmemleak: check failed: $(cat "$out/kmemleak.err")" >&2
        problems=1
    elif [[ ! -f "$out/kmemleak" ]]; then
        echo "vm: kmemleak: the final scan did not finish" >&2
        problems=1
    elif [[ -s "$out/kmemleak" ]]; then
        echo "vm: kmemleak: $(grep -c '^unreferenced object' "$out/kmemleak") suspected leaks during the run ($out/kmemleak):" >&2
        head -200 "$out/kmemleak" >&2
        problems=1
    else
        echo "vm: kmemleak: clean" >&2
    fi
fi
if ((problems)); then
    echo "vm: guest command exited $rc, but the kernel reported problems (above)" >&2
    exit 1
fi
echo "vm: guest command exited $rc; kernel log clean" >&2
exit "$rc"
