//! Test harness: a private `dbus-daemon` with a system-like policy, the real
//! seussd binary serving on it, the real seussctl binary as a client (also as
//! another uid through `runuser`), and the users the policy tests need.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Why these tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (runs seussd, creates users, switches uids)".into());
    }
    for tool in ["dbus-daemon", "runuser", "python3", "useradd", "groupadd"] {
        if which(tool).is_none() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// Print the reason and return true when the test must be skipped.
pub fn skip() -> bool {
    match skip_reason() {
        Some(r) => {
            eprintln!("SKIP: {r}");
            true
        }
        None => false,
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .chain(
            ["/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(tool)),
        )
        .find(|p| p.is_file())
}

/// A fresh directory under /tmp, world-traversable (instances and other uids need to reach into it).
pub fn tempdir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("seuss-{tag}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Which policy the private bus enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The default-deny `<policy context="default">` of the system bus plus data/org.seuss.Manager1.conf.
    SystemLike,
    /// Everyone may call everything: only seussd's own uid check stands.
    Permissive,
}

/// The default policy block of the installed system bus configuration.
fn system_default_policy() -> String {
    let text =
        fs::read_to_string("/usr/share/dbus-1/system.conf").expect("/usr/share/dbus-1/system.conf");
    let start = text
        .find("<policy context=\"default\">")
        .expect("default policy in system.conf");
    let end = start
        + text[start..]
            .find("</policy>")
            .expect("end of default policy")
        + "</policy>".len();
    text[start..end].to_owned()
}

const PERMISSIVE: &str = r#"<policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>"#;

/// A private message bus; killed on drop.
pub struct Bus {
    pub dir: PathBuf,
    pub address: String,
    child: Child,
}

impl Bus {
    /// Start `dbus-daemon` with `policy`, wait until its socket accepts connections.
    pub fn start(policy: Policy) -> Bus {
        Self::start_with_services(policy, None)
    }

    /// Like [`Bus::start`], activating services from the `.service` files in `servicedir`.
    pub fn start_with_services(policy: Policy, servicedir: Option<&Path>) -> Bus {
        let dir = tempdir("bus");
        let socket = dir.join("system_bus_socket");
        let policy_xml = match policy {
            Policy::SystemLike => format!(
                "{}\n  <include>{}</include>",
                system_default_policy(),
                repo_root().join("data/org.seuss.Manager1.conf").display()
            ),
            Policy::Permissive => PERMISSIVE.to_owned(),
        };
        let conf = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={}</listen>
  {services}
  {policy_xml}
</busconfig>
"#,
            socket.display(),
            services = servicedir
                .map(|d| format!("<servicedir>{}</servicedir>", d.display()))
                .unwrap_or_default(),
        );
        let conf_path = dir.join("bus.conf");
        fs::write(&conf_path, conf).unwrap();
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf_path.display()))
            .arg("--nofork")
            .arg("--nopidfile")
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("bus.log")).unwrap())
            .spawn()
            .expect("dbus-daemon");
        let bus = Bus {
            address: format!("unix:path={}", socket.display()),
            dir,
            child,
        };
        wait_for(Duration::from_secs(10), "the private bus socket", || {
            socket.exists()
        });
        bus
    }

    /// A zbus connection to this bus (as the test's uid, root).
    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .unwrap()
            .build()
            .await
            .expect("connecting to the private bus")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept when the test failed: bus.log and bus.conf explain it.
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Poll `cond` until it holds or `timeout` passes (then panic naming `what`).
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Directory of the binaries cargo builds for this test run (target/debug).
fn target_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The seussd binary, built (once per test process) from the current sources.
pub fn seussd_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(repo_root())
                .env("CARGO_BUILD_JOBS", "1")
                .args(["build", "-q", "-p", "seussd", "--bins"]);
            // Same profile as this test binary (`cargo test --release` looks in target/release).
            if target_bin_dir().file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("cargo build -p seussd");
            assert!(status.success(), "cargo build -p seussd failed");
            let p = target_bin_dir().join("seussd");
            assert!(p.is_file(), "{} missing after the build", p.display());
            p
        })
        .clone()
}

