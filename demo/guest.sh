#!/bin/bash
# Runs inside the VM (as root, patched kernel): load seuss.ko, start seussd, create the demo function
# through the OpenWhisk API, invoke it on every start path and show what happened.
set -eu
ROOT=$1; BIN=$ROOT/target/release
WORK=$(mktemp -d /tmp/seuss-demo.XXXXXX); chmod 755 "$WORK"
CRED="demo-uuid:demo-key"; PORT=3233
API="http://127.0.0.1:$PORT/api/v1"
insmod "$ROOT/target/seuss.ko"
echo "--- seuss.ko loaded: $(ls -l /dev/seuss)"
cat > "$WORK/seussd.toml" <<EOT
state_dir = "$WORK/state"
listen = "127.0.0.1:$PORT"
auth = ["$CRED"]
python = "/usr/bin/python3"
stub = "$BIN/seuss-stub"
memory_budget_mb = 512
init_timeout_ms = 120000
EOT
"$BIN/seussd" --config "$WORK/seussd.toml" --no-dbus > "$WORK/seussd.log" 2>&1 &
SEUSSD=$!
trap 'kill $SEUSSD 2>/dev/null; wait $SEUSSD 2>/dev/null' EXIT
for _ in $(seq 300); do curl -s -u "$CRED" "$API/seuss/stats" >/dev/null && break; sleep 0.2; done
echo "--- seussd up: $(curl -s -u "$CRED" "$API/seuss/stats")"
code=$(python3 -c 'import json,sys; print(json.dumps({"exec":{"kind":"python:3","code":open(sys.argv[1]).read()}}))' "$ROOT/demo/hello.py")
curl -s -u "$CRED" -X PUT -H 'Content-Type: application/json' -d "$code" "$API/namespaces/_/actions/hello?overwrite=true" >/dev/null
echo "--- created action 'hello'"
for path in cold runtime warm hot; do
    t0=$(date +%s%N)
    out=$(curl -s -u "$CRED" -X POST -H 'Content-Type: application/json' -d '{"name":"seuss"}' \
        "$API/namespaces/_/actions/hello?blocking=true&seussPath=$path")
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    python3 - "$out" "$path" "$ms" <<'PY'
import json, sys
a = json.loads(sys.argv[1])
ann = {x["key"]: x["value"] for x in a.get("annotations", [])}
# What seussd measured (the activation record) first; curl's wall clock after it, which in this TCG VM is
# mostly curl and this script starting, not seuss.
rec = f"duration {a.get('duration')} ms"
if "waitTime" in ann:
    rec += f", waitTime {ann['waitTime']} ms"
if "initTime" in ann:
    rec += f", initTime {ann['initTime']} ms"
print(f"--- invoke via {sys.argv[2]:8s}: {a['response']['result']}  startPath={ann.get('startPath')}  record: {rec}"
      f"  (curl end-to-end {sys.argv[3]} ms, TCG VM)")
PY
done
echo "--- snapshots: $(curl -s -u "$CRED" "$API/seuss/snapshots")"
echo "--- stats: $(curl -s -u "$CRED" "$API/seuss/stats")"
