# seuss selftest driver: a python3 process frozen at a doorbell after its imports.
# Prints the doorbell and cookie addresses, waits for "go", stores to the doorbell (the write watchpoint
# freezes it there), then -- in every deployed child -- reseeds `random` from the per-deploy cookie and
# answers one JSON line from stdin. With --cold it skips the doorbell (the cold-start baseline).
import ctypes, json, os, random, sys
import re, collections, decimal  # the "imports" a snapshot saves

cold = "--cold" in sys.argv
bell = ctypes.c_uint64(0)
cookie = ctypes.c_uint64(0)
if not cold:
    print(f"doorbell={ctypes.addressof(bell):#x}", flush=True)
    print(f"cookie={ctypes.addressof(cookie):#x}", flush=True)
    print("ready", flush=True)
    sys.stdin.readline()
    ctypes.cast(ctypes.addressof(bell), ctypes.POINTER(ctypes.c_uint64))[0] = 1
    random.seed(cookie.value)
req = json.loads(sys.stdin.readline())
print(json.dumps({"sum": req["a"] + req["b"], "pid": os.getpid(), "rand": random.random()}), flush=True)
sys.stdin.readline()  # linger until stdin closes, so the host can measure this instance's private pages
