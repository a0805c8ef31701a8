#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# kselftest wrapper: runs every seuss case (KTAP) with the module next to this script.
# Exit codes follow kselftest: 0 pass, 1 fail, 4 skip.
dir="$(dirname "$(readlink -f "$0")")"
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP must run as root"; exit 4; }
[ -f "$dir/seuss.ko" ] || { echo "1..0 # SKIP seuss.ko not found next to $0"; exit 4; }
SEUSS_KO="$dir/seuss.ko" exec "$dir/seuss_test" all
