#!/bin/bash
# seussd end-to-end test, run inside the VM as root with seuss.ko loaded.
#
#   SEUSS_BIN=/path/to/target/debug seussd/tests/vm/run.sh [SECTION...]
#
# Sections (default: all, in this order): basic (start paths, uniqueness, isolation, timeouts, killed
# instances, restarts, budget), crash (seussd kill -9ed mid-capture and mid-deploy, then restarted:
# SEUSS_CRASH_ROUNDS rounds, default 3).
# Needs: $SEUSS_BIN/seussd and $SEUSS_BIN/seuss-stub, /dev/seuss, python3 (SEUSS_PYTHON, default
# /usr/bin/python3), user "nobody". Prints TAP (`ok N name` / `not ok N name`); exits 1 if any test failed,
# 4 if the environment is missing (skip). Leaves its work directory (config, logs) when a test fails.
set -u

BIN=${SEUSS_BIN:?set SEUSS_BIN to the directory holding seussd and seuss-stub}
PY=${SEUSS_PYTHON:-/usr/bin/python3}
PORT=${SEUSS_PORT:-32333}
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP not root"; exit 4; }
[ -c /dev/seuss ] || { echo "1..0 # SKIP /dev/seuss missing (load seuss.ko)"; exit 4; }
[ -x "$BIN/seussd" ] && [ -x "$BIN/seuss-stub" ] || { echo "1..0 # SKIP no binaries in $BIN"; exit 4; }

WORK=$(mktemp -d /tmp/seussd-vm.XXXXXX)
chmod 755 "$WORK"
CRED="vmtest-uuid:vmtest-key"
PID=

write_config() { # $1 = budget MB
    cat >"$WORK/seussd.toml" <<EOT
state_dir = "$WORK/state"
listen = "127.0.0.1:$PORT"
auth = ["$CRED"]
python = "$PY"
stub = "$BIN/seuss-stub"
memory_budget_mb = $1
stub_pool = 2
idle_timeout_s = 600
init_timeout_ms = 120000
EOT
}

start() { # $1 = SEUSSD_TEST_HOOK (empty: none; see seussd/src/testhook.rs)
    SEUSSD_TEST_HOOK=${1:-} RUST_LOG=${RUST_LOG:-info} "$BIN/seussd" --config "$WORK/seussd.toml" --no-dbus >>"$WORK/seussd.log" 2>&1 &
    PID=$!
}

stop() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    PID=
}
trap stop EXIT

write_config 512
start

# All checks are in Python (the VM has python3; no curl needed). It drives seussd through the shell
# functions above: it writes a command line on fd 5 and reads the answer "done ..." on fd 6:
#   restart BUDGET [HOOK [rmindex]]  SIGTERM seussd if it runs, (remove the snapshot index,) start it with
#                                    that budget and SEUSSD_TEST_HOOK; answers "done PID"
#   kill9                            SIGKILL seussd and reap it; answers "done STATUS"
#   reap                             reap seussd (it SIGKILLed itself at a test hook); "done STATUS"
#   stop                             SIGTERM seussd and reap it; "done"
mkfifo "$WORK/to_sh" "$WORK/from_sh"
SECTIONS="${*:-basic crash}" BIN="$BIN" WORK="$WORK" PORT="$PORT" CRED="$CRED" "$PY" - 5>"$WORK/to_sh" 6<"$WORK/from_sh" <<'PYEOF' &
import base64, concurrent.futures, json, os, signal, sys, threading, time, urllib.error, urllib.request

PORT = int(os.environ["PORT"]); WORK = os.environ["WORK"]
AUTH = "Basic " + base64.b64encode(os.environ["CRED"].encode()).decode()
BASE = "http://127.0.0.1:%d/api/v1/namespaces/_" % PORT
ctl_out = os.fdopen(5, "w"); ctl_in = os.fdopen(6)
n = 0; failed = 0

