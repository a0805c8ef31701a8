#!/usr/bin/env bash
#! The main job: builds everything (kernel cached), boots the patched kernel in a VM, loads seuss.ko,
#! starts seussd and runs the demo function (demo/hello.py) through the cold, runtime, warm and hot paths.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SEUSS_ROOT"
"$SEUSS_ROOT/scripts/deps.sh"
"$SEUSS_ROOT/scripts/kernel.sh" >/dev/null
"$SEUSS_ROOT/scripts/module.sh" >/dev/null
cargo build --release --workspace --bins 2>&1 | tail -1 >&2
exec "$SEUSS_ROOT/scripts/vm.sh" --timeout 1800 -- "bash $SEUSS_ROOT/demo/guest.sh $SEUSS_ROOT"
