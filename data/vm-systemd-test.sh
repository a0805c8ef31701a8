#!/usr/bin/env bash
#! seuss under a real systemd: install, start, drive over D-Bus, restart, stop, check authorization.
#! Run as root inside a VM booted with systemd as init and the patched kernel.
#!   SEUSS_BIN=<dir with seussd, seuss-stub, seussctl>  SEUSS_KO=<path to seuss.ko>  data/vm-systemd-test.sh
#! Prints TAP (`ok N - ...` / `not ok N - ...`, plan at the end); exits 1 if any check failed.
#! Read-only system directories (virtme-ng shares the host root read-only) get a tmpfs overlay first.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${SEUSS_BIN:?set SEUSS_BIN to the directory holding seussd, seuss-stub and seussctl}"
: "${SEUSS_KO:?set SEUSS_KO to the seuss.ko to load}"

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
# check DESCRIPTION COMMAND...: ok when COMMAND succeeds; its output is shown as TAP comments on failure.
check() {
    local desc="$1" out; shift
    if out="$("$@" 2>&1)"; then ok "$desc"; else not_ok "$desc"; diag <<<"$out"; fi
}
# expect_rc CODE DESCRIPTION COMMAND...: ok when COMMAND exits with CODE.
expect_rc() {
    local want="$1" desc="$2" out rc; shift 2
    out="$("$@" 2>&1)"; rc=$?
    if [[ $rc == "$want" ]]; then ok "$desc"; else not_ok "$desc: exit $rc, expected $want"; diag <<<"$out"; fi
}
diag() { sed 's/^/# /'; }
finish() {
    echo "1..$n"
    if ((failed)); then
        echo "# $failed of $n checks failed; seussd journal:"
        journalctl -u seussd --no-pager -n 60 2>/dev/null | diag
        exit 1
    fi
    exit 0
}
[[ $EUID -eq 0 ]] || { echo "Bail out! run as root"; exit 1; }
[[ "$(cat /proc/1/comm 2>/dev/null)" == systemd ]] || { echo "Bail out! PID 1 is not systemd"; exit 1; }

# Make DIR writable: a tmpfs-backed overlay when it is read-only (nothing of it reaches the host).
writable() {
    local d="$1" t
    t="$d/.seuss-write-test.$$"
    if touch "$t" 2>/dev/null; then rm -f "$t"; return 0; fi
    local o="/run/seuss-overlay/${d//\//_}"
    mkdir -p "$o" && mount -t tmpfs tmpfs "$o" && mkdir -p "$o/upper" "$o/work" &&
        mount -t overlay overlay -o "lowerdir=$d,upperdir=$o/upper,workdir=$o/work" "$d"
}
for d in /usr /etc /var/lib; do
    writable "$d" || { echo "Bail out! cannot make $d writable"; exit 1; }
done
SEUSSCTL=/usr/bin/seussctl
ctl() { "$SEUSSCTL" "$@"; }
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }

# 1. Kernel module and device node.
[[ -e /dev/seuss ]] || insmod "$SEUSS_KO" 2>&1 | diag
check "seuss.ko loaded, /dev/seuss exists" test -c /dev/seuss

# 2. Install.
if out="$("$root/scripts/install.sh" "$SEUSS_BIN" 2>&1)"; then ok "scripts/install.sh"; else not_ok "scripts/install.sh"; diag <<<"$out"; finish; fi
check "/dev/seuss is root-only (0600 root:root)" test "$(stat -c '%a %U %G' /dev/seuss)" = "600 root root"
check "group seuss and user seuss-fn exist" bash -c 'getent group seuss && getent passwd seuss-fn'
# Short idle timeout, so the instance left by prewarm goes away and the next start is a warm deploy.
sed -i -e "s/^idle_timeout_s = .*/idle_timeout_s = 2/" -e "s/^init_timeout_ms = .*/init_timeout_ms = 120000/" /etc/seuss/seussd.toml
systemctl is-active -q dbus.socket dbus.service || systemctl start dbus.socket dbus.service

# 3. Start and introspect.
check "systemctl start seussd" systemctl start seussd.service
check "seussd is active" systemctl is-active -q seussd.service
# Type=notify: active means seussd sent READY=1; the watchdog's first ping comes right after.
check "seussd.service is Type=notify" test "$(systemctl show -p Type --value seussd.service)" = notify
wd=0
for _ in $(seq 1 200); do
    wd="$(systemctl show -p WatchdogTimestampMonotonic --value seussd.service)"
    [[ "${wd:-0}" != 0 ]] && break
    sleep 0.1
done
if [[ "${wd:-0}" != 0 ]]; then ok "systemd received seussd's watchdog ping"
else not_ok "no watchdog ping from seussd within 20 s"; fi
check "systemctl reload seussd (SIGHUP)" systemctl reload seussd.service
found=""
for _ in $(seq 1 200); do
    journalctl -u seussd --no-pager -o cat 2>/dev/null | grep -q "reloaded /etc/seuss/seussd.toml" && { found=1; break; }
    sleep 0.1
done
if [[ -n "$found" ]]; then ok "seussd logged the reload"; else not_ok "no reload line in the journal"; fi
check "seussd is active after the reload" systemctl is-active -q seussd.service
intro="$(busctl introspect org.seuss.Manager1 /org/seuss/Manager1 2>&1)"
missing=""
for m in .CreateFunction .UpdateFunction .DeleteFunction .ListFunctions .GetFunction .Invoke .InvokeWithOptions .GetActivation \
    .ListSnapshots .DropSnapshot .Prewarm .GetStats .Version .ModulePresent .MemoryBudget .MemoryUsed \
    .SnapshotCount .InstanceCount .SnapshotCaptured .SnapshotEvicted .FunctionChanged; do
    grep -q -- "^$m " <<<"$intro" || missing+=" $m"