def tap(ok, name, diag=None):
    global n, failed
    n += 1
    if not ok:
        failed += 1
    print("%s %d %s" % ("ok" if ok else "not ok", n, name), flush=True)
    if not ok and diag is not None:
        for line in str(diag).splitlines()[:20]:
            print("# " + line, flush=True)

def http(method, path, body=None, base=BASE, timeout=180):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": AUTH, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")

def seuss(path):
    return http("GET", path, base="http://127.0.0.1:%d/api/v1/seuss" % PORT)[1]

def shell(cmd):
    ctl_out.write(cmd + "\n"); ctl_out.flush()
    words = ctl_in.readline().split()
    assert words and words[0] == "done", (cmd, words)
    return words[1] if len(words) > 1 else None

def restart(budget, hook="", rmindex=False, wait=True):
    """Restarts seussd (SIGTERM first if it runs); returns its pid."""
    pid = int(shell("restart %d %s %s" % (budget, hook or "-", "rmindex" if rmindex else "-")))
    if wait: wait_up()
    return pid

def wait_up():
    for _ in range(600):
        try:
            http("GET", "/actions", timeout=2); return True
        except Exception:
            time.sleep(0.1)
    return False

def put(name, code, main=None, **limits):
    exec_ = {"kind": "python:3", "code": code}
    if main: exec_["main"] = main
    body = {"exec": exec_}
    if limits: body["limits"] = limits
    return http("PUT", "/actions/%s?overwrite=true" % name, body)

def invoke(name, args, path=None):
    q = "?blocking=true" + ("&seussPath=" + path if path else "")
    st, act = http("POST", "/actions/%s%s" % (name, q), args)
    return st, act

def R(act):
    return act.get("response", {}).get("result") if isinstance(act, dict) else None

def S(act):
    return act.get("response", {}).get("status") if isinstance(act, dict) else None

def E(act):
    r = R(act)
    return r.get("error", "") if isinstance(r, dict) else ""

def start_path(act):
    for a in (act.get("annotations", []) if isinstance(act, dict) else []):
        if a["key"] == "startPath": return a["value"]

