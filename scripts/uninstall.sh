#!/usr/bin/env bash
#! Removes what scripts/install.sh installed.
#!
#! usage: scripts/uninstall.sh [--purge]
#!   --purge    also remove /etc/seuss, /var/lib/seuss, the seuss-fn user and the seuss group
#!   DESTDIR=   remove from this staging root instead of / (no systemctl, no users)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/install-manifest.sh
source "$root/scripts/install-manifest.sh"

purge=0
[[ "${1:-}" == "--purge" ]] && purge=1
dest="${DESTDIR:-}"
[[ -z "$dest" && $EUID -ne 0 ]] && { echo "uninstall: run as root" >&2; exit 1; }

if [[ -z "$dest" && -d /run/systemd/system ]]; then
    systemctl disable --now seussd.service 2>/dev/null || true
fi
while read -r _ dst _; do
    [[ -n "$dst" ]] && rm -f "$dest$dst"
done < <(seuss_manifest)
for f in "${SEUSS_GENERATED[@]}"; do rm -f "$dest$f"; done
rmdir "$dest/usr/share/doc/seuss" 2>/dev/null || true
if ((purge)); then
    rm -rf "$dest/etc/seuss" "$dest/var/lib/seuss"
    if [[ -z "$dest" ]]; then
        if getent passwd seuss-fn >/dev/null; then userdel seuss-fn; fi
        if getent group seuss >/dev/null; then groupdel seuss; fi
    fi
fi
if [[ -z "$dest" ]]; then
    if [[ -d /run/systemd/system ]]; then systemctl daemon-reload; fi
    if command -v busctl >/dev/null && [[ -S /run/dbus/system_bus_socket ]]; then
        busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null 2>&1 || true
    fi
fi
echo "uninstall: done"