done
if [[ -z "$missing" ]]; then ok "busctl introspect shows the whole org.seuss.Manager1 interface"
else not_ok "busctl introspect: missing$missing"; diag <<<"$intro"; fi
prop="$(busctl get-property org.seuss.Manager1 /org/seuss/Manager1 org.seuss.Manager1 ModulePresent 2>&1)"
if [[ "$prop" == "b true" ]]; then ok "busctl get-property ModulePresent is true"
else not_ok "busctl get-property ModulePresent: $prop"; fi
score="$(systemd-analyze security seussd.service 2>/dev/null | sed -n 's/.*Overall exposure level for seussd.service: //p')"
echo "# systemd-analyze security seussd.service: ${score:-unavailable}"

# 4. Create and invoke: cold/runtime first, then a warm deploy from the function snapshot.
fn_dir="$(mktemp -d)"
printf 'def main(args):\n    return {"greeting": "Hello " + args.get("name", "stranger")}\n' >"$fn_dir/hello.py"
check "seussctl function create hello" ctl function create hello "$fn_dir/hello.py"
act="$(ctl --json invoke hello -p name=vm 2>&1)"
if [[ "$(jget 'd["response"]["result"]["greeting"]' <<<"$act" 2>/dev/null)" == "Hello vm" ]]; then
    ok "first invoke returns the result (startPath $(jget '[a["value"] for a in d["annotations"] if a["key"]=="startPath"][0]' <<<"$act"))"
else not_ok "first invoke"; diag <<<"$act"; fi
check "seussctl prewarm hello" ctl prewarm hello
check "seussctl snapshots --tree shows the function snapshot under the runtime snapshot" \
    bash -c "$SEUSSCTL snapshots --tree | tee /dev/stderr | grep -q '── #[0-9]* function hello'"
for _ in $(seq 1 60); do
    [[ "$(ctl status --json | jget 'd["instances"]')" == 0 ]] && break
    sleep 0.5
done
act="$(ctl --json invoke hello -p name=warm 2>&1)"
path="$(jget '[a["value"] for a in d["annotations"] if a["key"]=="startPath"][0]' <<<"$act" 2>/dev/null)"
if [[ "$path" == warm && "$(jget 'd["response"]["result"]["greeting"]' <<<"$act")" == "Hello warm" ]]; then
    ok "invoke after prewarm runs on the warm path"
else not_ok "invoke after prewarm: startPath '$path', expected warm"; diag <<<"$act"; fi

act="$(ctl --json invoke hello --path warm -p name=forced 2>&1)"
path="$(jget '[a["value"] for a in d["annotations"] if a["key"]=="startPath"][0]' <<<"$act" 2>/dev/null)"
if [[ "$path" == warm ]]; then ok "invoke --path warm deploys the function snapshot"
else not_ok "invoke --path warm: startPath '$path'"; diag <<<"$act"; fi

# 5. Restart keeps the functions.
check "systemctl restart seussd" systemctl restart seussd.service
check "functions survive a restart" bash -c "$SEUSSCTL function list --json | grep -q '\"name\":\"hello\"'"
act="$(ctl --json invoke hello -p name=again 2>&1)"
if [[ "$(jget 'd["response"]["result"]["greeting"]' <<<"$act" 2>/dev/null)" == "Hello again" ]]; then
    ok "invoke after restart (startPath $(jget '[a["value"] for a in d["annotations"] if a["key"]=="startPath"][0]' <<<"$act"))"
else not_ok "invoke after restart"; diag <<<"$act"; fi

# 6. Authorization: a member of group seuss may read, not change; others may do neither.
id vm-member &>/dev/null || useradd -M -s /usr/sbin/nologin -G seuss vm-member
id vm-outsider &>/dev/null || useradd -M -s /usr/sbin/nologin vm-outsider
# shellcheck disable=SC2329 # called through check and expect_rc
as() { local u="$1"; shift; runuser -u "$u" -- "$SEUSSCTL" "$@"; }
check "member of seuss: function list allowed" as vm-member function list
check "member of seuss: status allowed" as vm-member status
expect_rc 4 "member of seuss: function delete refused" as vm-member function delete hello
expect_rc 4 "member of seuss: invoke refused" as vm-member invoke hello
expect_rc 4 "non-member: function list refused" as vm-outsider function list
expect_rc 4 "non-member: invoke refused" as vm-outsider invoke hello
out="$(runuser -u vm-outsider -- busctl call org.seuss.Manager1 /org/seuss/Manager1 org.seuss.Manager1 ListFunctions 2>&1)"
if grep -qi "access denied\|AccessDenied\|not allowed" <<<"$out"; then ok "non-member: busctl call refused by the bus policy"
else not_ok "non-member busctl call not refused"; diag <<<"$out"; fi

# 7. Stop leaves no instance behind; D-Bus activation starts seussd again.
check "systemctl stop seussd" systemctl stop seussd.service
sleep 1
if pgrep -u seuss-fn >/dev/null; then not_ok "instances left after stop: $(pgrep -a -u seuss-fn | tr '\n' ';')"
else ok "no seuss-fn process after systemctl stop"; fi
check "a D-Bus call activates seussd (SystemdService=)" ctl function list
check "seussd is active again after bus activation" systemctl is-active -q seussd.service
check "function delete hello" ctl function delete hello
systemctl stop seussd.service
rm -rf "$fn_dir"
finish