def basic():
    tap(wait_up(), "seussd answers")
    tap(seuss("/stats").get("module_present") is True, "seussd uses /dev/seuss", seuss("/stats"))

    # The runtime snapshot is built in the background at start.
    rt = None
    for _ in range(1200):
        rt = [s for s in seuss("/snapshots") if s["function"] is None]
        if rt: break
        time.sleep(0.1)
    tap(bool(rt), "runtime snapshot built", open(WORK + "/seussd.log").read()[-3000:])

    CASES = [
        ("echo", "def main(args):\n    return args\n", None, {"a": 1, "b": [True, None, "x"]},
         lambda st, r: st == 200 and r == {"a": 1, "b": [True, None, "x"]}),
        ("unicode", "def main(args):\n    s = args['delimiter'] + ' \u2603 ' + args['delimiter']\n    print(s)\n    return {'winter': s}\n",
         None, {"delimiter": "\u2744"}, lambda st, r: r == {"winter": "\u2744 \u2603 \u2744"}),
        ("raises", "def main(args):\n    raise ValueError('boom')\n", None, {},
         lambda st, r: st == 502 and "boom" in r.get("error", "")),
        ("nondict", "def main(args):\n    return [1, 2]\n", None, {},
         lambda st, r: st == 502 and r == {"error": "The action did not return a dictionary."}),
        ("niam", "def niam(args):\n    return {'greeting': 'hello ' + args['name']}\n", "niam", {"name": "seuss"},
         lambda st, r: r == {"greeting": "hello seuss"}),
        ("owenv", "import os\nAT_INIT = os.environ.get('__OW_ACTION_NAME')\ndef main(args):\n"
                  "    return {'init': AT_INIT, 'name': os.environ['__OW_ACTION_NAME'], 'ns': os.environ['__OW_NAMESPACE'],\n"
                  "            'has_id': len(os.environ['__OW_ACTIVATION_ID']) == 32, 'has_deadline': int(os.environ['__OW_DEADLINE']) > 0}\n",
         None, {}, lambda st, r: r == {"init": "/guest/owenv", "name": "/guest/owenv", "ns": "guest", "has_id": True, "has_deadline": True}),
        ("large", "def main(args):\n    return {'len': len(args['big'])}\n", None, {"big": "x" * 1200000},
         lambda st, r: r == {"len": 1200000}),
        ("heavy", "import json, re, decimal, email, http.client\ndef main(args):\n    return {'d': str(decimal.Decimal('1.1') + decimal.Decimal('2.2'))}\n",
         None, {}, lambda st, r: r == {"d": "3.3"}),
        # A thread started at import (blocked in a queue's condition wait when the function snapshot is
        # taken) must come back in every warm instance; a pool started in main must work on every path.
        ("thread_import", "import threading, queue\nQ = queue.Queue()\nA = queue.Queue()\n"
                          "def work():\n    while True:\n        x = Q.get()\n        A.put((x * 2, threading.get_native_id()))\n"
                          "T = threading.Thread(target=work, daemon=True)\nT.start()\n"
                          "def main(args):\n    Q.put(args['n'])\n    d, tid = A.get(timeout=60)\n"
                          "    import os\n    mine = os.listdir('/proc/self/task')\n"
                          "    return {'doubled': d, 'alive': T.is_alive(), 'threads': threading.active_count(), 'tid_here': str(tid) in mine}\n",
         None, {"n": 21}, lambda st, r: r == {"doubled": 42, "alive": True, "threads": 2, "tid_here": True}),
        ("pool_main", "from concurrent.futures import ThreadPoolExecutor\ndef main(args):\n"
                      "    with ThreadPoolExecutor(4) as ex:\n        return {'squares': list(ex.map(lambda x: x * x, range(args['n'])))}\n",
         None, {"n": 6}, lambda st, r: r == {"squares": [0, 1, 4, 9, 16, 25]}),
    ]
    for name, code, main, args, check in CASES:
        st, _ = put(name, code, main)
        if st != 200:
            tap(False, "%s: create" % name, st); continue
        results = {}
        shapes = {}
        for path in ["runtime", "warm", "hot", "cold"]:
            st, act = invoke(name, args, path)
            res = R(act)
            ok = check(st, res) and start_path(act) == path
            results[path] = json.dumps(res, sort_keys=True)
            tap(ok, "%s via %s path" % (name, path), json.dumps(act)[:1500])
            keys = {a["key"] for a in act.get("annotations", [])} if isinstance(act, dict) else set()
            shapes[path] = ("initTime" in keys, "waitTime" in keys,
                            isinstance(act, dict) and "statusCode" not in act.get("response", {}))
        tap(len(set(results.values())) == 1, "%s: identical results on all paths" % name, results)
        # OpenWhisk's record: initTime only where the code was initialised in a new instance.
        tap(shapes == {"runtime": (True, True, True), "cold": (True, True, True),
                       "warm": (False, True, True), "hot": (False, True, True)},
            "%s: initTime on cold and runtime only, waitTime everywhere, no response.statusCode" % name, shapes)
        if name in ("echo", "heavy", "thread_import"):
            snaps = [s for s in seuss("/snapshots") if s["function"] == name]
            tap(bool(rt) and len(snaps) == 1 and snaps[0]["parent"] == rt[0]["id"], "%s: function snapshot is a child of the runtime snapshot" % name, snaps)
            if snaps:
                print("# %s function snapshot: %d private pages (%.2f MiB)" % (name, snaps[0]["private_pages"], snaps[0]["private_pages"] * 4096 / 2**20))
            # The kernel's thread count of each snapshot: the import's thread is in the function snapshot.
            want = 2 if name == "thread_import" else 1
            tap(len(snaps) == 1 and snaps[0].get("threads") == want and rt[0].get("threads") == 1,
                "%s: function snapshot holds %d thread(s), the runtime snapshot 1" % (name, want), (snaps, rt[:1]))

    # Init failures.
    st, _ = put("noentry", "def main(args):\n    return {}\n", "nope")
    st, act = invoke("noentry", {}, "runtime")
    tap(st == 502 and S(act) == "action developer error", "missing entry point fails the init on the runtime path", act)

    # Uniqueness: 100 warm instances give 100 different random.random() and their own pids.
    put("rand", "import os, random\ndef main(args):\n    return {'r': random.random(), 'pid': os.getpid()}\n")
    invoke("rand", {}, "runtime")
    def warm_rand(_):
        st, act = invoke("rand", {}, "warm")
        return st, R(act) or {}, start_path(act)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(warm_rand, range(100)))
    ok = all(st == 200 and p == "warm" for st, _, p in outs)
    tap(ok, "100 warm deploys succeed", [o for o in outs if o[0] != 200][:3])
    tap(len({o[1].get("r") for o in outs}) == 100, "100 warm instances give 100 different random.random()")
    tap(len({o[1].get("pid") for o in outs}) == 100, "100 warm instances have 100 different pids")

    # Isolation: a global written by one instance is not seen by another.
    put("glob", "COUNT = [0]\ndef main(args):\n    COUNT[0] += 1\n    return {'count': COUNT[0]}\n")
    invoke("glob", {}, "runtime")
    _, a = invoke("glob", {}, "warm")
    _, b = invoke("glob", {}, "warm")
    tap(R(a) == {"count": 1} and R(b) == {"count": 1}, "a second warm instance does not see the first one's global", (a, b))
    _, c = invoke("glob", {}, "hot")
    tap((R(c) or {}).get("count", 0) >= 2, "a hot instance keeps its own global", c)

    # Timeout.
    put("sleepy", "import time\ndef main(args):\n    time.sleep(args['s'])\n    return {}\n", timeout=3000)
    st, act = invoke("sleepy", {"s": 60}, None)
    tap(st == 502 and "timed out" in E(act), "timeout kills the instance", act)
    # A warm child answers its queued run without a ready line: its time limit still holds.
    t0 = time.time()
    st, act = invoke("sleepy", {"s": 60}, "warm")
    tap(st == 502 and "timed out" in E(act) and start_path(act) == "warm" and time.time() - t0 < 30,
        "a warm start that runs past its time limit is timed out", (time.time() - t0, act))

    # Killing an instance mid-invocation gives a clean error activation.
    put("victim", "import os, time\ndef main(args):\n    open('/tmp/seuss-vm-victim.pid', 'w').write(str(os.getpid()))\n    time.sleep(60)\n    return {}\n", timeout=120000)
    def kill_mid_run(path):
        try: os.unlink("/tmp/seuss-vm-victim.pid")
        except FileNotFoundError: pass
        box = {}
        t = threading.Thread(target=lambda: box.update(r=invoke("victim", {}, path))); t.start()
        for _ in range(600):
            if os.path.exists("/tmp/seuss-vm-victim.pid") and open("/tmp/seuss-vm-victim.pid").read(): break
            time.sleep(0.1)
        try: os.kill(int(open("/tmp/seuss-vm-victim.pid").read()), signal.SIGKILL)
        except Exception as e: print("# kill failed: %s" % e)
        t.join(180)
        return box.get("r", (0, {}))
    st, act = kill_mid_run(None)
    tap(st == 502 and "exited unexpectedly" in E(act), "killed instance gives a clean error activation", act)
    st, act = kill_mid_run("warm")
    tap(st == 502 and "exited unexpectedly" in E(act) and start_path(act) == "warm",
        "a warm instance killed mid-run gives a clean error activation", act)

    # Restart: functions persist, snapshots are re-adopted (warm works without a rebuild).
    before = {s["id"] for s in seuss("/snapshots")}
    restart(512)
    after = {s["id"] for s in seuss("/snapshots")}
    tap(before == after and before, "snapshots re-adopted after a restart", (sorted(before), sorted(after)))
    st, act = invoke("echo", {"again": 1}, "warm")
    tap(st == 200 and R(act) == {"again": 1}, "warm start after a restart", act)

    # Budget pressure: a budget barely above the runtime snapshot evicts (also what a restart re-adopts) and
    # still serves every request.
    snaps_before = seuss("/snapshots")
    rt_bytes = sum(s["private_pages"] for s in snaps_before if s["function"] is None) * 4096
    budget_mb = rt_bytes // 2**20 + 3
    restart(budget_mb)
    snaps_after = seuss("/snapshots")
    tap(len(snaps_after) < len(snaps_before), "a restart with a smaller budget evicts (%d -> %d snapshots)" % (len(snaps_before), len(snaps_after)))
    ok = True; over = False
    for i in range(12):
        put("p%d" % i, "X = bytearray(%d)\ndef main(args):\n    return {'i': %d}\n" % (512 * 1024, i))
        st, act = invoke("p%d" % i, {}, None)
        ok = ok and st == 200 and R(act) == {"i": i}
        s = seuss("/stats")
        over = over or s["used_bytes"] > s["budget_bytes"]
    tap(ok, "12 new functions served under a %d MiB budget" % budget_mb)
    tap(not over, "never over budget", seuss("/stats"))
    held = sum(s["private_pages"] for s in seuss("/snapshots")) * 4096
    tap(held <= budget_mb * 2**20, "snapshots held fit the budget (%d bytes)" % held)


