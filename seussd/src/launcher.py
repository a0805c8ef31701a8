"""seuss launcher: runs one function instance (a "UC") and speaks the OpenWhisk ActionLoop line protocol.

Descriptors (set up by seussd or by seuss-stub before a deploy):
  0  stdin   one JSON object per line: {"init": {...}} once, then run messages
             {"value": {...}, "namespace": ..., "action_name": ..., "activation_id": ..., "deadline": ...}
  1  stdout  function output; "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX" after each init and activation
  2  stderr  same
  3  result  exactly one JSON line per init ({"ok": true} or {"error": ...}) and per activation (the result)
  4  control a socket to seussd: {"doorbell": ...} / {"ready": pid} lines out, "armed"/"skip" lines in
             (a warm child with its run message already queued sends no ready line: its result says it)

Snapshot points ("doorbells"): the launcher prints the addresses of two fresh 8-byte ctypes cells on fd 4,
waits for seussd to arm a write watchpoint on the first one, then stores to it; the kernel parks the task and
seussd captures it. Execution continues right after the store, either in this process (resumed) or in a
copy-on-write child deployed from the snapshot, which finds its per-deploy cookie in the second cell.
"""

import ctypes
import gc
import json
import os
import random
import sys
import threading
import traceback

# Modules nearly every function needs: importing them here puts them in the runtime snapshot.
import base64  # noqa: F401
import collections  # noqa: F401
import datetime  # noqa: F401
import math  # noqa: F401
import re  # noqa: F401
import select
import time  # noqa: F401

MARK = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
# One read of a pipe returns at most its capacity (64 KiB). A larger request only costs: os.read allocates
# the full size first, and above malloc's mmap threshold that is an mmap, mremap and munmap per message.
READ_SIZE = 64 << 10
RESULT_FD = 3
CONTROL_FD = 4
# Offset of the cached kernel tid in glibc's struct pthread on x86_64 (checked against gettid before use).
GLIBC_TID_OFFSET = 0x2D0


class LineReader:
    """Reads lines from a raw descriptor; keeps no data beyond the line it returns if none was sent."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = bytearray()
        self.scanned = 0

    def readline(self):
        while True:
            i = self.buf.find(b"\n", self.scanned)
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                self.scanned = 0
                return line
            self.scanned = len(self.buf)
            chunk = os.read(self.fd, READ_SIZE)
            if not chunk:
                if self.buf:
                    line = bytes(self.buf)
                    self.buf.clear()
                    self.scanned = 0
                    return line
                return None
            self.buf += chunk


stdin = LineReader(0)
control = LineReader(CONTROL_FD)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# json.dumps(obj, ensure_ascii=False) builds an encoder per call; results go through this one.
ENCODER = json.JSONEncoder(ensure_ascii=False)


def send_result(obj):
    write_all(RESULT_FD, (ENCODER.encode(obj) + "\n").encode("utf-8", "surrogatepass"))


def send_control(obj):
    write_all(CONTROL_FD, (json.dumps(obj) + "\n").encode())


def end_markers():
    sys.stdout.write(MARK + "\n")
    sys.stderr.write(MARK + "\n")
    sys.stdout.flush()
    sys.stderr.flush()


_libc = ctypes.CDLL(None, use_errno=True)
_libc.pthread_self.restype = ctypes.c_void_p


def tid_address():
    """Address of glibc's cached tid, so the kernel can refresh it after a deploy; 0 if not found."""
    try:
        addr = _libc.pthread_self() + GLIBC_TID_OFFSET
        if ctypes.c_int32.from_address(addr).value == threading.get_native_id():
            return addr
    except Exception:
        pass
    return 0


_rung = []


def doorbell(kind):
    """Rings a snapshot doorbell; returns the deploy cookie (0 when resumed in place or not armed)."""
    bell = ctypes.c_uint64(0)
    cookie = ctypes.c_uint64(0)
    sys.stdout.flush()
    sys.stderr.flush()
    gc.collect()
    gc.freeze()
    send_control({
        "doorbell": kind,
        "pid": os.getpid(),
        "bell": ctypes.addressof(bell),
        "cookie": ctypes.addressof(cookie),
        "tid": tid_address(),
    })
    if control.readline() == b"armed":
        bell.value = 1  # the write watchpoint fires here; a deployed child continues right after
    # Keep the cells alive (and the bell at 1) after the ring, so nothing reuses that memory while seussd
    # is still looking at it.
    _rung.append((bell, cookie))
    return cookie.value


def input_pending():
    """Whether a message is waiting on stdin (buffered here or readable now)."""
    return bool(stdin.buf) or bool(select.select([stdin.fd], [], [], 0)[0])


def after_doorbell(cookie, announce=True):
    """Makes a freshly deployed instance unique, then (with `announce`) tells seussd it is ready, with
    CLOCK_MONOTONIC stamps of the resume and of the ready line, which seussd logs as deploy timing."""
    resumed = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    if cookie:
        random.seed(cookie)
        try:
            threading.main_thread()._set_native_id()
        except Exception:
            pass
        # Descriptors above the protocol ones belong to the stub: drop them. (Its /dev/seuss is not among
        # them any more: a successful deploy closes every /dev/seuss descriptor of the deployed child.)
        os.closerange(CONTROL_FD + 1, 65536)
    if announce:
        send_control({"ready": os.getpid(), "cookie": cookie, "resumed_ns": resumed,
                      "ready_ns": time.clock_gettime_ns(time.CLOCK_MONOTONIC)})


