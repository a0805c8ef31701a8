//! Helpers shared by the cases: loading the module, spawning the target, forking stubs that deploy.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use uapi::{DeployOpts, Device};

/// Path of seuss.ko: `$SEUSS_KO`.
pub fn ko_path() -> Result<String, String> {
    std::env::var("SEUSS_KO").map_err(|_| "SEUSS_KO is not set".to_string())
}

/// Whether the module is loaded.
pub fn loaded() -> bool {
    std::fs::read_to_string("/proc/modules").map(|s| s.lines().any(|l| l.starts_with("seuss "))).unwrap_or(false)
}

/// Runs a command, returning an error with its stderr on failure.
pub fn sh(cmd: &str, args: &[&str]) -> Result<(), String> {
    let o = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {args:?}: {} {}", o.status, String::from_utf8_lossy(&o.stderr)))
    }
}

/// Loads the module unless loaded.
pub fn ensure_loaded() -> Result<(), String> {
    if !loaded() {
        sh("insmod", &[&ko_path()?])?;
    }
    wait_dev()
}

/// Waits for udev/devtmpfs to create /dev/seuss.
pub fn wait_dev() -> Result<(), String> {
    for _ in 0..200 {
        if std::path::Path::new(uapi::DEVICE_PATH).exists() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err("/dev/seuss did not appear".into())
}

/// Mode bits and whether it is a char device.
pub fn dev_mode() -> Result<(u32, bool), String> {
    let m = std::fs::metadata(uapi::DEVICE_PATH).map_err(|e| format!("stat /dev/seuss: {e}"))?;
    Ok((m.permissions().mode() & 0o7777, m.file_type().is_char_device()))
}

/// Opens the device.
pub fn dev() -> Result<Device, String> {
    Device::open().map_err(|e| format!("open /dev/seuss: {e}"))
}

/// Path of a sibling binary (seuss_target next to seuss_test).
pub fn sibling(name: &str) -> String {
    let me = std::env::current_exe().unwrap();
    me.with_file_name(name).to_string_lossy().into_owned()
}

/// A running target process with its pipes and the addresses it printed.
pub struct Target {
    pub child: Child,
    pub stdin: ChildStdin,
    pub out: BufReader<ChildStdout>,
    pub doorbell: u64,
    pub doorbell2: u64,
    pub cookie: u64,
    pub func: u64,
    pub tidvar: u64,
    pub bell_tid: u64,
}

/// The addresses `seuss_target` prints (`name=0x...` lines) before its `ready` line.
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetAddrs {
    pub doorbell: u64,
    pub doorbell2: u64,
    pub cookie: u64,
    pub func: u64,
    pub tidvar: u64,
    /// The thread that rings the doorbell (`mt` mode), to arm.
    pub bell_tid: u64,
}

impl TargetAddrs {
    /// Takes in one line of the target's output (lines that name no address are ignored).
    pub fn note(&mut self, line: &str) {
        let Some((k, v)) = line.split_once('=') else { return };
        let v = u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or(0);
        match k {
            "doorbell" => self.doorbell = v,
            "doorbell2" => self.doorbell2 = v,
            "cookie" => self.cookie = v,
            "func" => self.func = v,
            "tidvar" => self.tidvar = v,
            "bell_tid" => self.bell_tid = v,
            _ => {}
        }
    }
}

impl Target {
    /// Starts `seuss_target` with `args` and reads its addresses up to `ready`.
    pub fn spawn(args: &[&str]) -> Result<Target, String> {
        let mut child = Command::new(sibling("seuss_target"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn seuss_target: {e}"))?;
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut t = Target { child, stdin, out, doorbell: 0, doorbell2: 0, cookie: 0, func: 0, tidvar: 0, bell_tid: 0 };
        let mut a = TargetAddrs::default();
        loop {
            let l = t.line()?;
            if l == "ready" {
                break;
            }
            a.note(&l);
        }
        (t.doorbell, t.doorbell2, t.cookie, t.func, t.tidvar, t.bell_tid) = (a.doorbell, a.doorbell2, a.cookie, a.func, a.tidvar, a.bell_tid);
        Ok(t)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads one line of its stdout.
    pub fn line(&mut self) -> Result<String, String> {
        let mut l = String::new();
        let n = self.out.read_line(&mut l).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("target closed stdout".into());
        }
        Ok(l.trim_end().to_string())
    }

    /// Sends a line to its stdin.
    pub fn send(&mut self, s: &str) -> Result<(), String> {
        writeln!(self.stdin, "{s}").and_then(|_| self.stdin.flush()).map_err(|e| e.to_string())
    }

    /// Waits for exit; returns the exit code (or 128+signal).
    pub fn wait(mut self) -> i32 {
        drop(self.stdin);
        self.child.wait().map(|s| {
            use std::os::unix::process::ExitStatusExt;
            s.code().unwrap_or(128 + s.signal().unwrap_or(0))
        }).unwrap_or(-1)
    }
}

/// A forked stub that deployed (or tried to deploy) a snapshot, with pipes to its stdin and stdout.
pub struct Stub {
    pub pid: i32,
    pub stdin: File,
    pub out: BufReader<File>,
}

fn pipe() -> (File, File) {
    let (r, w) = nix::unistd::pipe().unwrap();
    (File::from(r), File::from(w))
}

/// Forks a stub that, after `setup` (runs in the child; e.g. dropping privileges), deploys `snap` with
/// `opts`. If deploy fails the stub exits with 100 + errno.
pub fn fork_deploy(dev: &Device, snap: u64, opts: DeployOpts, setup: impl FnOnce()) -> Stub {
    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    // SAFETY: the test program is single-threaded; the child only calls async-signal-safe functions
    // before the deploy (dup2, close, the setup closure which the callers keep to setuid-style calls).
    match unsafe { libc::fork() } {
        0 => {
            let i = in_r.into_raw_fd();
            let o = out_w.into_raw_fd();
            // SAFETY: valid descriptors in the child.
            unsafe {
                libc::dup2(i, 0);
                libc::dup2(o, 1);
            }
            drop(in_w);
            drop(out_r);
            setup();
            let e = match dev.deploy(snap, opts) {
                Ok(_) => 0,
                Err(e) => e as i32,
            };
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(100 + e) }
        }
        pid if pid > 0 => Stub { pid, stdin: in_w, out: BufReader::new(out_r) },
        _ => panic!("fork failed"),
    }
}

impl Stub {
    /// Reads a line of the child's stdout.
    pub fn line(&mut self) -> Result<String, String> {
        let mut l = String::new();
        let n = self.out.read_line(&mut l).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("stub {} closed stdout", self.pid));
        }
        Ok(l.trim_end().to_string())
    }

    /// Sends a line to its stdin.
    pub fn send(&mut self, s: &str) -> Result<(), String> {
        writeln!(self.stdin, "{s}").and_then(|_| self.stdin.flush()).map_err(|e| e.to_string())
    }

    /// Waits for it: exit code, or 128 + signal.
    pub fn wait(self) -> i32 {
        drop(self.stdin);
        wait_pid(self.pid)
    }
}