# ---- section crash: seussd kill -9ed mid-capture / mid-deploy, then restarted ----------------------------
#
# Snapshots belong to the module, not to the file that captured them: those a killed seussd held stay in
# the kernel until someone releases them. "No leak" after a restart means, once the new seussd has settled
# (no start in flight): every snapshot alive in the kernel is one the new seussd holds (SNAP_LIST equals its
# /snapshots: it re-adopted the indexed ones and released every other one of its instance user, including
# any captured after the last index write), STATS.snapshots and STATS.pages_held are exactly the count and
# the private pages of what it holds (what its budget accounts for), nothing is frozen, STATS.instances is
# the number of instances the new seussd itself deployed, no process of the old seussd (zygote, stubs,
# instances, the runtime snapshot's source) is alive (a dead one reparented to PID 1 may wait there for
# init to reap it: the VM's virtme-ng-init reaps no orphans, systemd does), no stub or launcher runs outside
# the new seussd's process tree, no instance cgroup of the old one is left, and every function answers.
import ctypes, fcntl as _fcntl

class _Stats(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("snapshots", ctypes.c_uint64),
                ("pages_held", ctypes.c_uint64), ("max_pages", ctypes.c_uint64), ("deploys", ctypes.c_uint64),
                ("instances", ctypes.c_uint64), ("frozen", ctypes.c_uint64)]
