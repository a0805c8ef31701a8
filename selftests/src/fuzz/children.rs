//! The processes a worker thread creates, and bounded reaping:
//! - `seuss_target` processes (selftests/src/target.rs), their addresses read with a bounded wait;
//! - forked sleepers, which exit, exec `/bin/true` or sleep on at a random moment (freeze-now targets);
//! - deploy stubs: a forked (or cloned) process that issues one DEPLOY and exits with 100 + errno when
//!   it is refused. Kinds: plain, holding stdin open (its instance blocks reading it), multi-threaded,
//!   holding an io_uring, vforked, sharing the fd table (CLONE_FILES), ptraced.
//!
//! Between fork and exit or deploy a child makes raw system calls only (the worker is multi-threaded).

use std::ffi::c_void;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::process::{Command, Stdio};

use super::report::now_ms;

/// Exit code of a stub whose DEPLOY returned success to its own code (it must not: success jumps into
/// the snapshot).
pub const STUB_RETURNED: i32 = 99;
/// Exit code of an io_uring stub on a kernel without io_uring.
pub const STUB_NO_IO_URING: i32 = 98;
/// Exit code of a stub whose setup (thread, ptrace) failed.
pub const STUB_SETUP_FAILED: i32 = 97;
/// Exit code of a sleeper that ran out its time (and so of its deployed copies).
pub const SLEEPER_DONE: i32 = 7;

/// Addresses a `seuss_target` printed (the selftests' parser of its output).
pub use super::util::TargetAddrs as Addrs;

/// A started `seuss_target`.
pub struct Spawned {
    pub pid: i32,
    pub stdin: File,
    pub addrs: Addrs,
}

/// Reads lines from `f` until `ready`, within `ms` milliseconds.
fn read_until_ready(f: &mut File, ms: u64) -> Result<String, String> {
    let deadline = now_ms() + ms;
    let mut text = String::new();
    let mut buf = [0u8; 512];
    while !text.lines().any(|l| l == "ready") {
        let left = deadline.saturating_sub(now_ms());
        if left == 0 {
            return Err(format!("no 'ready' within {ms} ms (got {text:?})"));
        }
        let mut pfd = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.min(1000) as i32) };
        if r <= 0 {
            continue; // timeout slice or EINTR
        }
        match f.read(&mut buf) {
            Ok(0) => return Err(format!("closed stdout before 'ready' (got {text:?})")),
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(text)
}

/// Starts `seuss_target MODE` and reads its addresses (its stdout is closed afterwards: later reports
/// go nowhere).
pub fn spawn_target(exe: &str, mode: &str) -> Result<Spawned, String> {
    let mut child = Command::new(exe)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {exe}: {e}"))?;
    let pid = child.id() as i32;
    let stdin = File::from(std::os::fd::OwnedFd::from(child.stdin.take().unwrap()));
    let mut out = File::from(std::os::fd::OwnedFd::from(child.stdout.take().unwrap()));
    drop(child); // not waited through std: the actor reaps the pid itself
    let text = match read_until_ready(&mut out, 60_000) {
        Ok(t) => t,
        Err(e) => {
            kill(pid);
            reap_within(pid, 10_000);
            return Err(format!("seuss_target {mode}: {e}"));
        }
    };
    let mut a = Addrs::default();
    text.lines().for_each(|l| a.note(l));
    Ok(Spawned { pid, stdin, addrs: a })
}

/// What a sleeper does when its time is up.
#[derive(Clone, Copy, Debug)]
pub enum SleeperEnd {
    Exit,
    ExecTrue,
}

/// Forks a child that sleeps `ticks` x 10 ms, then exits with [`SLEEPER_DONE`] or execs `/bin/true`.
pub fn fork_sleeper(ticks: u32, end: SleeperEnd) -> Result<i32, String> {
    let path = c"/bin/true";
    let argv = [path.as_ptr(), std::ptr::null()];
    // SAFETY: fork; the child below makes raw system calls only.
    match unsafe { libc::fork() } {
        // SAFETY: raw system calls on memory prepared before the fork; the child leaves by _exit or execv.
        0 => unsafe {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let ts = libc::timespec { tv_sec: 0, tv_nsec: 10_000_000 };
            for _ in 0..ticks {
                libc::nanosleep(&ts, std::ptr::null_mut());
            }
            if let SleeperEnd::ExecTrue = end {
                libc::execv(path.as_ptr(), argv.as_ptr());
            }
            libc::_exit(SLEEPER_DONE)
        },
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        pid => Ok(pid),
    }
}