/// waitpid with the status folded into one number (exit code, or 128 + signal).
pub fn wait_pid(pid: i32) -> i32 {
    let mut st = 0;
    // SAFETY: plain waitpid on our child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 128 + libc::WTERMSIG(st) }
}

/// Drops to uid/gid 65534 (nobody) in the current process.
pub fn become_nobody() {
    // SAFETY: plain credential syscalls.
    unsafe {
        libc::setgroups(0, std::ptr::null());
        libc::setgid(65534);
        libc::setuid(65534);
    }
}

/// Opens a file as the unprivileged user in a forked child; returns the child's errno (0 = opened).
pub fn open_as_nobody(path: &str) -> i32 {
    // SAFETY: single-threaded fork; the child only does syscalls then _exit.
    match unsafe { libc::fork() } {
        0 => {
            become_nobody();
            let c = std::ffi::CString::new(path).unwrap();
            // SAFETY: valid C string.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR) };
            let e = if fd >= 0 { 0 } else { std::io::Error::last_os_error().raw_os_error().unwrap_or(1) };
            // SAFETY: leaving the child.
            unsafe { libc::_exit(e) }
        }
        pid => wait_pid(pid),
    }
}

/// Parses `key=value` pairs of a report line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// How long a test waits for a task to reach its freeze point (TCG is slow).
pub const FREEZE_MS: u32 = 30_000;

/// Maps an error to "what: error" (for `map_err`).
pub fn e<T: std::fmt::Display>(what: &str) -> impl FnOnce(T) -> String + '_ {
    move |x| format!("{what}: {x}")
}

/// Sends SIGKILL to `pid`, ignoring a process that is already gone.
pub fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
}

// ---- Helpers of the fault-injection and race cases (fault_cases.rs, race_cases.rs). ----