class _List(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("ids_addr", ctypes.c_uint64),
                ("capacity", ctypes.c_uint32), ("count", ctypes.c_uint32)]
class _Info(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("snap_id", ctypes.c_uint64),
                ("parent_id", ctypes.c_uint64), ("depth", ctypes.c_uint32), ("uid", ctypes.c_uint32),
                ("pages_mapped", ctypes.c_uint64), ("pages_private", ctypes.c_uint64), ("pt_bytes", ctypes.c_uint64),
                ("capture_ns", ctypes.c_uint64), ("children", ctypes.c_uint64), ("deployed", ctypes.c_uint64),
                ("pages_unchanged", ctypes.c_uint64), ("threads", ctypes.c_uint32), ("reserved", ctypes.c_uint32)]
class _Release(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("snap_id", ctypes.c_uint64)]

def _ioc(direction, nr, st):  # the kernel's _IOC: dir 1 = write, 2 = read
    return (direction << 30) | (ctypes.sizeof(st) << 16) | (0xE5 << 8) | nr

class Kernel:
    """/dev/seuss from the test's side (root: sees every snapshot)."""
    def __init__(self):
        self.fd = os.open("/dev/seuss", os.O_RDWR | os.O_CLOEXEC)
    def _call(self, direction, nr, st):
        st.size = ctypes.sizeof(st)
        _fcntl.ioctl(self.fd, _ioc(direction, nr, type(st)), st, True)
        return st
    def stats(self):
        s = self._call(3, 0x0a, _Stats())
        return {k: getattr(s, k) for k in ("snapshots", "pages_held", "instances", "frozen")}
    def snaps(self):
        ids = (ctypes.c_uint64 * 4096)()
        l = _List(); l.ids_addr = ctypes.addressof(ids); l.capacity = 4096
        self._call(3, 0x07, l)
        return [ids[i] for i in range(min(l.count, 4096))]
    def info(self, sid):
        i = _Info(); i.snap_id = sid
        return self._call(3, 0x06, i)
    def release(self, sid):
        r = _Release(); r.snap_id = sid
        self._call(1, 0x08, r)