/// Forks a child that exits at once and is left unreaped (a zombie pid for the pid pools).
pub fn fork_zombie() -> i32 {
    // SAFETY: fork; the child only calls _exit.
    match unsafe { libc::fork() } {
        // SAFETY: leaving the child at once.
        0 => unsafe { libc::_exit(0) },
        pid => pid,
    }
}

/// Kinds of deploy stub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StubKind {
    /// stdin and stdout /dev/null: its instance runs to its end.
    Plain,
    /// stdin a pipe the caller keeps: its instance blocks reading it.
    Held,
    /// A second thread (raw clone) exists when it deploys.
    Threaded,
    /// Holds an io_uring instance.
    IoUring,
    /// A vfork child (CLONE_VM | CLONE_VFORK).
    Vfork,
    /// Shares the worker's fd table (CLONE_FILES).
    SharedFiles,
    /// Traced by the worker thread (PTRACE_TRACEME).
    Ptraced,
}

/// What the stub's code does; read by the child from its copy (or, for vfork, the shared original).
#[repr(C)]
struct StubPlan {
    kind: StubKind,
    dev_fd: i32,
    stdin_fd: i32,
    stdout_fd: i32,
    req: u64,
    arg: u64,
    thread_stack_top: usize,
}

/// Stack memory for the stubs' cloned children and threads (one per actor, reused).
pub struct StubStacks {
    mem: Vec<u8>,
}

const STACK_HALF: usize = 64 * 1024;

impl StubStacks {
    pub fn new() -> StubStacks {
        StubStacks { mem: vec![0u8; 2 * STACK_HALF] }
    }

    fn top(&mut self, half: usize) -> *mut c_void {
        let end = self.mem.as_mut_ptr() as usize + (half + 1) * STACK_HALF;
        (end & !15) as *mut c_void
    }
}

extern "C" fn idle_thread(_: *mut c_void) -> libc::c_int {
    loop {
        // SAFETY: pause has no preconditions; the thread dies with the stub's exit_group.
        unsafe { libc::syscall(libc::SYS_pause) };
    }
}

extern "C" fn stub_entry(plan: *mut c_void) -> libc::c_int {
    // SAFETY: `plan` is the StubPlan the parent built for this child.
    stub_main(unsafe { &*(plan as *const StubPlan) })
}

/// The stub's whole life: set up, DEPLOY, and on refusal exit with 100 + errno.
fn stub_main(p: &StubPlan) -> ! {
    // SAFETY: raw system calls on descriptors and memory the child owns (its copy), then _exit.
    unsafe {
        let mut dev = p.dev_fd;
        if p.kind != StubKind::SharedFiles {
            // Its own fd table: keep stdio and the device only (as fd 3).
            libc::dup2(p.stdin_fd, 0);
            libc::dup2(p.stdout_fd, 1);
            if dev != 3 {
                libc::dup2(dev, 3);
            }
            dev = 3;
            libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
        }
        match p.kind {
            StubKind::Threaded => {
                let flags = libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SIGHAND | libc::CLONE_THREAD | libc::CLONE_SYSVSEM;
                if libc::clone(idle_thread, p.thread_stack_top as *mut c_void, flags, std::ptr::null_mut()) < 0 {
                    libc::_exit(STUB_SETUP_FAILED);
                }
            }
            StubKind::IoUring => {
                let mut params = [0u32; 30]; // struct io_uring_params, 120 bytes
                if libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) < 0 {
                    libc::_exit(STUB_NO_IO_URING);
                }
            }
            StubKind::Ptraced if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 => libc::_exit(STUB_SETUP_FAILED),
            _ => {}
        }
        let r = libc::syscall(libc::SYS_ioctl, dev as libc::c_long, p.req as libc::c_ulong, p.arg as libc::c_ulong);
        let code = if r < 0 { 100 + *libc::__errno_location() } else { STUB_RETURNED };
        libc::_exit(code)
    }
}

