//! scripts/install.sh and scripts/uninstall.sh, staged into a DESTDIR: every
//! packaging file lands where systemd, dbus and udev look for it, the config
//! is made from the example with a fresh credential, and uninstall removes
//! all of it.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn install_then_uninstall_into_a_destdir() {
    let base = std::env::temp_dir().join(format!("seuss-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let bin = base.join("bin");
    let dest = base.join("root");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_seussctl"), bin.join("seussctl")).unwrap();
    for fake in ["seussd", "seuss-stub"] {
        std::fs::write(bin.join(fake), "#!/bin/sh\n").unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(bin.join(fake))
            .status()
            .unwrap();
    }
    let st = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .arg(&bin)
        .env("DESTDIR", &dest)
        .status()
        .unwrap();
    assert!(st.success());
    for f in [
        "usr/bin/seussd",
        "usr/bin/seussctl",
        "usr/bin/seuss-stub",
        "usr/lib/systemd/system/seussd.service",
        "usr/share/dbus-1/system.d/org.seuss.Manager1.conf",
        "usr/share/dbus-1/system-services/org.seuss.Manager1.service",
        "usr/lib/udev/rules.d/70-seuss.rules",
        "usr/lib/sysusers.d/seuss.conf",
        "usr/lib/tmpfiles.d/seuss.conf",
        "usr/lib/modules-load.d/seuss.conf",
        "usr/share/bash-completion/completions/seussctl",
        "usr/share/man/man1/seussctl.1.gz",
        "etc/seuss/seussd.toml",
    ] {
        assert!(dest.join(f).is_file(), "{f} not installed");
    }
    let conf = std::fs::read_to_string(dest.join("etc/seuss/seussd.toml")).unwrap();
    assert!(conf.contains("instance_user = \"seuss-fn\""), "{conf}");
    let example = std::fs::read_to_string(repo().join("seussd/seussd.example.toml")).unwrap();
    let auth = conf.lines().find(|l| l.starts_with("auth =")).unwrap();
    assert!(
        !example.contains(auth),
        "the installed credential must be fresh, not the example's"
    );
    let unit = std::fs::read_to_string(dest.join("usr/lib/systemd/system/seussd.service")).unwrap();
    for line in [
        "Type=notify",
        "BusName=org.seuss.Manager1",
        "WatchdogSec=30s",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line} missing from the unit"
        );
    }
    let act = std::fs::read_to_string(
        dest.join("usr/share/dbus-1/system-services/org.seuss.Manager1.service"),
    )
    .unwrap();
    assert!(
        act.contains("SystemdService=seussd.service") && act.contains("Name=org.seuss.Manager1")
    );

    // A second install keeps the configuration.
    std::fs::write(dest.join("etc/seuss/seussd.toml"), "# mine\n").unwrap();
    let st = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .arg(&bin)
        .env("DESTDIR", &dest)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/seuss/seussd.toml")).unwrap(),
        "# mine\n"
    );

    let st = Command::new("bash")
        .arg(repo().join("scripts/uninstall.sh"))
        .arg("--purge")
        .env("DESTDIR", &dest)
        .status()
        .unwrap();
    assert!(st.success());
    let left: Vec<_> = walk(&dest);
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&base);
}

/// Regular files under `d`.
fn walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn unit_file_keeps_its_sandboxing_score() {
    // `systemd-analyze security --offline` parses the unit without a running systemd.
    let Ok(o) = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=50"])
        .arg(repo().join("data/seussd.service"))
        .output()
    else {
        eprintln!("SKIP: systemd-analyze is not installed");
        return;
    };
    let out = String::from_utf8_lossy(&o.stdout);
    let score: f64 = out
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for seussd.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure score in:\n{out}\n{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    assert!(
        score <= 5.0,
        "exposure {score} > 5.0: the sandboxing options were weakened"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("Unknown key") && !err.contains("Failed to parse"),
        "{err}"
    );
}

#[test]
fn unit_exec_lines_leave_shell_variables_to_the_shell() {
    // systemd expands `$NAME` in Exec*= lines from the unit's environment; a shell variable must be `$$NAME`.
    // `$MAINPID` is systemd's own (the main process, for ExecReload=).
    let unit = std::fs::read_to_string(repo().join("data/seussd.service")).unwrap();
    for line in unit.lines().filter(|l| l.starts_with("Exec")) {
        let singles = line.replace("$$", "").replace("$MAINPID", "").matches('$').count();
        assert_eq!(singles, 0, "unescaped $ in: {line}");
    }
}