class Action:
    def __init__(self):
        self.main = None


action = Action()


def load_code(init):
    code = init.get("code")
    name = init.get("main") or "main"
    if init.get("binary"):
        import io
        import tempfile
        import zipfile

        where = tempfile.mkdtemp(prefix="action-")
        zipfile.ZipFile(io.BytesIO(base64.b64decode(code))).extractall(where)
        sys.path.insert(0, where)
        filename = os.path.join(where, "__main__.py")
        with open(filename, encoding="utf-8") as f:
            code = f.read()
    else:
        filename = "__main__.py"
    namespace = {"__name__": "__main__", "__file__": filename, "__builtins__": __builtins__}
    exec(compile(code, filename, "exec"), namespace)
    entry = namespace.get(name)
    if not callable(entry):
        raise LookupError("Action entrypoint '%s' is not defined or not callable." % name)
    return entry


def handle_init(init):
    if action.main is not None:
        send_result({"error": "Cannot initialize the action more than once."})
        return end_markers()
    if not isinstance(init, dict) or not init.get("code"):
        send_result({"error": "Missing main/no code to execute."})
        return end_markers()
    for key, value in (init.get("env") or {}).items():
        os.environ[str(key)] = value if isinstance(value, str) else json.dumps(value)
    try:
        action.main = load_code(init)
    except Exception as ex:
        traceback.print_exc()
        send_result({"error": "Initialization has failed due to: %s" % ex})
        return end_markers()
    if init.get("snapshot"):
        cookie = doorbell("function")
        # A child deployed from the function snapshot (a warm start) whose run message is already queued
        # answers it without a ready line first: the answer says the deploy worked, and on one CPU the
        # ready line would wake seussd before the run instead of after it.
        after_doorbell(cookie, announce=not (cookie and input_pending()))
        if cookie:
            # seussd saw this init succeed when it captured the snapshot: no init reply; the run is next.
            return
    send_result({"ok": True})
    end_markers()


def handle_run(msg):
    if action.main is None:
        send_result({"error": "The action has not been initialized."})
        return end_markers()
    for key, value in msg.items():
        if key != "value":
            os.environ["__OW_" + key.upper()] = value if isinstance(value, str) else json.dumps(value)
    try:
        result = action.main(msg.get("value", {}))
        line = ENCODER.encode(result)
    except Exception as ex:
        traceback.print_exc()
        line = ENCODER.encode({"error": "An error has occurred: %s" % ex})
    # Markers first: seussd is woken by the result line and then finds the logs complete, instead of
    # waking for the result and again for each marker.
    end_markers()
    write_all(RESULT_FD, (line + "\n").encode("utf-8", "surrogatepass"))


RUN_KEYS = ("namespace", "action_name", "action_version", "activation_id", "transaction_id", "deadline")


def warm_up():
    """Anticipatory optimizations: run a throw-away init and activation through the same code as real ones
    (message decoding, environment, compile and exec, result encoding), so what they initialise lazily is
    in the runtime snapshot instead of in every function's diff; then settle the heap."""
    probe = {"value": {"probe": [1, "x", None]}, "activation_id": "0"}
    json.loads(json.dumps(probe, ensure_ascii=False))
    re.compile(r"^\s*$").match("")
    input_pending()
    "probe".encode("utf-8").decode("utf-8")
    before = set(os.environ)
    init = json.loads(json.dumps({
        "code": "def main(args):\n    return {'probe': args}\n",
        "main": "main",
        "env": {"__OW_API_HOST": "-", "__OW_NAMESPACE": "-", "__OW_ACTION_NAME": "-", "__OW_ACTION_VERSION": "-"},
    }))
    for key, value in init["env"].items():
        os.environ[key] = value
    entry = load_code(init)
    for key in RUN_KEYS:
        os.environ["__OW_" + key.upper()] = "0"
    line = ENCODER.encode(entry(probe["value"]))
    (line + "\n").encode("utf-8", "surrogatepass")
    for key in set(os.environ) - before:
        del os.environ[key]
    del entry, init, line
    gc.collect()
    gc.freeze()


def loop():
    while True:
        line = stdin.readline()
        if line is None:
            return
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("message is not an object")
        except Exception as ex:
            send_result({"error": "Malformed message: %s" % ex})
            end_markers()
            continue
        if "init" in msg:
            handle_init(msg["init"])
        else:
            handle_run(msg)


def main():
    sys.stdout.reconfigure(encoding="utf-8", errors="backslashreplace")
    sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace")
    warm_up()
    cookie = doorbell("runtime") if os.environ.get("SEUSS_SNAPSHOT") == "1" else 0
    after_doorbell(cookie)
    loop()


if __name__ == "__main__":
    main()
