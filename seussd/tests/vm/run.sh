#!/bin/bash
# seussd end-to-end test, run inside the VM as root with seuss.ko loaded.
#
#   SEUSS_BIN=/path/to/target/debug seussd/tests/vm/run.sh
#
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

start() {
    RUST_LOG=${RUST_LOG:-info} "$BIN/seussd" --config "$WORK/seussd.toml" --no-dbus >>"$WORK/seussd.log" 2>&1 &
    PID=$!
}

stop() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    PID=
}
trap stop EXIT

write_config 512
start

# All checks are in Python (the VM has python3; no curl needed). It restarts seussd through the shell
# functions above via the RESTART_CMD environment protocol: it prints a line "#RESTART <budget>" on fd 5
# and waits for "done" on fd 6.
mkfifo "$WORK/to_sh" "$WORK/from_sh"
WORK="$WORK" PORT="$PORT" CRED="$CRED" "$PY" - 5>"$WORK/to_sh" 6<"$WORK/from_sh" <<'PYEOF' &
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

def restart(budget):
    ctl_out.write("restart %d\n" % budget); ctl_out.flush()
    assert ctl_in.readline().strip() == "done"
    wait_up()

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

def tests():
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
    ]
    for name, code, main, args, check in CASES:
        st, _ = put(name, code, main)
        if st != 200:
            tap(False, "%s: create" % name, st); continue
        results = {}
        for path in ["runtime", "warm", "hot", "cold"]:
            st, act = invoke(name, args, path)
            res = R(act)
            ok = check(st, res) and start_path(act) == path
            results[path] = json.dumps(res, sort_keys=True)
            tap(ok, "%s via %s path" % (name, path), json.dumps(act)[:1500])
        tap(len(set(results.values())) == 1, "%s: identical results on all paths" % name, results)
        if name in ("echo", "heavy"):
            snaps = [s for s in seuss("/snapshots") if s["function"] == name]
            tap(bool(rt) and len(snaps) == 1 and snaps[0]["parent"] == rt[0]["id"], "%s: function snapshot is a child of the runtime snapshot" % name, snaps)
            if snaps:
                print("# %s function snapshot: %d private pages (%.2f MiB)" % (name, snaps[0]["private_pages"], snaps[0]["private_pages"] * 4096 / 2**20))

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


try:
    tests()
except Exception:
    import traceback
    tap(False, "unexpected exception", traceback.format_exc())

print("1..%d" % n, flush=True)
ctl_out.write("quit %d\n" % failed); ctl_out.flush()
PYEOF
PYPID=$!

exec 7<"$WORK/to_sh" 8>"$WORK/from_sh"
RC=1
while read -r cmd arg <&7; do
    case "$cmd" in
        restart) stop; write_config "$arg"; start; echo done >&8 ;;
        quit) [ "$arg" = 0 ] && RC=0; break ;;
    esac
done
wait "$PYPID"
stop
if [ "$RC" = 0 ]; then rm -rf "$WORK"; else echo "# logs and state kept in $WORK"; fi
exit "$RC"