/// Polls `cond` (1 ms, backing off to 20 ms) until it holds; `Err` naming `what` after `ms` milliseconds.
/// A bounded wait on a condition, not a fixed sleep.
pub fn wait_for(what: &str, ms: u64, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let end = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    let mut step = 1;
    loop {
        if cond() {
            return Ok(());
        }
        if std::time::Instant::now() >= end {
            return Err(format!("timed out after {ms} ms waiting for {what}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(step));
        step = (step * 2).min(20);
    }
}

/// The kernel function a task sleeps in (`/proc/PID/task/TID/wchan`; "0" when running or unknown).
/// The threads of process `pid` (its tids in /proc; empty once it is gone).
pub fn threads_of(pid: i32) -> std::collections::HashSet<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|r| r.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

pub fn wchan(pid: i32, tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan")).unwrap_or_default().trim().to_string()
}

/// Whether a single-threaded process is blocked reading a pipe (e.g. `seuss_target` waiting for a line):
/// it is neither running nor parked by seuss.
pub fn in_pipe_read(pid: i32) -> bool {
    wchan(pid, pid) == "pipe_read"
}

/// Waits (bounded) until process `pid` blocks in a pipe read.
pub fn wait_pipe_read(pid: i32, ms: u64) -> Result<(), String> {
    wait_for(&format!("pid {pid} to block in pipe_read (wchan {})", wchan(pid, pid)), ms, || in_pipe_read(pid))
        .map_err(|x| format!("{x}; wchan now {}", wchan(pid, pid)))
}

/// STATS counters that must come back once every object a case made is gone (contract item 12).
pub fn stats_back_to(d: &Device, base: &uapi::seuss_stats) -> Result<(), String> {
    let s = d.stats().map_err(|x| format!("STATS: {x}"))?;
    if (s.snapshots, s.pages_held, s.instances, s.frozen) == (base.snapshots, base.pages_held, base.instances, base.frozen) {
        Ok(())
    } else {
        Err(format!(
            "STATS not back to baseline: snapshots {}->{}, pages_held {}->{}, instances {}->{}, frozen {}->{}",
            base.snapshots, s.snapshots, base.pages_held, s.pages_held, base.instances, s.instances, base.frozen, s.frozen
        ))
    }
}

/// `delete_module(name, O_NONBLOCK)` (what rmmod does), returning the kernel's errno.
pub fn delete_module(name: &str) -> Result<(), nix::errno::Errno> {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid C string and flags.
    let r = unsafe { libc::syscall(libc::SYS_delete_module, c.as_ptr(), libc::O_NONBLOCK) };
    nix::errno::Errno::result(r).map(|_| ())
}

/// The module's reference count (`/sys/module/NAME/refcnt`), if loaded.
pub fn module_refcnt(name: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/sys/module/{name}/refcnt")).ok().and_then(|s| s.trim().parse().ok())
}

/// Reads one line from `r`, waiting at most `ms` for it to arrive (poll on the descriptor).
pub fn line_within<R: std::io::Read + std::os::fd::AsRawFd>(r: &mut BufReader<R>, ms: u64) -> Result<String, String> {
    if !r.buffer().contains(&b'\n') {
        let mut p = libc::pollfd { fd: r.get_ref().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, ms.min(i32::MAX as u64) as i32) };
        if n == 0 {
            return Err(format!("no line within {ms} ms"));
        }
    }
    let mut l = String::new();
    match r.read_line(&mut l) {
        Ok(0) => Err("EOF".into()),
        Ok(_) => Ok(l.trim_end().to_string()),
        Err(x) => Err(x.to_string()),
    }
}

/// A pipe as (read end, write end), both close-on-exec.
pub fn pipe_pair() -> (File, File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (File::from(r), File::from(w))
}

/// Non-blocking check whether child `pid` has exited, without reaping it (its /proc entry stays).
pub fn exited_unreaped(pid: i32) -> bool {
    // SAFETY: a zeroed siginfo for waitid to fill.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: plain waitid on our child.
    let r = unsafe { libc::waitid(libc::P_PID, pid as u32, &mut si, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
    // SAFETY: si_pid is valid to read after waitid.
    r == 0 && unsafe { si.si_pid() } == pid
}

/// Exit status of a `seuss_target` (source or deployed child) whose every check passed.
pub const REPORT_OK: i32 = 42;

/// Checks a `seuss_target` report line of process `pid`: every check it makes passed.
pub fn report_ok(line: &str, pid: i32) -> Result<(), String> {
    if !line.starts_with("report ") {
        return Err(format!("not a report: {line}"));
    }
    if field(line, "pid") != Some(pid.to_string().as_str()) {
        return Err(format!("pid mismatch (want {pid}): {line}"));
    }
    for k in ["mem", "regs", "tls", "errno", "heap", "sig"] {
        if field(line, k) != Some("true") {
            return Err(format!("{k} wrong: {line}"));
        }
    }
    Ok(())
}

/// Pid of the calling thread.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Waits (up to 30 s) until `pid`, a stub deploying a `seuss_target` snapshot, has finished its deploy
/// (prefault included) and waits for input in the target's code (blocked in a pipe read: the stub itself
/// never reads a pipe before its DEPLOY); returns its DIRTY answer then.
pub fn wait_instance(d: &Device, pid: i32) -> Result<(u64, u64), String> {
    wait_pipe_read(pid, 30_000)?;
    d.dirty(pid).map_err(|x| format!("DIRTY {pid}: {x}"))
}

/// Waits (up to 30 s) until `pid` sleeps (state S in /proc/PID/stat), e.g. blocked in a read.
pub fn wait_sleeping(pid: i32) -> Result<(), String> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(30) {
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|x| format!("stat {pid}: {x}"))?;
        if st.rsplit(')').next().map(|r| r.trim_start().starts_with('S')).unwrap_or(false) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(format!("{pid} never slept"))
}

/// Waits (up to 30 s) until signal `sig` is pending for `pid` (SigPnd/ShdPnd in /proc/PID/status).
pub fn wait_signal_pending(pid: i32, sig: i32) -> Result<(), String> {
    let bit = 1u64 << (sig - 1);
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(30) {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|x| format!("status {pid}: {x}"))?;
        let pending = st.lines().filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
            .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok()).fold(0, |a, b| a | b);
        if pending & bit != 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(format!("signal {sig} never pending for {pid}"))
}