def proc_table():
    """pid -> (ppid, state, starttime, cmdline) of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit(): continue
        try:
            stat = open("/proc/%s/stat" % d).read()
            rest = stat[stat.rindex(")") + 2:].split()
            cmd = open("/proc/%s/cmdline" % d, "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(d)] = (int(rest[1]), rest[0], int(rest[19]), cmd)
    return out

def descendants(pid, table):
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for c, (pp, _, _, _) in table.items():
            if pp == p and c not in found:
                found.add(c); todo.append(c)
    return found

def alive_old(old, table):
    """The processes of `old` (pid -> start time) still in the process table (same pid, same start)."""
    return [p for p, st in old.items() if p in table and table[p][2] == st]

def orphan_zombie(entry):
    """A dead process reparented to PID 1 and not reaped yet: it holds no memory, files or snapshot
    references any more; reaping it is init's job (systemd does; the VM's virtme-ng-init does not)."""
    return entry[1] == "Z" and entry[0] == 1

def ours(cmd):
    """A process seussd starts: a stub (or the zygote), or a launcher (cold, runtime source, deployed)."""
    return (os.environ["BIN"] + "/seuss-stub") in cmd or (WORK + "/state/runtime/") in cmd

def log_size():
    return os.path.getsize(WORK + "/seussd.log")

def log_since(off):
    with open(WORK + "/seussd.log", errors="replace") as f:
        f.seek(off); return f.read()

def wait_for(cond, timeout, step=0.1):
    """Polls cond() until it returns a true value or timeout seconds pass; returns its last value."""
    end = time.time() + timeout
    while True:
        v = cond()
        if v or time.time() > end: return v
        time.sleep(step)

CG_ROOT = "/sys/fs/cgroup/seuss"

def leftover_cgroups():
    """Instance cgroups with no process in them (a new seussd's own are populated)."""
    try: names = os.listdir(CG_ROOT)
    except OSError: return []
    out = []
    for n in names:
        p = os.path.join(CG_ROOT, n)
        if os.path.isdir(p):
            try:
                if open(p + "/cgroup.procs").read().strip() == "": out.append(n)
            except OSError: pass
    return out

def crash():
    K = Kernel()
    rounds = int(os.environ.get("SEUSS_CRASH_ROUNDS", "3"))
    pid = restart(512)
    tap(wait_for(lambda: [s for s in seuss("/snapshots") if s["function"] is None], 600), "crash: runtime snapshot ready")
    fns = {}  # name -> args; every kx function returns {"fn": name, "args": args}
    def add_fn(name, imports=""):
        code = "%sdef main(args):\n    return {'fn': %r, 'args': args}\n" % (imports, name)
        st, _ = put(name, code)
        fns[name] = {"who": name, "n": len(fns)}
        return st == 200
    tap(add_fn("kx_echo") and add_fn("kx_heavy", "import json, re, decimal, email, http.client\n"), "crash: functions created")
    for name in list(fns):
        invoke(name, fns[name])  # runtime path: captures their function snapshots
    hits = {"inside": 0, "missed": 0}

    def serve_all(label):
        bad = []
        for name, args in sorted(fns.items()):
            st, act = invoke(name, args)
            if st != 200 or R(act) != {"fn": name, "args": args}:
                bad.append((name, st, R(act), start_path(act)))
        st, act = invoke("kx_echo", {"warm": 1}, "warm")
        if st != 200 or R(act) != {"fn": "kx_echo", "args": {"warm": 1}}:
            bad.append(("kx_echo warm", st, R(act)))
        tap(not bad, "%s: every function (%d) served after the restart" % (label, len(fns)), bad)

    def settled(label, pid, old):
        """Waits for the steady state described above; one TAP line per property."""
        t0 = time.time()
        wait_for(lambda: [s for s in seuss("/snapshots") if s["function"] is None], 600)
        last = {}
        def check():
            table = proc_table()
            tree = descendants(pid, table)
            zyg = [p for p in tree if table[p][0] == pid and "--zygote" in table[p][3]]
            deployed = [p for p in tree if zyg and table[p][0] == zyg[0] and (WORK + "/state/runtime/") in table[p][3]]
            held = seuss("/snapshots"); ks = K.stats(); kl = sorted(K.snaps())
            last.update(
                snaps=(kl == sorted(s["id"] for s in held) and ks["snapshots"] == len(held)
                       and ks["pages_held"] == sum(s["private_pages"] for s in held),
                       {"kernel": kl, "kernel_stats": ks, "seussd": [(s["id"], s["function"], s["private_pages"]) for s in held]}),
                frozen=(ks["frozen"] == 0, ks),
                instances=(ks["instances"] == len(deployed), {"kernel": ks["instances"], "deployed": deployed}),
                old=(not [p for p in alive_old(old, table) if not orphan_zombie(table[p])],
                     [(p, table[p]) for p in alive_old(old, table)]),
                stray=(not [p for p, v in table.items() if ours(v[3]) and p not in tree],
                       [(p, v) for p, v in table.items() if ours(v[3]) and p not in tree]),
                cgroups=(not leftover_cgroups(), leftover_cgroups()))
            return all(v[0] for v in last.values())
        wait_for(check, 120, 0.2)
        tap(last["snaps"][0], "%s: the kernel holds exactly the snapshots the new seussd holds (none leaked)" % label, last["snaps"][1])
        tap(last["frozen"][0], "%s: nothing left frozen" % label, last["frozen"][1])
        tap(last["instances"][0], "%s: STATS.instances = the new seussd's deployed instances" % label, last["instances"][1])
        tap(last["old"][0], "%s: no process of the killed seussd is alive (dead ones unreaped by init aside)" % label, last["old"][1])
        tap(last["stray"][0], "%s: no stub or launcher outside the new seussd's tree" % label, last["stray"][1])
        tap(last["cgroups"][0], "%s: no instance cgroup left behind" % label, last["cgroups"][1])
        print("# %s: settled in %.1f s, kernel %s" % (label, time.time() - t0, K.stats()), flush=True)

    def case(label, hook, subject, kind, trigger=None, rmindex=False):
        off = log_size()
        pid = restart(512, "%s@%s" % (hook, subject), rmindex, wait=False)
        if trigger is not None:
            # seussd up with the runtime snapshot a function capture needs (warm finds its own, adopted).
            wait_up()
            wait_for(lambda: [s for s in seuss("/snapshots") if s["function"] is None], 600)
        table = proc_table()
        old = {p: table[p][2] for p in descendants(pid, table) | {pid} if p in table}
        th = None
        if trigger is not None:
            def run():
                try: trigger()
                except Exception: pass  # the connection dies with seussd
            th = threading.Thread(target=run, daemon=True); th.start()
        if kind == "stop":
            reached = wait_for(lambda: ("test hook %s reached" % hook) in log_since(off), 300)
            table = proc_table()
            old.update({p: table[p][2] for p in descendants(pid, table) if p in table})
            status = shell("kill9")
        else:
            # seussd SIGKILLs itself: it turns into a zombie of the shell, which then reaps it.
            def dead():
                try: return open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z"
                except OSError: return True
            reached = wait_for(dead, 300)
            status = shell("reap" if reached else "kill9")
        tap(reached and status == "137", "%s: seussd killed at hook %s@%s (status %s)" % (label, hook, subject, status),
            log_since(off)[-3000:])
        text = log_since(off)
        for k, needle in (("inside", "SIGKILL inside the ioctl"), ("missed", "SIGKILL after the ioctl returned")):
            if needle in text:
                hits[k] += 1; print("# %s: %s" % (label, needle), flush=True)
        if th is not None: th.join(60)
        newpid = restart(512)
        tap(wait_up(), "%s: seussd restarted" % label)
        settled(label, newpid, old)
        serve_all(label)
        settled(label + " (after serving)", newpid, {})

    for r in range(rounds):
        for hook, kind in (("capture-before", "stop"), ("capture-during", "kill"), ("capture-after", "stop")):
            name = "kx_c%d_%s" % (r, hook.split("-")[1])
            add_fn(name)
            case("round %d, %s of a function" % (r, hook), hook, name, kind,
                 trigger=lambda name=name: invoke(name, fns[name]))
        for hook, kind in (("deploy-sent", "stop"), ("deploy-during", "kill")):
            case("round %d, %s of a warm start" % (r, hook), hook, "kx_echo", kind,
                 trigger=lambda: invoke("kx_echo", {"warm": 1}, "warm"))
        # The runtime snapshot's capture at start, with the index gone (as on a first start, or one killed
        # before its first index write): every snapshot left in the kernel is unknown to the new seussd.
        hook, kind = (("capture-before", "stop"), ("capture-during", "kill"), ("capture-after", "stop"))[r % 3]
        case("round %d, %s of the runtime snapshot, no index" % (r, hook), hook, "runtime", kind, rmindex=True)
    tap(rounds == 0 or hits["inside"] > 0, "capture-during hit the CAPTURE ioctl itself in some round", hits)

    # With seussd stopped and every snapshot released, the module is back to its baseline.
    shell("stop")
    held = K.snaps()
    for sid in sorted(held, key=lambda i: -K.info(i).depth):
        K.release(sid)
    final = wait_for(lambda: (lambda s: s if all(v == 0 for v in s.values()) else None)(K.stats()), 60)
    tap(final is not None, "crash: STATS back to 0 once seussd is stopped and its snapshots released", K.stats())
    restart(512)

for section in os.environ["SECTIONS"].split():
    try:
        {"basic": basic, "crash": crash}[section]()
    except Exception:
        import traceback
        tap(False, "unexpected exception in section %s" % section, traceback.format_exc())

print("1..%d" % n, flush=True)
ctl_out.write("quit %d\n" % failed); ctl_out.flush()
PYEOF
PYPID=$!

exec 7<"$WORK/to_sh" 8>"$WORK/from_sh"
RC=1
while read -r cmd arg hook rmindex <&7; do
    case "$cmd" in
        restart)
            stop; write_config "$arg"
            [ "$rmindex" = rmindex ] && rm -f "$WORK/state/snapshots.json"
            [ "$hook" = - ] && hook=
            start "$hook"; echo "done $PID" >&8 ;;
        kill9) kill -KILL "$PID"; { wait "$PID"; } 2>/dev/null; st=$?; PID=; echo "done $st" >&8 ;;
        reap) { wait "$PID"; } 2>/dev/null; st=$?; PID=; echo "done $st" >&8 ;;
        stop) stop; echo done >&8 ;;
        quit) [ "$arg" = 0 ] && RC=0; break ;;
    esac
done
wait "$PYPID"
stop
if [ "$RC" = 0 ]; then rm -rf "$WORK"; else echo "# logs and state kept in $WORK"; fi
exit "$RC"
