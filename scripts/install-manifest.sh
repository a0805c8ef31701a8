# shellcheck shell=bash
# The files scripts/install.sh installs and scripts/uninstall.sh removes: "source destination mode" lines.
# Sources are relative to the repository root, BIN/ to the directory of the built binaries.
seuss_manifest() {
    cat <<'LIST'
BIN/seussd                          /usr/bin/seussd                                      0755
BIN/seuss-stub                      /usr/bin/seuss-stub                                  0755
BIN/seussctl                        /usr/bin/seussctl                                    0755
data/seussd.service                 /usr/lib/systemd/system/seussd.service               0644
data/org.seuss.Manager1.conf        /usr/share/dbus-1/system.d/org.seuss.Manager1.conf   0644
data/org.seuss.Manager1.service     /usr/share/dbus-1/system-services/org.seuss.Manager1.service 0644
data/seuss.udev.rules               /usr/lib/udev/rules.d/70-seuss.rules                 0644
data/seuss.sysusers.conf            /usr/lib/sysusers.d/seuss.conf                       0644
data/seuss.tmpfiles.conf            /usr/lib/tmpfiles.d/seuss.conf                       0644
data/seuss.modules-load.conf        /usr/lib/modules-load.d/seuss.conf                   0644
seussd/seussd.example.toml          /usr/share/doc/seuss/seussd.example.toml             0644
LIST
}
# Generated from `seussctl` itself (completions and man page).
# shellcheck disable=SC2034 # used by uninstall.sh
SEUSS_GENERATED=(
    /usr/share/bash-completion/completions/seussctl
    /usr/share/zsh/vendor-completions/_seussctl
    /usr/share/fish/vendor_completions.d/seussctl.fish
    /usr/share/man/man1/seussctl.1.gz
)
