#!/usr/bin/env bash
#! Installs seussd, seussctl and their systemd/D-Bus/udev files.
#!
#! usage: scripts/install.sh [BINDIR]
#!   BINDIR     directory holding seussd, seuss-stub, seussctl (default: target/release)
#!   DESTDIR=   stage into this root instead of / (no users, no reloads; for packaging and tests)
#!   SEUSS_KO=  also install this seuss.ko under /lib/modules/$(uname -r)/extra and run depmod
#!
#! Keeps an existing /etc/seuss/seussd.toml; a new one is made from seussd.example.toml with the
#! instance user seuss-fn and a freshly generated API key. Runs systemd-sysusers, systemd-tmpfiles,
#! systemctl daemon-reload, udevadm and a D-Bus reload when they are available.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/install-manifest.sh
source "$root/scripts/install-manifest.sh"

bindir="${1:-$root/target/release}"
dest="${DESTDIR:-}"
say() { echo "install: $*"; }
die() { echo "install: $*" >&2; exit 1; }

[[ -z "$dest" && $EUID -ne 0 ]] && die "run as root (or set DESTDIR to stage)"
for b in seussd seuss-stub seussctl; do
    [[ -x "$bindir/$b" ]] || die "$bindir/$b missing: cargo build --release -p seussd -p seussctl, or pass BINDIR"
done

while read -r src dst mode; do
    [[ -n "$src" ]] || continue
    case "$src" in BIN/*) src="$bindir/${src#BIN/}" ;; *) src="$root/$src" ;; esac
    install -D -m "$mode" "$src" "$dest$dst"
done < <(seuss_manifest)

ctl="$bindir/seussctl"
install -d "$dest/usr/share/bash-completion/completions" "$dest/usr/share/zsh/vendor-completions" \
    "$dest/usr/share/fish/vendor_completions.d" "$dest/usr/share/man/man1"
"$ctl" completions bash >"$dest/usr/share/bash-completion/completions/seussctl"
"$ctl" completions zsh >"$dest/usr/share/zsh/vendor-completions/_seussctl"
"$ctl" completions fish >"$dest/usr/share/fish/vendor_completions.d/seussctl.fish"
"$ctl" man | gzip -9n >"$dest/usr/share/man/man1/seussctl.1.gz"

conf="$dest/etc/seuss/seussd.toml"
if [[ -e "$conf" ]]; then
    say "keeping $conf"
else
    install -d -m 0755 "$dest/etc/seuss"
    key="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
    uuid="$(cat /proc/sys/kernel/random/uuid)"
    sed -e 's/^instance_user = .*/instance_user = "seuss-fn"/' \
        -e "s/^auth = .*/auth = [\"$uuid:$key\"]/" \
        "$root/seussd/seussd.example.toml" >"$conf"
    chmod 0600 "$conf"
    say "wrote $conf (API credential $uuid:<key>, see the file)"
fi

if [[ -n "${SEUSS_KO:-}" ]]; then
    kver="$(uname -r)"
    install -D -m 0644 "$SEUSS_KO" "$dest/lib/modules/$kver/extra/seuss.ko"
    if [[ -z "$dest" ]] && command -v depmod >/dev/null; then depmod -a "$kver"; fi
fi

if [[ -n "$dest" ]]; then
    say "staged into $dest"
    exit 0
fi

have() { command -v "$1" >/dev/null 2>&1; }
if have systemd-sysusers; then
    systemd-sysusers /usr/lib/sysusers.d/seuss.conf
else
    getent group seuss >/dev/null || groupadd --system seuss
    getent passwd seuss-fn >/dev/null ||
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin seuss-fn
fi
if have systemd-tmpfiles; then
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/seuss.conf
else
    install -d -m 0711 /var/lib/seuss
fi
if have udevadm && [[ -d /run/udev ]]; then
    udevadm control --reload || true
    udevadm trigger --subsystem-match=misc --sysname-match=seuss || true
fi
if [[ -e /dev/seuss ]]; then chown root:root /dev/seuss && chmod 0600 /dev/seuss; fi
if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
fi
# dbus-daemon watches system.d, but an explicit reload makes the policy effective before we return.
if have busctl && [[ -S /run/dbus/system_bus_socket ]]; then
    busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null 2>&1 || true
fi
say "done: systemctl enable --now seussd; seussctl status"