/// A started stub: its pid, and for [`StubKind::Held`] the write end of its stdin.
pub struct Stub {
    pub pid: i32,
    pub stdin: Option<File>,
}

/// Starts a stub of `kind` that issues ioctl `req` with argument `arg` (memory the child inherits, e.g.
/// the actor's arena) on `dev_fd`. `null_fd` is an open /dev/null.
pub fn spawn_stub(kind: StubKind, dev_fd: i32, null_fd: i32, req: u64, arg: u64, stacks: &mut StubStacks) -> Result<Stub, String> {
    let mut held = None;
    let mut stdin_fd = null_fd;
    if kind == StubKind::Held {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        stdin_fd = r.into_raw_fd();
        held = Some(File::from(w));
    }
    let plan = Box::new(StubPlan { kind, dev_fd, stdin_fd, stdout_fd: null_fd, req, arg, thread_stack_top: stacks.top(0) as usize });
    let plan_ptr = &*plan as *const StubPlan as *mut c_void;
    let pid = match kind {
        // SAFETY: the child runs stub_main on its own stack half; with CLONE_VM (vfork) the parent
        // thread is suspended until the child exits or its address space is replaced.
        StubKind::Vfork => unsafe { libc::clone(stub_entry, stacks.top(1), libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD, plan_ptr) },
        // SAFETY: as above; without CLONE_VM the child runs on its copy of the stack half.
        StubKind::SharedFiles => unsafe { libc::clone(stub_entry, stacks.top(1), libc::CLONE_FILES | libc::SIGCHLD, plan_ptr) },
        // SAFETY: the child makes raw system calls only (stub_main).
        _ => match unsafe { libc::fork() } {
            0 => stub_main(&plan),
            pid => pid,
        },
    };
    if kind == StubKind::Held {
        // SAFETY: our copy of the pipe's read end, now the child's business only.
        unsafe { libc::close(stdin_fd) };
    }
    if pid < 0 {
        return Err(format!("{kind:?} stub: {}", std::io::Error::last_os_error()));
    }
    Ok(Stub { pid, stdin: held })
}

/// Sends SIGKILL to a child not yet reaped.
pub fn kill(pid: i32) {
    // SAFETY: `pid` is our unreaped child, so it cannot name another process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Reaps `pid` if it has ended: its exit code, or 128 + signal. A ptrace stop (a traced stub) is
/// continued with its signal.
pub fn try_reap(pid: i32) -> Option<i32> {
    loop {
        let mut st = 0;
        // SAFETY: waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        if r == 0 {
            return None;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error().raw_os_error();
            if e == Some(libc::EINTR) {
                continue;
            }
            return Some(-1);
        }
        if libc::WIFSTOPPED(st) {
            // SAFETY: we are its tracer (PTRACE_TRACEME stub); let it go on with the signal it stopped for.
            unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, libc::WSTOPSIG(st)) };
            continue;
        }
        return Some(if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 128 + libc::WTERMSIG(st) });
    }
}

/// Reaps `pid`, waiting up to `ms` milliseconds; `None` if it is still running.
pub fn reap_within(pid: i32, ms: u64) -> Option<i32> {
    let deadline = now_ms() + ms;
    let mut nap = 1u64;
    loop {
        if let Some(c) = try_reap(pid) {
            return Some(c);
        }
        if now_ms() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(nap));
        nap = (nap * 2).min(20);
    }
}

/// The kernel stack and state of a process, for a report about a child that does not end.
pub fn describe_stuck(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()).unwrap_or("?").to_string();
    let stack = std::fs::read_to_string(format!("/proc/{pid}/stack")).unwrap_or_default();
    let top: Vec<&str> = stack.lines().take(6).collect();
    format!("state {state}, kernel stack [{}]", top.join(" < "))
}