/// Whether every user may execute `p` (it and all its directories are world-executable).
fn world_executable(p: &Path) -> bool {
    p.ancestors().all(|a| {
        a.as_os_str().is_empty()
            || fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

/// The seussctl binary of this package, where other uids can run it (copied
/// to a temporary directory only when its build directory is closed to them).
pub fn seussctl_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_seussctl"));
        if world_executable(&built) {
            return built;
        }
        let d = tempdir("bin");
        let p = d.join("seussctl");
        fs::copy(&built, &p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    })
    .clone()
}

/// Write `dir/seussd.toml`: state in `dir/state`, a 64 MiB budget, instances as nobody, no cgroups.
pub fn write_config(dir: &Path) {
    let config = format!(
        r#"state_dir = "{state}"
listen = "127.0.0.1:0"
auth = ["test:secret"]
memory_budget_mb = 64
instance_user = "nobody"
use_snapshots = "auto"
cgroup_root = "{dir}/no-cgroup"
stub_pool = 0
idle_timeout_s = 600
"#,
        state = dir.join("state").display(),
        dir = dir.display()
    );
    fs::write(dir.join("seussd.toml"), config).unwrap();
}

/// A running seussd on `bus` with its own state directory; stopped (SIGTERM) on drop.
pub struct Daemon {
    pub dir: PathBuf,
    child: Child,
}

impl Daemon {
    /// Start seussd with a test configuration and wait until it owns org.seuss.Manager1.
    pub async fn start(bus: &Bus) -> Daemon {
        let dir = tempdir("seussd");
        write_config(&dir);
        let log = fs::File::create(dir.join("seussd.log")).unwrap();
        let child = Command::new(seussd_bin())
            .arg("--config")
            .arg(dir.join("seussd.toml"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .env("RUST_LOG", "debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning seussd");
        let mut d = Daemon { dir, child };
        let conn = bus.connect().await;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
        let t0 = Instant::now();
        loop {
            let name = zbus::names::BusName::try_from(seuss_dbus_api::BUS_NAME).unwrap();
            if dbus.name_has_owner(name).await.unwrap() {
                break;
            }
            if let Some(st) = d.child.try_wait().unwrap() {
                panic!(
                    "seussd exited ({st}) before owning the bus name:\n{}",
                    d.log()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "seussd did not own its name:\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        d
    }

    /// seussd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("seussd.log")).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t0 = Instant::now();
        while self.running() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept when the test failed: seussd.log and the state explain it.
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Run seussctl against `bus`, as `user` (via runuser) or as root when `None`.
pub fn seussctl(bus: &Bus, user: Option<&str>, args: &[&str]) -> Output {
    let ctl = seussctl_bin();
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(&ctl);
            c
        }
        None => Command::new(&ctl),
    };
    cmd.args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdin(Stdio::null())
        .output()
        .expect("running seussctl")
}

/// A user in group `seuss` (created, with the group, if missing). Kept afterwards.
pub const MEMBER: &str = "seuss-test";
/// A user in no relevant group.
pub const OUTSIDER: &str = "nobody";

/// Make sure group `seuss` and user [`MEMBER`] in it exist.
pub fn ensure_member_user() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let run = |args: &[&str]| {
            let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
            assert!(st.success(), "{args:?} failed");
        };
        if nix::unistd::Group::from_name("seuss").unwrap().is_none() {
            run(&["groupadd", "--system", "seuss"]);
        }
        if nix::unistd::User::from_name(MEMBER).unwrap().is_none() {
            run(&[
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "-G",
                "seuss",
                MEMBER,
            ]);
        } else {
            run(&["usermod", "-aG", "seuss", MEMBER]);
        }
        assert!(
            nix::unistd::User::from_name(OUTSIDER).unwrap().is_some(),
            "user {OUTSIDER} must exist"
        );
    });
}

/// stdout of `o` as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr of `o` as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
